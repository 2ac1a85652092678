"""Failover scenarios in an in-memory swarm: real PeerServers and real client sessions over a fake
network, fake DHT and fake clock; no sockets. Each row fails one hop at one step, four ways, and asserts
that the outputs equal a run without failure, which peer replaced the failed one, and the back-off."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import pytest
import torch

from routing.config import ClientConfig
from routing.failover import BackoffPolicy, avoided
from routing.swarm_client import SwarmCore
from swarm.errors import ConfigError, MissingLayersError, SessionError
from swarm.net.wire import tensor_from_wire
from tests.sim.memnet import HIDDEN, FakeDiscovery, MemNetwork, add_peer, reference

LAYERS = 12
PREFILL = 6
DECODE = 12
CONFIG = ClientConfig(route_wait_s=0.3, min_step_timeout_s=0.2, ping_timeout_s=0.1,
                      backoff=BackoffPolicy(base_s=5.0, max_s=60.0))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def inputs() -> torch.Tensor:
    return torch.randn(1, PREFILL + DECODE, HIDDEN, generator=torch.Generator().manual_seed(0))


async def build(net: MemNetwork, dht: FakeDiscovery) -> dict[str, object]:
    """Route a0 -> b0 -> c0 (fastest); spares: a1 for 0:4, b1+b2 splitting 4:8, c1 for 8:12."""
    peers = {
        "a0": await add_peer(net, dht, "a0", 0, 4, throughput=1000),
        "a1": await add_peer(net, dht, "a1", 0, 4, throughput=10),
        "b0": await add_peer(net, dht, "b0", 4, 8, throughput=1000),
        "b1": await add_peer(net, dht, "b1", 4, 6, throughput=100),
        "b2": await add_peer(net, dht, "b2", 6, 8, throughput=100),
        "c0": await add_peer(net, dht, "c0", 8, 12, throughput=1000),
        "c1": await add_peer(net, dht, "c1", 8, 12, throughput=10),
    }
    return peers


class Sim:
    """A built in-memory swarm (see ``build``) and a client core on it."""

    def __init__(self, net: MemNetwork, dht: FakeDiscovery, clock: FakeClock, peers: dict, core: SwarmCore):
        self.net, self.dht, self.clock, self.peers, self.core = net, dht, clock, peers, core


@contextlib.asynccontextmanager
async def sim_swarm(config: ClientConfig = CONFIG):
    """Build the swarm and a client core; close the core and stop the network on the way out."""
    net, dht, clock = MemNetwork(), FakeDiscovery(), FakeClock()
    peers = await build(net, dht)
    core = SwarmCore("sim", LAYERS, dht, config, connect=net.connector("client"), clock=clock)
    try:
        yield Sim(net, dht, clock, peers, core)
    finally:
        await core.aclose()
        await net.shutdown()


async def drive(session, before_step=None) -> torch.Tensor:
    """A prefill step then DECODE single-token steps of the fixed inputs; ``before_step(step)`` may inject."""
    x, outs = inputs(), []
    for step in range(DECODE + 1):
        if before_step is not None:
            await before_step(step)
        chunk = x[:, :PREFILL] if step == 0 else x[:, PREFILL + step - 1:PREFILL + step]
        outs.append(await session.step(chunk))
    return torch.cat(outs, dim=1)


async def fail(kind: str, name: str, peers, net: MemNetwork, dht: FakeDiscovery) -> None:
    server = peers[name]
    if kind == "error":
        server.span.fail_on_call = server.span.calls  # its next forward raises
    elif kind == "close":
        await net.kill(server.addr)
    elif kind == "timeout":
        net.hang(server.addr)
    elif kind == "forget":  # restarted with its sessions lost: pushes to it are refused as unknown
        server.sessions.clear()
    elif kind == "vanish":
        net.hang(server.addr)
        dht.records.pop(server.identity.peer_id)


async def run(scenario: tuple[str, int, str] | None):
    async with sim_swarm() as sim:
        net, dht, clock, peers, core = sim.net, sim.dht, sim.clock, sim.peers, sim.core
        session = await core.open_session(max_length=PREFILL + DECODE)

        async def inject(step: int) -> None:
            if scenario is not None and step == scenario[1]:
                await fail(scenario[2], scenario[0], peers, net, dht)

        try:
            assert [h.peer_id for h in session.hops] == [peers[n].identity.peer_id for n in ("a0", "b0", "c0")]
            out = await drive(session, inject)
            route = [h.peer_id for h in session.hops]
        finally:
            await session.close()
        return out, route, core, peers, clock


SCENARIOS = [
    # (hop that fails, at step, how) -> replacement peers of its layers
    (("a0", 0, "error"), ["a1"]),
    (("a0", 5, "close"), ["a1"]),
    (("b0", 3, "timeout"), ["b1", "b2"]),
    (("b0", 7, "close"), ["b1", "b2"]),
    (("c0", 1, "vanish"), ["c1"]),
    (("c0", 9, "error"), ["c1"]),
    (("b0", 12, "error"), ["b1", "b2"]),
    (("c0", 4, "forget"), ["c1"]),
    (("b0", 6, "forget"), ["b1", "b2"]),
]


@pytest.mark.parametrize(("scenario", "replacement"), SCENARIOS, ids=["-".join(map(str, s)) for s, _ in SCENARIOS])
async def test_failover_scenarios(scenario, replacement):
    baseline, _, _, _, _ = await run(None)
    assert torch.allclose(baseline, reference(inputs(), LAYERS)[:, :PREFILL + DECODE], atol=1e-6)
    out, route, core, peers, clock = await run(scenario)
    assert torch.allclose(out, baseline, atol=1e-6), (out - baseline).abs().max()
    name = scenario[0]
    kept = [n for n in ("a0", "b0", "c0") if n != name]
    expected = [peers[n].identity.peer_id for n in ("a0", "b0", "c0")]
    i = expected.index(peers[name].identity.peer_id)
    expected[i:i + 1] = [peers[n].identity.peer_id for n in replacement]
    assert route == expected
    failed = peers[name].identity.peer_id
    assert failed in avoided(core.failures, clock(), CONFIG.backoff)
    assert failed not in avoided(core.failures, clock() + 5.0, CONFIG.backoff)  # back-off: 5 s after 1 failure
    assert all(peers[n].identity.peer_id not in core.failures.failures for n in kept)


async def test_no_replica_raises_and_frees_other_hops():
    """c0 and c1 both die: MissingLayersError names 8..11 and a0, b0 hold no session afterwards."""
    async with sim_swarm() as sim:
        net, peers, core = sim.net, sim.peers, sim.core
        session = await core.open_session(max_length=PREFILL + DECODE)
        await session.step(inputs()[:, :PREFILL])
        await net.kill(peers["c0"].addr)
        await net.kill(peers["c1"].addr)
        with pytest.raises(MissingLayersError) as err:
            await session.step(inputs()[:, PREFILL:PREFILL + 1])
        assert err.value.missing == [(8, 12)]
        await asyncio.sleep(0)  # let the close requests land
        assert not peers["a0"].sessions and not peers["b0"].sessions


async def test_draining_hop_is_moved_without_blame():
    """b0 drains mid-generation: the session moves to b1+b2 at the next step, outputs are unchanged, b0 is
    not put in back-off, and b0's drain completes once the session has moved."""
    baseline, _, _, _, _ = await run(None)
    async with sim_swarm() as sim:
        peers, core = sim.peers, sim.core
        session = await core.open_session(max_length=PREFILL + DECODE)
        drains = []

        async def start_drain(step: int) -> None:
            if step == 4:
                drains.append(asyncio.ensure_future(peers["b0"].drain(timeout_s=5)))
                await asyncio.sleep(0)

        try:
            out = await drive(session, start_drain)
            await asyncio.wait_for(drains[0], 5)
            assert not peers["b0"].sessions
            assert [h.peer_id for h in session.hops][1:3] == [peers["b1"].identity.peer_id, peers["b2"].identity.peer_id]
            assert peers["b0"].identity.peer_id not in core.failures.failures
        finally:
            await session.close()
        assert torch.allclose(out, baseline, atol=1e-6)


