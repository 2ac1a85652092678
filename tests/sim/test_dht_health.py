"""A peer says once, not on every heartbeat, that it cannot see the swarm, and once when it can again."""

from __future__ import annotations

import logging

from peer.config import PeerConfig
from peer.server import PeerServer
from swarm.net.records import Identity
from tests.sim.memnet import FakeDiscovery, FakeSpan


class CountingDiscovery(FakeDiscovery):
    """rejoin() answers with the scripted numbers of DHT neighbours, one per heartbeat."""

    def __init__(self, neighbours: list[int]) -> None:
        super().__init__()
        self.neighbours = list(neighbours)

    async def rejoin(self) -> int:
        return self.neighbours.pop(0)


async def test_cannot_see_the_swarm_is_logged_once_and_its_end_once(caplog):
    """Neighbours 2, 0, 0, 0, 3, 3: one warning when they drop to 0, one info when they come back."""
    dht = CountingDiscovery([2, 0, 0, 0, 3, 3])
    server = PeerServer(config=PeerConfig(model="sim", initial_peers=("/ip4/198.51.100.2/tcp/1/p2p/Qm",)),
                        span=FakeSpan(0, 2), identity=Identity.generate(), model_key="sim", discovery=dht)
    with caplog.at_level(logging.INFO, logger="molink.peer"):
        for _ in range(6):
            await server.check_dht_neighbours()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO and "visible again" in r.getMessage()]
    assert len(warnings) == 1 and "cannot see the swarm" in warnings[0].getMessage()
    assert "198.51.100.2" in warnings[0].getMessage()
    assert len(infos) == 1 and "3 DHT node(s)" in infos[0].getMessage()


async def test_a_peer_that_started_a_swarm_alone_does_not_warn(caplog):
    """With no initial peers, being the only DHT node is normal: nothing is logged."""
    server = PeerServer(config=PeerConfig(model="sim"), span=FakeSpan(0, 2), identity=Identity.generate(),
                        model_key="sim", discovery=CountingDiscovery([0, 0]))
    with caplog.at_level(logging.INFO, logger="molink.peer"):
        await server.check_dht_neighbours()
        await server.check_dht_neighbours()
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
