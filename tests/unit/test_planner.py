"""Route planning: the cheapest chain of online peers covering every layer, or a typed error."""

from __future__ import annotations

import pytest

from routing.planner import missing_layers, plan_route
from swarm.errors import MissingLayersError, RoutingError
from swarm.records import PeerState
from tests.factories import make_peer_record


def rec(start, end, tput=100.0, **kw):
    return make_peer_record(start=start, end=end, throughput=tput, sign=False, **kw)


def test_single_chain_is_found_in_layer_order():
    """Two peers whose spans meet make a two-hop route, first hop first."""
    a, b = rec(0, 3), rec(3, 8)
    route = plan_route([b, a], 8)
    assert [(h.start, h.end) for h in route.hops] == [(0, 3), (3, 8)]
    assert route.peer_ids == (a.peer_id, b.peer_id)


def test_faster_replica_is_chosen():
    """Of two replicas of a span, the one with higher throughput wins."""
    slow, fast, tail = rec(0, 4, tput=10.0), rec(0, 4, tput=500.0), rec(4, 8)
    route = plan_route([slow, fast, tail], 8)
    assert route.hops[0].peer_id == fast.peer_id


def test_one_long_hop_beats_two_short_when_cheaper():
    """Fewer hops win when compute is equal: each hop adds link latency."""
    whole, first, second = rec(0, 8, tput=100.0), rec(0, 4, tput=100.0), rec(4, 8, tput=100.0)
    route = plan_route([first, second, whole], 8)
    assert route.peer_ids == (whole.peer_id,)


def test_offline_draining_and_avoided_peers_are_skipped():
    """Only ONLINE peers that are not avoided carry new sessions."""
    draining = rec(0, 4, state=PeerState.DRAINING)
    avoided = rec(0, 4, tput=1000.0)
    good, tail = rec(0, 4, tput=1.0), rec(4, 8)
    route = plan_route([draining, avoided, good, tail], 8, avoid={avoided.peer_id})
    assert route.hops[0].peer_id == good.peer_id


def test_missing_layers_are_named():
    """A gap raises MissingLayersError with the exact missing ranges."""
    with pytest.raises(MissingLayersError) as err:
        plan_route([rec(0, 2), rec(5, 8)], 10)
    assert err.value.missing == [(2, 5), (8, 10)]
    assert "2..4" in str(err.value) and "8..9" in str(err.value)


def test_covered_but_unchainable_spans_raise_routing_error():
    """Overlapping spans that never meet at a boundary are reported, not silently mis-routed."""
    with pytest.raises(RoutingError) as err:
        plan_route([rec(0, 5), rec(3, 8)], 8)
    assert not isinstance(err.value, MissingLayersError)


def test_empty_swarm_misses_everything():
    with pytest.raises(MissingLayersError) as err:
        plan_route([], 4)
    assert err.value.missing == [(0, 4)]


def test_missing_layers_pure():
    assert missing_layers([(0, 2), (1, 3)], 0, 5) == [(3, 5)]
    assert missing_layers([], 2, 4) == [(2, 4)]
    assert missing_layers([(0, 4)], 0, 4) == []