async def test_slow_but_alive_hop_is_not_declared_dead():
    """b0 takes 3 deadlines for one step but answers pings meanwhile: no failover, same outputs."""
    import time as _time

    baseline, _, _, _, _ = await run(None)
    async with sim_swarm() as sim:
        peers, core = sim.peers, sim.core
        slow = peers["b0"]
        slow.config = type(slow.config)(model="sim", inline_step_tokens=0)  # compute off the loop: pings answered
        real_forward = slow.span.forward

        def slow_forward(hidden, cache):
            if slow.span.calls == 3:
                _time.sleep(3 * CONFIG.min_step_timeout_s)
            return real_forward(hidden, cache)

        slow.span.forward = slow_forward
        session = await core.open_session(max_length=PREFILL + DECODE)
        try:
            out = await drive(session)
            assert session.failovers == 0 and not core.failures.failures
        finally:
            await session.close()
        assert torch.allclose(out, baseline, atol=1e-6)


async def test_idle_session_expires_and_frees_its_memory():
    """A session idle past --session-timeout is closed by the peer's sweep; a later step is refused as
    unknown_session (and the client re-routes around that hop rather than failing)."""
    async with sim_swarm() as sim:
        peers, core = sim.peers, sim.core
        server = peers["a0"]
        now = [0.0]
        server.clock = lambda: now[0]
        session = await core.open_session(max_length=PREFILL + DECODE)
        try:
            await session.step(inputs()[:, :PREFILL])
            assert session.session_id in server.sessions
            free_before = server.free_cache_tokens()
            now[0] = server.config.session_timeout_s + 1.0
            server.expire_sessions()
            assert session.session_id not in server.sessions
            assert server.free_cache_tokens() == free_before + PREFILL + DECODE
            await session.step(inputs()[:, PREFILL:PREFILL + 1])
            assert session.hops[0].peer_id == peers["a1"].identity.peer_id
        finally:
            await session.close()


