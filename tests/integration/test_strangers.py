"""Strangers against real peer processes: what a hostile client can try on a public swarm, on loopback.

Each test is a regression test for an attack that worked before the defence it checks (see the issue
tracker's "strangers" issue): the attack is tried as a stranger would, and the honest user's output must stay
exactly what it is without the attack.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import threading
import time

import torch

from routing.config import ClientConfig
from swarm import AutoDistributedModelForCausalLM
from swarm.net.protocol import Close, Error, Open, Rebind, Step, new_secret, parse
from swarm.net.transport import open_channel
from swarm.net.wire import MAGIC, PREFIX, Limits, encode_frame, read_frame, tensor_to_wire

PROMPT = torch.tensor([[5, 6, 7, 8]])
NEW = 6


async def _attack(addrs: list[str], sid: str, hidden_size: int) -> tuple[list[str], int]:
    """Step, close and rebind session ``sid`` on every hop with a made-up secret (the id is what every hop
    sees); returns the error codes the hops answered and how many connections reached the stranger's own
    listener (where a hijacked rebind would push the session's hidden states)."""
    reached = 0

    async def listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal reached
        reached += 1
        writer.close()

    server = await asyncio.start_server(listener, "127.0.0.1", 0)
    trap = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    codes = []
    meta, body = tensor_to_wire(torch.zeros(1, 1, hidden_size))
    guess = new_secret()
    try:
        for addr in addrs:
            ch = await open_channel(addr)
            try:
                for msg, payload in [
                    (Step(session=sid, secret=guess, layer=0, step=1, position=len(PROMPT[0]), tensor=meta), body),
                    (Rebind(session=sid, secret=guess, next=trap, next_secret=guess, next_peer="cd" * 20, upto_step=1,
                            id=1), b""),
                    (Close(session=sid, secret=guess, id=2), b""),
                ]:
                    await ch.send(msg.to_header(), payload)
                    reply = await asyncio.wait_for(ch.recv(), 30)
                    assert reply is not None
                    codes.append(parse(reply.header).code)
            finally:
                await ch.close()
    finally:
        server.close()
        await server.wait_closed()
    return codes, reached


def test_a_stranger_who_knows_a_session_id_cannot_step_close_or_rebind_it(checkpoints, swarm_of, bootstrap):
    """Before session capabilities, a stranger who knew a session id could step it (corrupting the output),
    close it, or rebind a hop to itself and read every later hidden state."""
    path = checkpoints("llama", num_layers=4)
    swarm_of(path, ["0:2", "2:4"])
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=30)
    ) as model:
        expected = model.generate(PROMPT, max_new_tokens=NEW, do_sample=False)[0, PROMPT.shape[1]:].tolist()
        with model.inference_session(max_length=PROMPT.shape[1] + NEW + 1) as sess:
            first = model.head.embed(PROMPT)
            hidden = sess.step(first)
            addrs = [hop.addr for hop in sess.route.hops]
            codes, reached = asyncio.run(_attack(addrs, sess.session.session_id, first.shape[-1]))
            assert codes == ["unknown_session"] * 3 * len(addrs)  # as if there were no such session
            assert reached == 0  # no hop pushed anything to the stranger
            tokens = []
            for _ in range(NEW):
                token = int(model.head.logits(hidden[:, -1:])[0, -1].argmax())
                tokens.append(token)
                hidden = sess.step(model.head.embed(torch.tensor([[token]]), sess.position))
            assert sess.session.failovers == 0  # the session was never disturbed
    assert tokens == expected


STRANGER = "127.0.0.2"  # the attacker's source address (all of 127/8 is this machine); the user is 127.0.0.1


async def _connect_from(addr: str, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = addr.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port), local_addr=(source, 0))


async def _closed_by_peer(reader: asyncio.StreamReader, within_s: float) -> bool:
    """Whether the peer closes this connection within ``within_s`` (what it sends first is not looked at)."""
    try:
        async with asyncio.timeout(within_s):
            while await reader.read(65536):
                pass
        return True
    except (TimeoutError, ConnectionError):
        return False


