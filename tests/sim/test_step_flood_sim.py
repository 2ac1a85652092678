"""A session's steps wait for its lock one at a time; a flood of them (a client sends one at a time, or the
chunks of one prefill, so only a stranger or a broken client sends more) is bounded instead of piling up tasks
and tensors."""

from __future__ import annotations

import asyncio

import torch

from peer.server import MAX_QUEUED_STEPS
from swarm.net.protocol import Error, Ok, Open, Result, Step, new_secret, parse
from swarm.net.wire import tensor_to_wire
from tests.sim.memnet import HIDDEN, FakeDiscovery, MemNetwork, add_peer

FLOOD = MAX_QUEUED_STEPS + 8


async def test_a_flood_of_steps_for_one_session_is_refused_beyond_a_few():
    net, dht = MemNetwork(), FakeDiscovery()
    try:
        await add_peer(net, dht, "a", 0, 2)
        ch = await net.connector("stranger")("a:1")
        secret = new_secret()
        await ch.send(Open(session="s", secret=secret, start=0, end=2, max_length=64, batch=1, id=1).to_header())
        assert parse((await asyncio.wait_for(ch.recv(), 10)).header) == Ok(id=1)
        meta, body = tensor_to_wire(torch.ones(1, 1, HIDDEN))
        step = Step(session="s", secret=secret, layer=0, step=0, position=0, tensor=meta).to_header()
        for _ in range(FLOOD):  # all before the peer reads any
            await ch.send(step, body)
        replies = [parse((await asyncio.wait_for(ch.recv(), 10)).header) for _ in range(FLOOD)]
        refused = [r for r in replies if isinstance(r, Error)]
        served = [r for r in replies if isinstance(r, Result)]
        # one step runs, MAX_QUEUED_STEPS - 1 wait behind it (and answer as retries of it), the rest are refused
        assert len(served) == MAX_QUEUED_STEPS and len(refused) == FLOOD - MAX_QUEUED_STEPS
        assert all(r.code == "bad_step" and "waiting already" in r.message for r in refused)
        # and the session goes on as if the flood had been one step
        meta, body = tensor_to_wire(torch.ones(1, 1, HIDDEN))
        await ch.send(Step(session="s", secret=secret, layer=0, step=1, position=1, tensor=meta).to_header(), body)
        assert isinstance(parse((await asyncio.wait_for(ch.recv(), 10)).header), Result)
    finally:
        await net.shutdown()


async def test_rebinds_are_bounded_so_a_session_is_no_traffic_amplifier():
    """Before, each rebind re-pushed a session's whole history to wherever it named, without limit (35,000x
    amplification). Now a rebind goes to a peer that proves itself, and a session is rebound at most
    MAX_REBINDS times: the replayed bytes are at most MAX_REBINDS histories."""
    from peer.server import MAX_REBINDS
    from swarm.net.protocol import Rebind

    net, dht = MemNetwork(), FakeDiscovery()
    try:
        await add_peer(net, dht, "a", 0, 2)
        b = await add_peer(net, dht, "b", 2, 4)
        pushed: list[int] = []
        original = b._on_step

        async def counting(channel, msg, body):
            pushed.append(len(body))
            await original(channel, msg, body)

        b._on_step = counting
        ch = await net.connector("owner")("a:1")
        secret, next_secret = new_secret(), new_secret()
        await ch.send(Open(session="s", secret=secret, start=0, end=2, max_length=64, batch=1, next="b:1",
                           next_secret=next_secret, next_peer=b.identity.peer_id, id=1).to_header())
        assert parse((await asyncio.wait_for(ch.recv(), 10)).header) == Ok(id=1)
        meta, body = tensor_to_wire(torch.ones(1, 8, HIDDEN))  # a history of 8 positions at hop a
        await ch.send(Step(session="s", secret=secret, layer=0, step=0, position=0, tensor=meta).to_header(), body)
        answers = []
        for i in range(MAX_REBINDS + 4):
            await ch.send(Rebind(session="s", secret=secret, next="b:1", next_secret=next_secret,
                                 next_peer=b.identity.peer_id, upto_step=1, id=10 + i).to_header())
            while True:  # b's refusals of the replays (it holds no such fresh session) come on the same channel
                reply = parse((await asyncio.wait_for(ch.recv(), 10)).header)
                if getattr(reply, "id", None) == 10 + i:
                    answers.append(reply)
                    break
        ok = [a for a in answers if isinstance(a, Ok)]
        refused = [a for a in answers if isinstance(a, Error)]
        assert len(ok) == MAX_REBINDS and len(refused) == 4
        assert all("rebound" in r.message for r in refused)
        assert len(pushed) <= 1 + MAX_REBINDS  # the step itself, then one replay per granted rebind
    finally:
        await net.shutdown()