@pytest.mark.parametrize("how", ["dead", "refusing"])
async def test_a_hop_that_cannot_take_a_new_session_is_routed_around(how):
    """b0 is dead with a stale record, or alive but refusing new sessions: opening a session puts it in
    back-off and uses b1+b2; the hops that had accepted the failed attempt hold no leftover session."""
    from swarm.net.records import PeerState

    baseline, _, _, _, _ = await run(None)
    async with sim_swarm() as sim:
        net, peers, core = sim.net, sim.peers, sim.core
        if how == "dead":
            await net.kill(peers["b0"].addr)
        else:
            peers["b0"].state = PeerState.DRAINING  # its DHT record still says online
        session = await core.open_session(max_length=PREFILL + DECODE)
        try:
            assert [h.peer_id for h in session.hops][1:3] == [peers["b1"].identity.peer_id, peers["b2"].identity.peer_id]
            assert peers["b0"].identity.peer_id in core.failures.failures
            for name in ("a0", "c0"):
                assert list(peers[name].sessions) == [session.session_id]
            out = await drive(session)
        finally:
            await session.close()
        assert torch.allclose(out, baseline, atol=1e-6)


@pytest.mark.parametrize("lost", ["all", "one"])
async def test_peers_whose_records_the_dht_lost_are_kept_while_they_answer(lost):
    """On a busy machine the DHT lost records (heartbeats came late) while the peers served on: the client keeps
    to the peers it last saw that still answer a ping as themselves. "all": every record is gone and one peer
    (a0) is really dead, so the route avoids it; "one": only b0's record is gone, and b0 (the fastest for its
    layers) is still routed to. The output is unchanged."""
    async with sim_swarm() as sim:
        first = await sim.core.open_session(max_length=PREFILL + DECODE)
        try:
            expected = await drive(first)
        finally:
            await first.close()
        a0, b0 = sim.peers["a0"].identity.peer_id, sim.peers["b0"].identity.peer_id
        if lost == "all":
            await sim.net.kill(sim.peers["a0"].addr)
            sim.dht.records.clear()
        else:
            sim.dht.records.pop(b0)
        session = await sim.core.open_session(max_length=PREFILL + DECODE)
        try:
            route = [h.peer_id for h in session.hops]
            out = await drive(session)
        finally:
            await session.close()
        if lost == "all":
            assert a0 not in route
        else:
            assert b0 in route
        torch.testing.assert_close(out, expected)


async def test_a_peer_s_record_lists_its_push_connections_and_their_round_trips():
    """What swarm.status shows per edge and the planner costs peer-to-peer edges by: after a generation, each hop
    but the last lists its next hop, how its connection was made, and the round trip its proof took."""
    _, route, _, peers, _ = await run(None)
    ids = {name: peers[name].identity.peer_id for name in ("a0", "b0", "c0")}
    assert route == list(ids.values())
    for name, nxt in (("a0", "b0"), ("b0", "c0")):
        record = peers[name].record()
        assert record.links == {ids[nxt]: "direct"}
        assert set(record.rtts) == {ids[nxt]} and record.rtts[ids[nxt]] >= 0
    assert peers["c0"].record().links == {}


