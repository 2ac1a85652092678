"""A session's steps wait for its lock one at a time; a flood of them (a client waits for each result, so
only a stranger or a broken client sends many at once) is bounded instead of piling up tasks and tensors."""

from __future__ import annotations

import asyncio

import torch

from peer.server import MAX_QUEUED_STEPS
from swarm.net.protocol import Error, Ok, Open, Result, Step, new_secret, parse
from swarm.net.wire import tensor_to_wire
from tests.sim.memnet import HIDDEN, FakeDiscovery, MemNetwork, add_peer


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
        for _ in range(12):  # all before the peer reads any
            await ch.send(step, body)
        replies = [parse((await asyncio.wait_for(ch.recv(), 10)).header) for _ in range(12)]
        refused = [r for r in replies if isinstance(r, Error)]
        served = [r for r in replies if isinstance(r, Result)]
        # one step runs, MAX_QUEUED_STEPS - 1 wait behind it (and answer as retries of it), the rest are refused
        assert len(served) == MAX_QUEUED_STEPS and len(refused) == 12 - MAX_QUEUED_STEPS
        assert all(r.code == "bad_step" and "waiting already" in r.message for r in refused)
        # and the session goes on as if the flood had been one step
        meta, body = tensor_to_wire(torch.ones(1, 1, HIDDEN))
        await ch.send(Step(session="s", secret=secret, layer=0, step=1, position=1, tensor=meta).to_header(), body)
        assert isinstance(parse((await asyncio.wait_for(ch.recv(), 10)).header), Result)
    finally:
        await net.shutdown()