def test_a_connection_flood_and_stalled_frames_do_not_take_a_peer_down(checkpoints, swarm_of, bootstrap):
    """Before the caps, 1,030 idle connections starved a peer of file descriptors, and half-sent big frames
    held their buffers forever. Now one source gets at most 64 connections (the rest are closed at once), a
    frame stalled after its prefix is cut off at its deadline, and the user on another address generates."""
    path = checkpoints("llama", num_layers=4)
    swarm = swarm_of(path, ["0:4"])
    peer = swarm.peers[0].data_addr

    async def flood() -> tuple[int, list[asyncio.StreamWriter], list[asyncio.StreamReader]]:
        held, idle, stalled = [], [], []
        for i in range(80):
            reader, writer = await _connect_from(peer, STRANGER)
            if i < 4:  # a frame declaring a 1 MiB body, then silence
                writer.write(PREFIX.pack(MAGIC, 16, 1 << 20) + b"\x00" * 1000)
                await writer.drain()
                stalled.append(reader)
            else:
                idle.append(reader)
            held.append(writer)
        closed = await asyncio.gather(*(_closed_by_peer(r, 3.0) for r in idle))
        return sum(closed), held, stalled

    async def scenario() -> tuple[int, list[bool]]:
        refused, held, stalled = await flood()
        try:
            await asyncio.to_thread(generate_as_user)
            cut = await asyncio.gather(*(_closed_by_peer(r, 90) for r in stalled))
        finally:
            for writer in held:
                writer.close()
        return refused, cut

    outputs = []

    def generate_as_user() -> None:
        with AutoDistributedModelForCausalLM.from_pretrained(
            str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=30)
        ) as model:
            outputs.append(model.generate(PROMPT, max_new_tokens=NEW, do_sample=False))

    refused, cut = asyncio.run(scenario())
    assert refused == 80 - 64  # the 65th connection from the stranger on
    assert cut == [True] * 4  # stalled frames were dropped (their deadline: 30 s + 1 MiB at 1 MB/s)
    assert outputs and outputs[0].shape == (1, PROMPT.shape[1] + NEW)
    assert swarm.peers[0].popen.poll() is None


def test_one_stranger_cannot_reserve_a_peers_whole_kv_memory(checkpoints, swarm_of, bootstrap):
    """Before the per-client share, one open with a long max_length took a peer's whole KV budget."""
    path = checkpoints("llama", num_layers=4)
    swarm = swarm_of(path, ["0:4"], extra=["--kv-reserve-tokens", "256"])
    peer = swarm.peers[0].data_addr

    async def hog() -> list[str]:
        reader, writer = await _connect_from(peer, STRANGER)
        answers = []
        try:
            for i, length in enumerate((250, 128, 16)):  # the whole budget; then its half; then a bit more
                msg = Open(session=f"hog{i}", secret=new_secret(), start=0, end=4, max_length=length, batch=1,
                           id=i + 1)
                for part in encode_frame(msg.to_header()):
                    writer.write(part)
                frame = await asyncio.wait_for(read_frame(reader, Limits()), 30)
                assert frame is not None
                reply = parse(frame.header)
                answers.append(reply.code if isinstance(reply, Error) else reply.TYPE)
            with AutoDistributedModelForCausalLM.from_pretrained(
                str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=30)
            ) as model:  # the user, from another address, still gets the other half
                out = await asyncio.to_thread(model.generate, PROMPT, max_new_tokens=NEW, do_sample=False)
            assert out.shape == (1, PROMPT.shape[1] + NEW)
        finally:
            writer.close()
        return answers

    assert asyncio.run(hog()) == ["busy", "ok", "busy"]


FUZZ_FRAMES = 10_000


