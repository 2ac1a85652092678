"""Failover decisions as scenario tables: which hop is blamed, for how long a failed peer is avoided,
and which replacement the planner picks, against a fake clock (plain numbers) and fake records."""

from __future__ import annotations

import pytest

from routing.failover import (
    BackoffPolicy,
    FailureHistory,
    FailureKind,
    HopFailure,
    avoided,
    backoff_s,
    blamed,
    busy_pause_s,
    classify_error,
    step_deadline_s,
)
from routing.planner import Hop, plan_route
from swarm.errors import MissingLayersError
from swarm.net.protocol import Error
from tests.factories import make_peer_record

HOPS = [Hop("pa", "10.0.0.1:1", 0, 4), Hop("pb", "10.0.0.2:1", 4, 8), Hop("pc", "10.0.0.3:1", 8, 12)]


@pytest.mark.parametrize(
    ("from_addr", "header", "expected"),
    [
        # a hop that lost the session or failed in compute is blamed itself
        ("10.0.0.2:1", {"code": "compute_failed", "step": 3}, HopFailure(1, FailureKind.ERROR)),
        ("10.0.0.3:1", {"code": "unknown_session", "step": 3}, HopFailure(2, FailureKind.ERROR)),
        # a pusher that cannot reach its next hop blames that next hop, not itself
        ("10.0.0.1:1", {"code": "next_hop_failed", "hop": "10.0.0.2:1"}, HopFailure(1, FailureKind.ERROR)),
        ("10.0.0.2:1", {"code": "draining"}, HopFailure(1, FailureKind.DRAINING)),
        # a full peer is busy, not failed (today's peers also say no_memory)
        ("10.0.0.2:1", {"code": "busy"}, HopFailure(1, FailureKind.BUSY)),
        ("10.0.0.3:1", {"code": "no_memory"}, HopFailure(2, FailureKind.BUSY)),
        # the client's own mistakes are not hop failures
        ("10.0.0.1:1", {"code": "bad_shape"}, None),
        ("10.0.0.1:1", {"code": "too_long"}, None),
        # a hop that is no longer in the route cannot be blamed
        ("10.9.9.9:1", {"code": "compute_failed"}, None),
        ("10.0.0.1:1", {"code": "next_hop_failed", "hop": "10.9.9.9:1"}, None),
    ],
)
def test_classify_error(from_addr, header, expected):
    got = classify_error(HOPS, from_addr, Error(message="m", **header))
    if expected is None:
        assert got is None
    else:
        assert got is not None and (got.hop_index, got.kind) == (expected.hop_index, expected.kind)


@pytest.mark.parametrize(("n", "seconds"), [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (50, 60.0)])
def test_backoff_doubles_and_caps(n, seconds):
    assert backoff_s(n, BackoffPolicy(base_s=1.0, max_s=60.0)) == seconds


def test_avoided_over_a_fake_timeline():
    """A peer failing at t=10 is avoided until t=11; failing again at t=20 until t=22; others never."""
    history = FailureHistory().record("pa", 10.0)
    assert avoided(history, 10.5) == {"pa"}
    assert avoided(history, 11.0) == frozenset()
    history = history.record("pa", 20.0).record("pb", 20.0)
    assert avoided(history, 20.5) == {"pa", "pb"}
    assert avoided(history, 21.5) == {"pa"}
    assert avoided(history, 22.0) == frozenset()


def test_only_real_failures_are_blamed():
    """ERROR, CLOSED, TIMEOUT and VANISHED put a peer in back-off; DRAINING and BUSY do not."""
    assert {k for k in FailureKind if blamed(k)} == {
        FailureKind.ERROR, FailureKind.CLOSED, FailureKind.TIMEOUT, FailureKind.VANISHED}


@pytest.mark.parametrize(
    ("attempt", "waited", "jitter", "expected"),
    [
        (0, 0.0, 0.0, 0.1),     # the first pause, jitter at its low end: half of first_s
        (0, 0.0, 0.999, 0.1999),
        (2, 0.7, 1.0, 0.8),     # doubling: 0.2 x 2^2
        (6, 3.0, 1.0, 2.0),     # capped at max_s...
        (6, 9.5, 1.0, 0.5),     # ...and the last pause ends the wait exactly at total_s
        (7, 10.0, 0.5, None),   # the wait is over
    ],
)
def test_busy_pause_doubles_with_jitter_and_ends_at_the_total(attempt, waited, jitter, expected):
    got = busy_pause_s(attempt, waited, first_s=0.2, max_s=2.0, total_s=10.0, jitter=jitter)
    assert got == (None if expected is None else pytest.approx(expected, abs=1e-4))


def test_history_is_immutable():
    h0 = FailureHistory()
    h1 = h0.record("pa", 1.0)
    assert dict(h0.failures) == {} and dict(h1.failures) == {"pa": (1.0,)}


@pytest.mark.parametrize(
    ("est", "tokens", "expected"), [(0.01, 1, 5.0), (0.5, 1, 10.0), (0.01, 100, 20.0)]
)
def test_step_deadline_follows_the_route(est, tokens, expected):
    assert step_deadline_s(est, tokens, floor_s=5.0, factor=20.0) == pytest.approx(expected)


def _swarm():
    a1 = make_peer_record(start=0, end=4, throughput=200.0, sign=False)
    a2 = make_peer_record(start=0, end=4, throughput=100.0, sign=False)
    b1 = make_peer_record(start=4, end=8, throughput=200.0, sign=False)
    b2 = make_peer_record(start=4, end=6, throughput=100.0, sign=False)
    b3 = make_peer_record(start=6, end=8, throughput=100.0, sign=False)
    return a1, a2, b1, b2, b3


@pytest.mark.parametrize(
    ("failed", "expect"),
    [
        ("a1", ["a2"]),        # the replica of the first half
        ("b1", ["b2", "b3"]),  # the second half, replaced by two peers
    ],
)
def test_replacement_covers_exactly_the_failed_layers(failed, expect):
    recs = dict(zip(["a1", "a2", "b1", "b2", "b3"], _swarm(), strict=True))
    dead = recs[failed]
    route = plan_route(list(recs.values()), 8, start=dead.start, end=dead.end, avoid={dead.peer_id})
    assert [h.peer_id for h in route.hops] == [recs[n].peer_id for n in expect]
    assert (route.hops[0].start, route.hops[-1].end) == (dead.start, dead.end)


def test_no_replacement_names_the_layers():
    a1, a2, b1, b2, b3 = _swarm()
    with pytest.raises(MissingLayersError) as err:
        plan_route([a1, a2, b1, b2], 8, start=4, end=8, avoid={b1.peer_id})
    assert err.value.missing == [(6, 8)]
