"""A peer moving its span (peer/server.py: PeerServer.move): it announces the new span at once, its sessions
move as in a failover and their outputs do not change, and a load that fails leaves it serving the old span."""

from __future__ import annotations

import asyncio

import torch

from swarm.net.records import PeerState
from tests.sim.memnet import FakeSpan, reference
from tests.sim.test_failover_sim import DECODE, LAYERS, PREFILL, drive, inputs, sim_swarm


async def test_a_moving_peer_hands_its_sessions_over_and_serves_its_new_span():
    async with sim_swarm() as sim:
        mover = sim.peers["a0"]
        session = await sim.core.open_session(max_length=PREFILL + DECODE)
        assert session.hops[0].peer_id == mover.identity.peer_id
        while_loading = []

        async def load(start: int, end: int) -> FakeSpan:
            while_loading.append(sim.dht.records[mover.identity.peer_id])
            return FakeSpan(start, end)

        moves: list[asyncio.Future] = []

        async def at(step: int) -> None:
            if step == 5:
                moves.append(asyncio.ensure_future(mover.move(8, 12, load)))
                await asyncio.sleep(0)  # the move announces itself and sends the notices before the step

        out = await drive(session, at)
        await asyncio.wait_for(moves[0], 30)
        await session.close()
    assert torch.allclose(out, reference(inputs(), LAYERS)[:, :PREFILL + DECODE], atol=1e-6)
    assert session.hops[0].peer_id != mover.identity.peer_id  # the session moved to the spare
    (rec,) = while_loading
    assert (rec.start, rec.end, rec.state) == (8, 12, PeerState.JOINING)
    now = mover.record()
    assert (now.start, now.end, now.state) == (8, 12, PeerState.ONLINE) and not mover.sessions


async def test_a_failed_load_serves_the_old_span_again():
    async with sim_swarm() as sim:
        mover = sim.peers["c1"]
        tried = []

        async def load(start: int, end: int) -> FakeSpan:
            tried.append((start, end))
            if (start, end) != (8, 12):
                raise OSError("shard missing")
            return FakeSpan(start, end)

        await mover.move(0, 4, load)
    assert tried == [(0, 4), (8, 12)]
    now = mover.record()
    assert (now.start, now.end, now.state) == (8, 12, PeerState.ONLINE)