def _mutated_frames(rng: random.Random, hidden_size: int):
    """Frames as a fuzzer makes them: valid messages of every type with fields swapped for wrong types,
    out-of-range numbers and junk, tensors with lying metadata, then byte flips, cuts and lying lengths."""
    junk = [None, True, -1, 0, 2**31, 2**64 - 1, -(2**63), 1e308, float("nan"), "", "x" * 300, b"\x00" * 17,
            [], [1, [2, [3]]], {}, {"dtype": "float32", "shape": [1, 1, hidden_size]},
            {"dtype": "float64", "shape": [1]}, {"dtype": "float32", "shape": [10**9, 10**9]}]
    meta, body = tensor_to_wire(torch.ones(1, 1, hidden_size))
    bodies = [bytes(body), b"", b"\xff" * len(bytes(body)), bytes(tensor_to_wire(torch.full((1, 1, hidden_size),
                                                                                          float("nan")))[1])]
    secret = new_secret()
    templates = [
        Open(session="fz", secret=secret, start=0, end=4, max_length=16, batch=1, id=1).to_header(),
        Step(session="fz", secret=secret, layer=0, step=0, position=0, tensor=meta).to_header(),
        Close(session="fz", secret=secret, id=2).to_header(),
        Rebind(session="fz", secret=secret, next="127.0.0.2:9", next_secret=secret, next_peer="cd" * 20,
               upto_step=1, id=3).to_header(),
        {"type": "ping", "id": 4},
    ]
    while True:
        header = dict(rng.choice(templates))
        for _ in range(rng.randrange(3)):
            key = rng.choice([*header, "type", "extra"])
            header[key] = rng.choice(junk) if key != "type" or rng.random() < 0.3 else rng.choice(
                ["open", "step", "close", "rebind", "ping", "pong", "result", "error", "ok", "nope"])
        try:
            parts = encode_frame(header, rng.choice(bodies))
        except Exception:  # noqa: BLE001 - the encoder refuses some junk (no str type): send raw bytes then
            parts = [PREFIX.pack(MAGIC, 3, 0) + b"\xc1\xc1\xc1"]
        data = bytearray(b"".join(bytes(p) for p in parts))
        roll = rng.random()
        if roll < 0.15:  # flip bytes past the prefix
            for _ in range(rng.randrange(1, 6)):
                i = rng.randrange(PREFIX.size, len(data)) if len(data) > PREFIX.size else 0
                data[i] ^= 1 << rng.randrange(8)
        elif roll < 0.18:  # a lying length: the stream is out of step from here (the peer closes it)
            data[4:12] = PREFIX.pack(MAGIC, rng.randrange(1, 100), rng.randrange(0, 100))[4:]
        elif roll < 0.2:  # cut short
            data = data[:rng.randrange(len(data))]
        yield bytes(data)


async def _fuzz(peer: str, hidden_size: int, frames: int) -> tuple[int, int]:
    """Send ``frames`` fuzzed frames over connections from the stranger's address (reconnecting whenever the
    peer closes one); returns (frames sent, connections used)."""
    rng = random.Random(1234)
    source = _mutated_frames(rng, hidden_size)
    sent = connections = 0
    while sent < frames:
        reader, writer = await _connect_from(peer, STRANGER)
        connections += 1
        drain = asyncio.ensure_future(_closed_by_peer(reader, 120))  # read the answers, so none back up
        try:
            for _ in range(rng.randrange(50, 500)):
                if drain.done():
                    break
                writer.write(next(source))
                sent += 1
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            drain.cancel()
    return sent, connections


def test_ten_thousand_fuzzed_frames_while_a_client_generates(checkpoints, swarm_of, bootstrap):
    """Mutated frames of every message type from a stranger, while a user generates: no crash, and the
    user's tokens are exactly those of a quiet swarm."""
    path = checkpoints("llama", num_layers=4)
    swarm = swarm_of(path, ["0:2", "2:4"])
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=30)
    ) as model:
        quiet = model.generate(PROMPT, max_new_tokens=NEW, do_sample=False)
        hidden_size = model.head.hidden_size

        async def scenario():
            fuzzing = [asyncio.ensure_future(_fuzz(p.data_addr, hidden_size, FUZZ_FRAMES // 2))
                       for p in swarm.peers]
            noisy = []
            while not all(f.done() for f in fuzzing):  # the user keeps generating while the frames fly
                noisy.append(await asyncio.to_thread(model.generate, PROMPT, max_new_tokens=NEW, do_sample=False))
            return [f.result() for f in fuzzing], noisy

        sent, noisy = asyncio.run(asyncio.wait_for(scenario(), 600))
    assert sum(s for s, _ in sent) >= FUZZ_FRAMES
    assert noisy and all(torch.equal(out, quiet) for out in noisy)
    assert [p.popen.poll() for p in swarm.peers] == [None, None]  # no peer crashed


def test_a_swarm_on_a_machine_whose_cores_are_all_busy_still_generates_exactly(checkpoints, swarm_of, bootstrap):
    """Another heavy job on every core (a busy home machine): heartbeats and steps are late, but the swarm
    still answers and the tokens are exactly those of a quiet swarm."""
    path = checkpoints("llama", num_layers=4)
    swarm_of(path, ["0:2", "2:4"])
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=60)
    ) as model:
        quiet = model.generate(PROMPT, max_new_tokens=NEW, do_sample=False)
        hogs = [subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 300\n"
                                  "while time.time() < end: pass"]) for _ in range(os.cpu_count() or 2)]
        try:
            busy = [model.generate(PROMPT, max_new_tokens=NEW, do_sample=False) for _ in range(3)]
        finally:
            for hog in hogs:  # ours, by PID
                hog.kill()
                hog.wait()
    assert all(torch.equal(out, quiet) for out in busy)


