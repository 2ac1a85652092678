"""Strangers against real peer processes: what a hostile client can try on a public swarm, on loopback.

Each test is a regression test for an attack that worked before the defence it checks (see the issue
tracker's "strangers" issue): the attack is tried as a stranger would, and the honest user's output must stay
exactly what it is without the attack.
"""

from __future__ import annotations

import asyncio

import torch

from routing.config import ClientConfig
from swarm import AutoDistributedModelForCausalLM
from swarm.net.protocol import Close, Rebind, Step, new_secret, parse
from swarm.net.transport import open_channel
from swarm.net.wire import tensor_to_wire

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
                    (Step(session=sid, secret=guess, step=1, position=len(PROMPT[0]), tensor=meta), body),
                    (Rebind(session=sid, secret=guess, next=trap, next_secret=guess, upto_step=1, id=1), b""),
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