@pytest.mark.parametrize("fails", [None, "b0", "c0"], ids=["no-failure", "middle-hop-dies", "last-hop-dies"])
async def test_a_prefill_that_keeps_one_position_returns_the_last_one_also_across_a_failover(fails):
    """step(keep=1), as generate() prefills: the last hop sends back only the last position, and it equals the
    last position of the full computation, also when a hop dies during that prefill (the replacement route
    computes it again, keeping one position too). keep larger than the step returns every position."""
    x = inputs()
    full = reference(x, LAYERS)
    async with sim_swarm() as sim:
        session = await sim.core.open_session(max_length=PREFILL + DECODE)
        try:
            if fails is not None:
                await fail("close", fails, sim.peers, sim.net, sim.dht)
            out = await session.step(x[:, :PREFILL], keep=1)
            assert out.shape == (1, 1, HIDDEN)
            assert torch.allclose(out, full[:, PREFILL - 1:PREFILL], atol=1e-6)
            more = await session.step(x[:, PREFILL:PREFILL + 2], keep=5)  # fewer positions than keep: all of them
            assert torch.allclose(more, full[:, PREFILL:PREFILL + 2], atol=1e-6)
            with pytest.raises(SessionError):
                await session.step(x[:, PREFILL + 2:PREFILL + 3], keep=-1)
        finally:
            await session.close()


@pytest.mark.parametrize(("keep", "fails"), [(1, None), (0, None), (1, ("b0", "error")), (0, ("c0", "close")),
                                              (1, ("a0", "close"))],
                         ids=["keep-last", "keep-all", "middle-hop-fails-on-chunk-2", "last-hop-dies",
                              "first-hop-dies"])
async def test_a_chunked_prefill_equals_the_whole_computation_also_when_a_hop_fails(keep, fails):
    """prefill_chunk_tokens=2: the 6-token prefill goes as 3 chunks at once, pipelined through the route; the
    positions kept equal the unchunked computation's, and decoding goes on at the right step and position. A hop
    that fails during the chunks (its second forward raises, or its connection is lost) sends the session to a
    new route, which computes the prefill again in one piece."""
    x = inputs()
    full = reference(x, LAYERS)
    async with sim_swarm(replace(CONFIG, prefill_chunk_tokens=2, adapt_prefill_chunks=False)) as sim:
        session = await sim.core.open_session(max_length=PREFILL + DECODE)
        try:
            if fails is not None:
                name, how = fails
                if how == "error":
                    sim.peers[name].span.fail_on_call = sim.peers[name].span.calls + 1  # its second chunk
                else:
                    await fail(how, name, sim.peers, sim.net, sim.dht)
            out = await session.step(x[:, :PREFILL], keep=keep)
            want = full[:, PREFILL - 1:PREFILL] if keep else full[:, :PREFILL]
            assert out.shape == want.shape and torch.allclose(out, want, atol=1e-6)
            assert session.failovers == (fails is not None)
            assert session.step_index == (1 if fails else 3)  # 3 chunks, or the prefill again in one piece
            for t in range(PREFILL, PREFILL + 3):  # decoding goes on where the prefill ended
                step = await session.step(x[:, t:t + 1])
                assert torch.allclose(step, full[:, t:t + 1], atol=1e-6)
        finally:
            await session.close()


async def test_a_session_sends_a_codec_only_to_peers_that_listed_it():
    """wire_codec="int8": every hop encodes what it sends on in int8, except into a peer whose Pong listed no
    codecs (an older peer): that edge stays raw. The outputs stay within int8's error of the exact ones."""
    x = inputs()
    full = reference(x, LAYERS)
    async with sim_swarm(replace(CONFIG, wire_codec="int8")) as sim:
        old = sim.peers["b0"]
        old_pong = old.pong
        old.pong = lambda *a, **k: replace(old_pong(*a, **k), codecs=None)  # b0 decodes raw only
        session = await sim.core.open_session(max_length=PREFILL + DECODE)
        try:
            out = await session.step(x[:, :PREFILL])
            sid = session.session_id
            assert [sim.peers[n].sessions[sid].codec for n in ("a0", "b0", "c0")] == ["raw", "int8", "int8"]
            assert sim.core.codecs[sim.peers["a0"].identity.peer_id] >= {"int8", "float16"}
            assert sim.core.codecs[old.identity.peer_id] == frozenset()
            scale = full[:, :PREFILL].abs().amax()
            assert (out - full[:, :PREFILL]).abs().max() <= 0.05 * scale  # a few int8 steps, not exact
        finally:
            await session.close()