def _until_listed(model, peer_ids: set[str], *, proved: bool = False, timeout_s: float = 60.0,
                  again=None, again_every_s: float = 5.0) -> None:
    """Wait until the client's DHT reads list every record of ``peer_ids`` (a record stored a moment ago may not
    have reached the DHT nodes a reader asks first); ``proved``: until the client also proved them (it then
    keeps them while they answer, whatever a later read misses). ``again``: called every ``again_every_s``
    while some are missing (stores them again, as their owners' heartbeats would)."""
    deadline = time.monotonic() + timeout_s
    next_again = time.monotonic() + again_every_s
    while True:
        read = model.client.records() if proved else model.client.discovery.read(model.checkpoint.model_key)
        listed = {r.peer_id for r in model.client.run(read)}
        if peer_ids <= listed:
            return
        assert time.monotonic() < deadline, f"{len(peer_ids - listed)} records never listed"
        if again is not None and time.monotonic() >= next_again:
            again()
            next_again = time.monotonic() + again_every_s
        time.sleep(0.2)  # between DHT reads


async def _trap() -> tuple[asyncio.AbstractServer, str, list[str]]:
    """A listener that is no molink peer: it notes the type of the first frame of each connection (what a
    peer sent it) and hangs up."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            frame = await asyncio.wait_for(read_frame(reader, Limits()), 30)
            seen.append(frame.header.get("type") if frame is not None else "nothing")
        except Exception as e:  # noqa: BLE001 - whatever arrived, it is noted
            seen.append(type(e).__name__)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


async def _push_through(addr: str, start: int, end: int, hidden_size: int, next_addr: str, next_peer: str,
                        session: str) -> Error:
    """Open a session on the hop at ``addr`` whose next hop is ``next_peer`` at ``next_addr``, send one step,
    and return the hop's answer (an Error when it would not or could not push)."""
    secret = new_secret()
    meta, body = tensor_to_wire(torch.zeros(1, 1, hidden_size))
    ch = await open_channel(addr)
    try:
        await ch.send(Open(session=session, secret=secret, start=start, end=end, max_length=8, batch=1,
                           next=next_addr, next_secret=new_secret(), next_peer=next_peer, id=1).to_header())
        reply = parse((await asyncio.wait_for(ch.recv(), 30)).header)
        if isinstance(reply, Error):
            return reply
        await ch.send(Step(session=session, secret=secret, layer=start, step=0, position=0, tensor=meta).to_header(),
                      body)
        reply = parse((await asyncio.wait_for(ch.recv(), 60)).header)
        assert isinstance(reply, Error), reply
        return reply
    finally:
        await ch.close()


