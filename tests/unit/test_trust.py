"""routing/trust.py: which records' peers a client proves, and what it believes of their claims."""

from __future__ import annotations

import random

from routing.trust import (
    LIE_FACTOR,
    MAX_PROBES,
    PLAN_FACTOR,
    effective,
    lies,
    measured_throughput,
    proof_key,
    to_probe,
)
from swarm.net.records import Identity, PeerRecord, PeerState


def record(start: int = 0, throughput: float = 10.0, addr: str = "10.0.0.1:1") -> PeerRecord:
    key = Identity.generate()
    return PeerRecord(peer_id=key.peer_id, model="m", addrs=(addr,), start=start, end=start + 2,
                      state=PeerState.ONLINE, throughput=throughput, net_throughput=1.0, free_cache_tokens=1,
                      load=0, dtype="float32", version="0")


def test_a_flood_is_proved_a_bounded_sample_at_a_time_and_every_record_gets_its_turn():
    flood = [record() for _ in range(50)]
    rng = random.Random(0)
    proven: set = set()
    rounds = 0
    while len(proven) < len(flood):
        batch = to_probe(flood, proven, avoid=(), rng=rng)
        assert 0 < len(batch) <= MAX_PROBES
        proven |= {proof_key(r) for r in batch}
        rounds += 1
    assert rounds == -(-len(flood) // MAX_PROBES)
    assert to_probe(flood, proven, avoid=(), rng=rng) == []
    assert to_probe(flood, set(), avoid={r.peer_id for r in flood}, rng=rng) == []  # in back-off: not pinged


def test_a_proof_is_for_a_peer_at_an_address_and_a_first_layer():
    r = record()
    moved = PeerRecord(**{**r.__dict__, "addrs": ("10.0.0.2:1",)})
    assert proof_key(r) != proof_key(moved)


def test_claims_are_weighed_against_what_was_timed():
    assert measured_throughput([0.5, 0.1, 0.2]) == 10.0
    assert lies(LIE_FACTOR * 10.0 + 1, 10.0) and not lies(LIE_FACTOR * 10.0, 10.0)
    fast, slow, unmeasured = record(throughput=1e9), record(start=2, throughput=5.0), record(throughput=7.0)
    timed = {(fast.peer_id, 0): 20.0, (slow.peer_id, 2): 100.0}
    got = {r.peer_id: r.throughput for r in effective([fast, slow, unmeasured], timed)}
    assert got == {fast.peer_id: PLAN_FACTOR * 20.0, slow.peer_id: 5.0, unmeasured.peer_id: 7.0}