async def test_an_unknown_codec_is_a_clear_error():
    net, dht = MemNetwork(), FakeDiscovery()
    try:
        with pytest.raises(ConfigError, match="wire_codec"):
            SwarmCore("sim", LAYERS, dht, replace(CONFIG, wire_codec="zstd"), connect=net.connector("client"))
    finally:
        await net.shutdown()


async def test_decode_steps_take_their_own_lane_to_each_next_hop():
    """peer/relay.py: a prefill's pushes and a decode step's go on two connections to the next hop, so a decode
    step never waits behind a prefill chunk; a session that pushed a replay keeps to the bulk lane."""
    async with sim_swarm() as sim:
        session = await sim.core.open_session(max_length=PREFILL + DECODE)
        try:
            x = inputs()
            await session.step(x[:, :PREFILL])
            a0 = sim.peers["a0"]
            b0 = sim.peers["b0"].identity.peer_id
            assert {lane for peer, lane in a0.relay._channels if peer == b0} == {"bulk"}
            await session.step(x[:, PREFILL:PREFILL + 1])
            assert {lane for peer, lane in a0.relay._channels if peer == b0} == {"bulk", "decode"}
            assert a0.record().links == {b0: "direct"}  # one entry per next hop, whatever its lanes
            assert not a0.sessions[session.session_id].bulk_only
            await fail("close", "b0", sim.peers, sim.net, sim.dht)  # a0 is rebound to b1 and replays to it
            for t in range(PREFILL + 1, PREFILL + 3):
                await session.step(x[:, t:t + 1])
            b1 = sim.peers["b1"].identity.peer_id
            assert a0.sessions[session.session_id].bulk_only
            assert {lane for peer, lane in a0.relay._channels if peer == b1} == {"bulk"}  # nothing overtakes it
        finally:
            await session.close()


@pytest.mark.parametrize("chunk", [0, 2], ids=["whole", "chunked"])
async def test_news_about_the_session_without_a_step_does_not_break_a_step(chunk):
    """An error about the session that names no step (a peer's notice, not an answer) is not this step's."""
    from routing.link import Received
    from swarm.net.protocol import Error

    x = inputs()
    async with sim_swarm(replace(CONFIG, prefill_chunk_tokens=chunk, adapt_prefill_chunks=False)) as sim:
        session = await sim.core.open_session(max_length=PREFILL + DECODE)
        try:
            notice = Received(Error(code="compute_failed", message="about nothing", session=session.session_id))
            session._inbox.put_nowait((session.hops[1].addr, notice))
            out = await session.step(x[:, :PREFILL], keep=1)
            assert torch.allclose(out, reference(x, LAYERS)[:, PREFILL - 1:PREFILL], atol=1e-6)
        finally:
            await session.close()


async def test_auto_codecs_follow_each_link_s_measured_bandwidth():
    """wire_codec="auto" (routing/codecs.py): the client's link into a0 measured at 5 Mbit/s carries int8, a0's
    published edge to b0 at 50 Mbit/s float16, b0's to c0 (unmeasured) and the way back stay raw."""
    x = inputs()
    full = reference(x, LAYERS)
    async with sim_swarm(replace(CONFIG, wire_codec="auto")) as sim:
        a0, b0, c0 = (sim.peers[n] for n in ("a0", "b0", "c0"))
        route = await sim.core.wait_route()
        link = await sim.core.link(a0.addr)
        for probe in list(sim.core._probes):  # let the background probe finish, then set the figures
            await probe
        link.bps = 5e6 / 8
        a0_id = a0.identity.peer_id  # a0's record as it reads once a0 has measured its push edge to b0
        sim.dht.records[a0_id] = replace(sim.dht.records[a0_id], mbits={b0.identity.peer_id: 50.0})
        await sim.core.records()
        assert [h.peer_id for h in route.hops] == [p.identity.peer_id for p in (a0, b0, c0)]
        session = await sim.core.open_session(max_length=PREFILL + DECODE)
        try:
            sent: list[str] = []
            send = link.send

            async def spy(msg, body=b""):
                sent.append(msg.tensor["codec"] if hasattr(msg, "tensor") else "")
                await send(msg, body)

            link.send = spy
            out = await session.step(x[:, :PREFILL])
            sid = session.session_id
            assert sent and set(sent) == {"int8"}
            assert [p.sessions[sid].codec for p in (a0, b0, c0)] == ["float16", "raw", "raw"]
            assert (out - full[:, :PREFILL]).abs().max() <= 0.05 * full[:, :PREFILL].abs().amax()
        finally:
            await session.close()


