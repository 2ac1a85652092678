"""Hundreds of unlike peers placing themselves over simulated hours (peer/placement_sim.py): every layer held
again after churn, few moves (no oscillation), and throughput near the max-flow bound."""

from __future__ import annotations

import random

import pytest

from peer.placement_sim import DRAIN_S, LOAD_S_PER_LAYER, SimPeer, Simulator


def settled(peers: int, num_layers: int, seed: int) -> Simulator:
    sim = Simulator(num_layers, random.Random(seed))
    sim.add_peers(peers, over_s=600)
    sim.run_until(3600)
    return sim


@pytest.mark.parametrize("seed", [0, 1])
def test_hundred_peers_with_churn(seed):
    sim = settled(100, 80, seed)
    assert sim.covered()
    sim.churn(0.2, 3 * 3600)
    sim.run_until(3 * 3600)
    after = [f for t, f in sim.samples if t >= 3600]
    assert min(after) >= 0.8 and sum(after) / len(after) >= 0.9, after
    assert sim.moves_per_peer_hour() <= 0.5
    sim.remove_peers(0.2)
    assert sim.time_to_cover(1800) is not None


def test_thousand_peers_reach_the_bound():
    sim = settled(1000, 80, 7)
    assert sim.fraction() >= 0.9
    assert sim.moves_per_peer_hour() <= 0.5


def test_a_thin_swarm_refills_a_gap_by_moving():
    """Six like peers of 16 layers hold a 32-layer model; every peer holding layer 0 leaves at once, and one of
    the others moves over within a check period, a drain and a load."""
    sim = Simulator(32, random.Random(3), make_peer=lambda pid, layers, rng: SimPeer(pid=pid, rate=160.0, size=16))
    sim.add_peers(6, over_s=60)
    sim.run_until(600)
    assert sim.covered() and sim.fraction() > 0.99
    for peer in [p for p in sim.online() if p.start == 0]:
        sim._leave(peer)
    assert not sim.covered()
    took = sim.time_to_cover(1800)
    assert took is not None and took <= 1.5 * 120 + DRAIN_S + 16 * LOAD_S_PER_LAYER + 5
    assert sum(p.moves for p in sim.peers.values()) >= 1


def test_no_moves_in_a_static_swarm_after_it_settles():
    """Without churn, the moves stop: none in the second simulated hour."""
    sim = settled(60, 40, 5)
    moves = sum(p.moves for p in sim.peers.values())
    sim.run_until(2 * 3600)
    assert sum(p.moves for p in sim.peers.values()) == moves