def test_a_next_hop_is_a_peer_of_the_records_that_proves_who_it_is(checkpoints, swarm_of, bootstrap):
    """Before, ``next`` was any host:port: a peer connected wherever a client said (a port scanner with its
    error messages as the oracle) and a session could loop back into a peer. Now a hop pushes only to a peer
    of its model's records, after that peer proved its key, model and first layer; everything else gets the
    same error and no session data."""
    from swarm.net.dht import HivemindDiscovery
    from swarm.net.records import Identity, PeerRecord, PeerState

    path = checkpoints("llama", num_layers=4)
    swarm_of(path, ["0:2", "2:4"])
    forger = Identity.generate()

    async def forge(model_key: str, trap: str) -> None:
        """A stranger's validly signed record saying the trap serves layers 2:3 of the model (no route can
        use it: nothing serves 3:4 alone, so only a hop told to push there would dial it)."""
        dht = await HivemindDiscovery.create([bootstrap], listen="127.0.0.1:0", upnp=False)
        try:
            await dht.announce(forger.sign_record(PeerRecord(
                peer_id=forger.peer_id, model=model_key, addrs=(trap,), start=2, end=3, state=PeerState.ONLINE,
                throughput=1e9, net_throughput=1e3, free_cache_tokens=10**6, load=0, dtype="float32",
                version="0", expires_at=time.time() + 60)), ttl=60)
        finally:
            await dht.shutdown()

    async def attack(hidden_size: int, hops: list, trap: str) -> tuple[list[Error], Error, Error]:
        first, second = hops
        refused = [
            # a peer id nobody announced, at the trap's address: nothing is dialled
            await _push_through(first.addr, 0, 2, hidden_size, trap, Identity.generate().peer_id, "ssrf-1"),
            # the forged record: the trap is dialled, gets a challenge and no session data
            await _push_through(first.addr, 0, 2, hidden_size, trap, forger.peer_id, "ssrf-2"),
            # a loop back down the layers: the last hop told to push into the first
            await _push_through(second.addr, 2, 4, hidden_size, first.addr, first.peer_id, "loop-1"),
        ]
        self_loop = await _push_through(second.addr, 2, 4, hidden_size, second.addr, second.peer_id, "loop-2")
        honest = await _push_through(first.addr, 0, 2, hidden_size, trap, second.peer_id, "moved-1")
        return refused, self_loop, honest

    async def scenario(model) -> tuple[torch.Tensor, list[Error], Error, Error, list[str], torch.Tensor]:
        server, trap, seen = await _trap()
        try:
            await forge(model.checkpoint.model_key, trap)
            loop = asyncio.get_running_loop()

            def again() -> None:  # the store may miss the nodes a reader asks first: store it again, as a heartbeat
                asyncio.run_coroutine_threadsafe(forge(model.checkpoint.model_key, trap), loop).result(60)

            await asyncio.to_thread(_until_listed, model, {forger.peer_id}, again=again)
            expected = await asyncio.to_thread(model.generate, PROMPT, max_new_tokens=NEW, do_sample=False)
            with model.inference_session(max_length=8) as sess:
                hops = list(sess.route.hops)
            refused, self_loop, honest = await attack(model.head.hidden_size, hops, trap)
            again = await asyncio.to_thread(model.generate, PROMPT, max_new_tokens=NEW, do_sample=False)
        finally:
            server.close()
            await server.wait_closed()
        return expected, refused, self_loop, honest, seen, again

    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=30)
    ) as model:
        expected, refused, self_loop, honest, seen, again = asyncio.run(asyncio.wait_for(scenario(model), 300))
    assert [e.code for e in refused] == ["next_hop_failed"] * 3
    texts = {re.sub(r"next hop \S+", "next hop X", e.message) for e in refused}
    assert texts == {"next hop X failed: next hop X could not be reached"}  # whatever was behind the address
    assert self_loop.code == "bad_message"  # refused at open: nothing to dial
    # the trap got challenges only (the hop dialling the forged record, the client proving it), never a step
    assert seen and set(seen) == {"ping"}
    # the real next hop, named with a wrong address: reached at its record's address; it refuses the step only
    # because this made-up session was never opened there
    assert honest.code == "next_hop_failed" and "unknown_session" in honest.message, honest
    assert torch.equal(again, expected)


def test_a_peer_that_claims_an_absurd_throughput_is_measured_and_banned(checkpoints, swarm_of, bootstrap):
    """Before, a peer announcing 1e9 tokens/s was chosen for every route with no warning. Now the client times
    a few steps through each peer before it prefers it; the liar is banned and the text is unchanged."""
    path = checkpoints("llama", num_layers=4)
    swarm = swarm_of(path, ["2:4"])
    # the honest peer of layers 0:2 claims a modest speed (1 token/s, far under what it runs, so no lie): the
    # liar's route is then the cheapest by about a second a token, whatever round trips the client measured
    # on a busy machine (before, a slow first ping to the new liar could outweigh the honest peer's compute,
    # and the liar was never planned, measured or banned)
    honest = swarm.start_peer("0:2", name="honest", extra=["--throughput", "1"])
    liar = swarm.start_peer("0:2", name="liar", extra=["--throughput", "1e9"])
    honest_id, liar_id = honest.peer_id, liar.peer_id
    # generous step deadlines for the timing: the liar never ran a forward pass before (--throughput skips its
    # own measurement), and a timing that times out is skipped rather than judged
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=30, probe_timeout_s=30)
    ) as model:
        _until_listed(model, {liar_id, honest_id}, proved=True)
        out = model.generate(PROMPT, max_new_tokens=NEW, do_sample=False)
        assert honest_id in model.last_route.peer_ids
        assert model.client.banned == {liar_id}
    liar.kill()
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=30)
    ) as model:
        assert torch.equal(model.generate(PROMPT, max_new_tokens=NEW, do_sample=False), out)


