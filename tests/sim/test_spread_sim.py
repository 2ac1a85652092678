"""Sessions that start together spread over equal replicas: real PeerServers (r0, r1 serving layers 0:6 at the
same throughput, t serving 6:12) and real client cores over the in-memory network, records never refreshed
(every client sees load 0, as right after a burst of starts)."""

from __future__ import annotations

import asyncio
import random

from routing.swarm_client import SwarmCore
from tests.sim.memnet import FakeDiscovery, MemNetwork, add_peer
from tests.sim.test_failover_sim import CONFIG

LAYERS = 12


async def build() -> tuple[MemNetwork, FakeDiscovery, dict]:
    net, dht = MemNetwork(), FakeDiscovery()
    peers = {name: await add_peer(net, dht, name, a, b, throughput=100.0)
             for name, (a, b) in {"r0": (0, 6), "r1": (0, 6), "t": (6, 12)}.items()}
    return net, dht, peers


async def test_eight_clients_starting_together_use_both_replicas():
    """8 clients (each with its own random generator) open a session at the same moment from the same
    records: both replicas get sessions."""
    net, dht, peers = await build()
    cores = [SwarmCore("sim", LAYERS, dht, CONFIG, connect=net.connector(f"client{i}"), rng=random.Random(i))
             for i in range(8)]
    try:
        sessions = await asyncio.gather(*(core.open_session(max_length=16) for core in cores))
        assert len(peers["r0"].sessions) + len(peers["r1"].sessions) == 8
        assert peers["r0"].sessions and peers["r1"].sessions
        for session in sessions:
            await session.close()
    finally:
        for core in cores:
            await core.aclose()
        await net.shutdown()


async def test_one_client_counts_its_own_sessions_as_load():
    """One client opening 8 sessions at once puts 4 on each replica: the sessions it has open count as load
    before any record says so."""
    net, dht, peers = await build()
    core = SwarmCore("sim", LAYERS, dht, CONFIG, connect=net.connector("client"), rng=random.Random(0))
    try:
        sessions = await asyncio.gather(*(core.open_session(max_length=16) for _ in range(8)))
        assert (len(peers["r0"].sessions), len(peers["r1"].sessions)) == (4, 4)
        assert core.own_load()[peers["t"].identity.peer_id] == 8
        for session in sessions:
            await session.close()
        assert not core.own_load()
    finally:
        await core.aclose()
        await net.shutdown()