@pytest.mark.parametrize("mbit", [0.01, 1000.0], ids=["slow-link", "fast-link"])
async def test_prefill_chunks_are_sized_from_the_measured_links(mbit):
    """A slow measured link into the first hop makes chunks short (the pipeline fills sooner), a fast one long
    (fewer passes): the step goes as the chunks routing/prefill.py plans from the route's figures."""
    from routing.prefill import chunk_size, plan_chunks

    x = inputs()
    full = reference(x, LAYERS)
    async with sim_swarm(replace(CONFIG, prefill_chunk_tokens=1)) as sim:
        await sim.core.wait_route()
        link = await sim.core.link(sim.peers["a0"].addr)
        for probe in list(sim.core._probes):
            await probe
        link.bps = mbit * 1e6 / 8
        session = await sim.core.open_session(max_length=PREFILL + DECODE)
        try:
            out = await session.step(x[:, :PREFILL])
            size = chunk_size(PREFILL, 6, 1 / 1000, HIDDEN * 4 / (mbit * 1e6 / 8), 1)
            assert session.step_index == len(plan_chunks(PREFILL, 0, size))
            assert session.step_index == (6 if mbit < 1 else 1)
            assert torch.allclose(out, full[:, :PREFILL], atol=1e-6)
        finally:
            await session.close()


@pytest.mark.parametrize("name", ["a0", "b0"], ids=["first-hop-replayed-by-the-client", "middle-hop-by-its-upstream"])
async def test_a_replay_after_a_failover_goes_in_chunks(name, monkeypatch):
    """The client replays its inputs to a new first hop, and an upstream peer its pushed outputs to a new next
    hop, in chunks (prefill_chunk_tokens, peer.server.REPLAY_CHUNK_TOKENS), and the outputs stay exact."""
    import peer.server

    monkeypatch.setattr(peer.server, "REPLAY_CHUNK_TOKENS", 3)
    x = inputs()
    full = reference(x, LAYERS)
    config = replace(CONFIG, prefill_chunk_tokens=3, adapt_prefill_chunks=False)
    async with sim_swarm(config) as sim:
        session = await sim.core.open_session(max_length=PREFILL + DECODE)
        try:
            replays: list[tuple[int, int]] = []
            for server in sim.peers.values():
                apply = server._apply_step

                async def spy(sess, msg, body, apply=apply):
                    if msg.replay:
                        replays.append((msg.position, tensor_from_wire(msg.tensor, body).shape[1]))
                    return await apply(sess, msg, body)

                server._apply_step = spy
            outs = [await session.step(x[:, :PREFILL])]
            for t in range(PREFILL, PREFILL + 4):
                outs.append(await session.step(x[:, t:t + 1]))
            await fail("close", name, sim.peers, sim.net, sim.dht)
            for t in range(PREFILL + 4, PREFILL + 6):
                outs.append(await session.step(x[:, t:t + 1]))
            assert torch.allclose(torch.cat(outs, dim=1), full[:, :PREFILL + 6], atol=1e-6)
            assert session.failovers == 1
            first = [r for r in replays if r[0] == 0]
            assert first and all(n <= 3 for _, n in replays) and len(replays) >= 3, replays  # 10 positions in chunks
        finally:
            await session.close()


async def test_waiting_for_missing_layers_says_so_in_the_log(monkeypatch, caplog):
    """While no route covers the model, the client logs what it waits for every few seconds, then raises."""
    import logging

    import routing.swarm_client

    monkeypatch.setattr(routing.swarm_client, "WAIT_NOTE_EVERY_S", 0.1)
    async with sim_swarm() as sim:
        gone = {sim.peers[n].identity.peer_id for n in ("c0", "c1")}
        with caplog.at_level(logging.INFO, logger="molink.client"), pytest.raises(MissingLayersError):
            await sim.core.wait_route(avoid=gone, timeout_s=0.6)
    notes = [r.getMessage() for r in caplog.records if "waiting for the swarm" in r.getMessage()]
    assert notes and "8" in notes[0], notes