def test_a_peer_that_noises_its_outputs_is_caught_and_the_text_stays_exact(checkpoints, swarm_of, bootstrap, tmp_path):
    """Before, a peer that added noise to its outputs (and claimed to be fast) was chosen for routes and every
    output was wrong, with no warning. Now clients spot-check hops against other peers serving the same
    layers: the liar is caught and banned, and the step is computed again without it."""
    from swarm.launch import start_process
    from tests.integration.conftest import CHILD_ENV

    path = checkpoints("llama", num_layers=4)
    swarm = swarm_of(path, ["0:4", "0:4"])  # one hop a route: every check draws the hop the liar serves
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=30, verify_fraction=0)
    ) as model:
        _until_listed(model, {p.peer_id for p in swarm.peers}, proved=True)
        expected = model.generate(PROMPT, max_new_tokens=NEW, do_sample=False)
    liar = start_process([sys.executable, "-m", "tests.integration.liar_peer", "--initial-peer", bootstrap,
                          "--layers", "0:4", str(path)], "liar", tmp_path, CHILD_ENV)
    try:
        liar.wait_line("liar ready:", 120)
        liar_id = liar.peer_id
        with AutoDistributedModelForCausalLM.from_pretrained(
            str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=30, verify_fraction=1.0)
        ) as model:
            _until_listed(model, {liar_id}, proved=True)
            out = model.generate(PROMPT, max_new_tokens=NEW, do_sample=False)
            banned, audits = set(model.client.banned), model.client.audits
    finally:
        liar.stop()
    assert banned == {liar_id}
    assert audits.caught == [liar_id] and audits.positions > 0
    assert torch.equal(out, expected)


def test_a_flood_of_signed_records_at_dead_addresses_does_not_stop_generation(checkpoints, swarm_of, bootstrap):
    """Before, 20 signed records of fresh keys claiming absurd throughput at dead addresses made generation
    fail. Now a client plans only with peers that proved their key at their address."""
    from swarm.net.dht import HivemindDiscovery
    from swarm.net.records import Identity, PeerRecord, PeerState

    path = checkpoints("llama", num_layers=4)
    swarm = swarm_of(path, ["0:2", "2:4"])
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=30)
    ) as model:
        model_key = model.checkpoint.model_key
        expected = model.generate(PROMPT, max_new_tokens=NEW, do_sample=False)

    keys = [Identity.generate() for _ in range(24)]
    strangers = {key.peer_id for key in keys}

    async def flood(dht: HivemindDiscovery) -> None:
        """The 24 records stored (again: a flooder re-announces as peers do, and a single store can miss)."""
        for i, key in enumerate(keys):
            start, end = (0, 2) if i % 2 else (2, 4)
            await dht.announce(key.sign_record(PeerRecord(
                peer_id=key.peer_id, model=model_key, addrs=(f"127.0.0.1:{1 + i}",), start=start, end=end,
                state=PeerState.ONLINE, throughput=1e9, net_throughput=1e3, free_cache_tokens=10**6, load=0,
                dtype="float32", version="0", expires_at=time.time() + 60)), ttl=60)

    # the flooder's DHT node stays up while the client reads (a node holds what it stored near itself)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="flooder", daemon=True)
    thread.start()
    dht = asyncio.run_coroutine_threadsafe(
        HivemindDiscovery.create([bootstrap], listen="127.0.0.1:0", upnp=False), loop).result(120)
    try:
        asyncio.run_coroutine_threadsafe(flood(dht), loop).result(120)
        _flooded_generation(path, bootstrap, swarm, strangers, expected,
                            again=lambda: asyncio.run_coroutine_threadsafe(flood(dht), loop).result(120))
    finally:
        asyncio.run_coroutine_threadsafe(dht.shutdown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def _flooded_generation(path, bootstrap, swarm, strangers: set[str], expected, again=None) -> None:
    honest = {proc.peer_id for proc in swarm.peers}
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=60)
    ) as model:
        _until_listed(model, strangers, again=again)  # the client reads the flood
        flooded = model.generate(PROMPT, max_new_tokens=NEW, do_sample=False)
        route = set(model.last_route.peer_ids)
        strangers_proved = {key[0] for key in model.client.proven} - honest
    assert route <= honest and not strangers_proved
    assert torch.equal(flooded, expected)
