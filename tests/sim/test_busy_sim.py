"""A full peer is not a dead peer: peers that answer ``busy`` (or today's ``no_memory``) are planned around for
the open at hand, never put in failure back-off; when every route needs a busy peer the client waits with a
bounded back-off on a fake clock, then raises SwarmBusyError naming them. Real PeerServers and a real client
core over the in-memory network of tests/sim/test_failover_sim.py (a0 -> b0 -> c0, spares a1, b1+b2, c1)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import torch

from swarm.errors import SwarmBusyError
from tests.sim.test_failover_sim import CONFIG, DECODE, PREFILL, drive, run, sim_swarm

BUSY_CONFIG = dataclasses.replace(CONFIG, busy_wait_s=5.0, busy_pause_s=0.5, busy_max_pause_s=2.0)


def make_full(server, how: str) -> None:
    """The peer refuses new sessions: at its session limit (busy) or out of KV cache (no_memory)."""
    if how == "busy":
        server.config = dataclasses.replace(server.config, max_sessions=0)
    else:  # its session memory (counted in tokens in the sim) holds one token
        server.kv_budget = dataclasses.replace(server.kv_budget, total_bytes=1)


def make_free(server) -> None:
    server.config = dataclasses.replace(server.config, max_sessions=64)
    server.kv_budget = dataclasses.replace(server.kv_budget, total_bytes=16384)


class FakeSleep:
    """Advances the sim's fake clock instead of sleeping; ``at_pause[n]`` runs before pause n returns."""

    def __init__(self, clock, at_pause=None) -> None:
        self.clock, self.pauses, self.at_pause = clock, [], at_pause or {}

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.clock.now += seconds
        if len(self.pauses) in self.at_pause:
            self.at_pause[len(self.pauses)]()
        await asyncio.sleep(0)


@pytest.mark.parametrize("how", ["busy", "no_memory"])
async def test_a_busy_replica_is_routed_around_without_back_off(how):
    """a0 (the fastest for layers 0:4) is full: the session opens on a1 at once, nothing is put in back-off,
    no wait happens, and the outputs equal a run on the usual route."""
    baseline, *_ = await run(None)
    async with sim_swarm() as sim:
        sim.core.config, sim.core.sleep = BUSY_CONFIG, FakeSleep(sim.clock)
        make_full(sim.peers["a0"], how)
        session = await sim.core.open_session(max_length=PREFILL + DECODE)
        try:
            assert session.hops[0].peer_id == sim.peers["a1"].identity.peer_id
            assert not sim.core.failures.failures and not sim.core.sleep.pauses
            out = await drive(session)
        finally:
            await session.close()
        assert torch.allclose(out, baseline, atol=1e-6)


async def test_all_replicas_busy_waits_until_one_frees():
    """a0 and a1 are both full: the client waits (back-off on the fake clock) and opens on a1 once it frees
    after the second pause; no peer is put in back-off, and no other hop keeps a leftover session."""
    async with sim_swarm() as sim:
        peers = sim.peers
        sleep = FakeSleep(sim.clock, at_pause={2: lambda: make_free(peers["a1"])})
        sim.core.config, sim.core.sleep = BUSY_CONFIG, sleep
        make_full(peers["a0"], "busy")
        make_full(peers["a1"], "no_memory")
        session = await sim.core.open_session(max_length=PREFILL + DECODE)
        try:
            assert session.hops[0].peer_id == peers["a1"].identity.peer_id
            assert len(sleep.pauses) == 2 and sleep.pauses[1] >= sleep.pauses[0]  # doubling (with jitter)
            assert all(0.25 <= p <= 2.0 for p in sleep.pauses)
            assert not sim.core.failures.failures
            for name in ("b0", "c0"):
                assert list(peers[name].sessions) == [session.session_id]
            await drive(session)
        finally:
            await session.close()


async def test_all_replicas_busy_raises_swarm_busy_after_the_wait():
    """a0 and a1 stay full: SwarmBusyError after busy_wait_s of pauses (fake clock), naming both peers and
    the layers; no peer holds a session and none is in back-off."""
    async with sim_swarm() as sim:
        peers = sim.peers
        sleep = FakeSleep(sim.clock)
        sim.core.config, sim.core.sleep = BUSY_CONFIG, sleep
        make_full(peers["a0"], "busy")
        make_full(peers["a1"], "busy")
        with pytest.raises(SwarmBusyError) as err:
            await sim.core.open_session(max_length=PREFILL + DECODE)
        assert set(err.value.busy) == {peers["a0"].identity.peer_id, peers["a1"].identity.peer_id}
        assert peers["a0"].addr in str(err.value) and "layers 0..11" in str(err.value)
        assert sum(sleep.pauses) == pytest.approx(BUSY_CONFIG.busy_wait_s)
        assert err.value.waited_s == pytest.approx(BUSY_CONFIG.busy_wait_s)
        await asyncio.sleep(0)  # let the close requests land
        assert not any(p.sessions for p in peers.values())
        assert not sim.core.failures.failures


async def test_failover_onto_a_busy_replica_waits_for_it():
    """c0 dies mid-generation while its only replica c1 is full: the re-route waits for c1 (not blamed),
    and the outputs equal a run without failure."""
    baseline, *_ = await run(None)
    async with sim_swarm() as sim:
        net, peers = sim.net, sim.peers
        sleep = FakeSleep(sim.clock, at_pause={1: lambda: make_free(peers["c1"])})
        sim.core.config, sim.core.sleep = BUSY_CONFIG, sleep
        session = await sim.core.open_session(max_length=PREFILL + DECODE)

        async def kill_c0(step: int) -> None:
            if step == 3:
                make_full(peers["c1"], "busy")
                await net.kill(peers["c0"].addr)

        try:
            out = await drive(session, kill_c0)
            assert session.hops[-1].peer_id == peers["c1"].identity.peer_id
            assert len(sleep.pauses) == 1
            assert set(sim.core.failures.failures) == {peers["c0"].identity.peer_id}
        finally:
            await session.close()
        assert torch.allclose(out, baseline, atol=1e-6)
