"""Route planning: the cheapest chain of online peers covering every layer, or a typed error."""

from __future__ import annotations

import pytest

from routing.planner import missing_layers, plan_route
from swarm.errors import MissingLayersError, RoutingError
from swarm.net.records import PeerState
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


def test_load_moves_the_choice_to_an_idle_replica():
    """A replica with open sessions costs (1 + load) / throughput: a busier, slightly faster peer loses to an
    idle one, a much faster busy one still wins."""
    busy, idle, tail = rec(0, 4, tput=120.0, load=3), rec(0, 4, tput=100.0), rec(4, 8)
    assert plan_route([busy, idle, tail], 8).hops[0].peer_id == idle.peer_id
    fast_busy = rec(0, 4, tput=1000.0, load=3)
    assert plan_route([fast_busy, idle, tail], 8).hops[0].peer_id == fast_busy.peer_id


def test_own_sessions_count_as_load_until_the_record_says_more():
    """Sessions this client opened since the record was announced count: max(record load, own load)."""
    a, b, tail = rec(0, 4), rec(0, 4), rec(4, 8)
    first = plan_route([a, b, tail], 8).hops[0].peer_id
    other = b.peer_id if first == a.peer_id else a.peer_id
    assert plan_route([a, b, tail], 8, own_load={first: 2}).hops[0].peer_id == other


def test_measured_latency_changes_the_choice():
    """The client's measured round trip to a peer's address replaces the default latency: a faster replica
    that is 200 ms away loses to a slower one on the local network, and the route's estimate includes it."""
    far = rec(0, 8, tput=500.0, addrs=("10.0.0.1:1",))
    near = rec(0, 8, tput=100.0, addrs=("10.0.0.2:1",))
    assert plan_route([far, near], 8).peer_ids == (far.peer_id,)  # unmeasured: the default for both
    rtt = {"10.0.0.1:1": 0.2, "10.0.0.2:1": 0.001}
    route = plan_route([far, near], 8, rtt_s=rtt)
    assert route.peer_ids == (near.peer_id,)
    assert route.est_time_s == pytest.approx(1 / 100 + 0.001)  # in and back out: one round trip


def test_peer_published_rtt_is_used_between_hops():
    """Between two peers, the upstream peer's published round trip to the downstream one decides."""
    b_slow, b_fast = rec(4, 8, tput=100.0), rec(4, 8, tput=100.0)
    a = rec(0, 4, rtts={b_slow.peer_id: 0.5, b_fast.peer_id: 0.002})
    assert plan_route([a, b_slow, b_fast], 8).hops[1].peer_id == b_fast.peer_id


def test_a_steps_bytes_cost_their_time_over_the_measured_bandwidth():
    """With step_bytes, each link adds bytes / bandwidth: the upstream peer's published figure between peers,
    else the client's measurement, else the downstream peer's own claim; 0 step bytes leave bandwidth out."""
    b_thin, b_wide = rec(4, 8, addrs=("10.0.0.3:1",)), rec(4, 8, addrs=("10.0.0.4:1",))
    a = rec(0, 4, addrs=("10.0.0.5:1",), mbits={b_thin.peer_id: 1.0, b_wide.peer_id: 1000.0})
    step = 1_000_000  # 1 MB: 8 s at 1 Mbit/s, 8 ms at 1 Gbit/s
    assert plan_route([a, b_thin, b_wide], 8, step_bytes=step).hops[1].peer_id == b_wide.peer_id
    # the client's own figure, where no peer published one: a slow link from the client to a fast peer loses
    near, far = rec(0, 8, tput=100.0, addrs=("10.0.0.1:1",)), rec(0, 8, tput=500.0, addrs=("10.0.0.2:1",))
    bps = {"10.0.0.1:1": 125e6, "10.0.0.2:1": 125e3}  # 1 Gbit/s and 1 Mbit/s
    assert plan_route([near, far], 8, step_bytes=0, bps=bps).peer_ids == (far.peer_id,)
    route = plan_route([near, far], 8, step_bytes=step, bps=bps)
    assert route.peer_ids == (near.peer_id,)
    # in and back: two transfers at 1 Gbit/s, two default latencies, one token of compute
    assert route.est_time_s == pytest.approx(1 / 100 + 2 * 0.005 + 2 * step / 125e6)
    # unmeasured: the peer's net_throughput claim (Mbit/s)
    claimed = rec(0, 8, tput=100.0, net_throughput=8.0)
    assert plan_route([claimed], 8, step_bytes=step).est_time_s == pytest.approx(0.01 + 0.01 + 2 * 1.0)


def test_peers_without_room_for_the_session_are_a_last_resort():
    """A record with fewer free KV tokens than the session needs is avoided while a replica has room, used
    when none has, and its penalty is left out of the estimate (deadlines are not inflated)."""
    full, roomy, tail = rec(0, 4, tput=1000.0, free_cache_tokens=100), rec(0, 4, tput=10.0), rec(4, 8)
    assert plan_route([full, roomy, tail], 8, need_tokens=512).hops[0].peer_id == roomy.peer_id
    assert plan_route([full, roomy, tail], 8, need_tokens=64).hops[0].peer_id == full.peer_id
    route = plan_route([full, tail], 8, need_tokens=512)
    assert route.hops[0].peer_id == full.peer_id and route.est_time_s < 1.0


def test_equal_replicas_are_spread_with_a_random_generator():
    """Of 2 equal replicas, 200 plans with a seeded generator use each at least 30% of the time; without a
    generator the plan is deterministic."""
    import random

    a, b, tail = rec(0, 4), rec(0, 4), rec(4, 8)
    rng = random.Random(7)
    picks = [plan_route([a, b, tail], 8, rng=rng).hops[0].peer_id for _ in range(200)]
    assert picks.count(a.peer_id) >= 60 and picks.count(b.peer_id) >= 60
    assert len({plan_route([a, b, tail], 8).hops[0].peer_id for _ in range(20)}) == 1


def test_random_choice_stays_within_the_tolerance():
    """A replica 50% slower is never drawn; one 2% slower is drawn sometimes (tolerance 5%)."""
    import random

    fast, close, slow, tail = rec(0, 4, tput=100.0), rec(0, 4, tput=98.0), rec(0, 4, tput=50.0), rec(4, 8)
    rng = random.Random(3)
    picks = {plan_route([fast, close, slow, tail], 8, rng=rng).hops[0].peer_id for _ in range(100)}
    assert picks == {fast.peer_id, close.peer_id}


def test_random_choice_spreads_over_whole_routes_of_equal_cost():
    """Two replicas of each half: all four equal two-hop routes are drawn, each a valid chain."""
    import random

    a1, a2 = rec(0, 4, tput=200.0), rec(4, 8, tput=200.0)
    b1, b2 = rec(0, 4, tput=200.0), rec(4, 8, tput=200.0)
    rng = random.Random(5)
    routes = {plan_route([a1, a2, b1, b2], 8, rng=rng).peer_ids for _ in range(100)}
    assert len(routes) == 4
    assert all(r[0] in (a1.peer_id, b1.peer_id) and r[1] in (a2.peer_id, b2.peer_id) for r in routes)


def test_a_client_keeps_to_peers_of_its_own_dtype_while_they_cover_the_model():
    """float32 peers covering 0:4 are chosen over bfloat16 ones; if float32 leaves a gap, every peer counts."""
    from routing.planner import prefer_dtype
    from tests.factories import make_peer_record

    f32 = [make_peer_record(start=0, end=2, dtype="float32"), make_peer_record(start=2, end=4, dtype="float32")]
    bf16 = [make_peer_record(start=0, end=4, dtype="bfloat16")]
    assert prefer_dtype([*f32, *bf16], "float32", 4) == f32
    assert prefer_dtype([*f32, *bf16], "bfloat16", 4) == bf16
    assert prefer_dtype([f32[0], *bf16], "float32", 4) == [f32[0], *bf16]
    assert prefer_dtype([*f32, *bf16], None, 4) == [*f32, *bf16]


# ---- sub-span routes: peers whose records say ``subspans`` run any part of their span -----------------------

def sub(start, end, tput=100.0, **kw):
    return rec(start, end, tput, subspans=True, **kw)


def test_overlapping_spans_chain_where_they_overlap():
    """0:6 and 4:10 never meet at a boundary; with sub-spans they chain, each running a part."""
    a, b = sub(0, 6), sub(4, 10)
    route = plan_route([a, b], 10)
    assert route.peer_ids == (a.peer_id, b.peer_id)
    assert route.hops[0].start == 0 and route.hops[0].end == route.hops[1].start in (4, 6) and route.hops[1].end == 10
    with pytest.raises(RoutingError, match="fits together"):
        plan_route([rec(0, 6), rec(4, 10)], 10)


def test_the_faster_peer_runs_as_much_as_it_can():
    """Both hold layers 4..5; the fast one runs them (the change point moves to the slow one's end)."""
    slow, fast = sub(0, 6, tput=10.0), sub(4, 10, tput=1000.0)
    route = plan_route([slow, fast], 10)
    assert [(h.start, h.end) for h in route.hops] == [(0, 4), (4, 10)]
    # compute scales with the share of a span a hop runs: 4 of 6 layers at 10 tok/s, 6 of 6 at 1000
    assert route.est_time_s == pytest.approx(4 / 6 / 10 + 1 / 1000 + 3 * 0.005, rel=1e-6)


def test_a_replacement_for_some_layers_can_be_part_of_a_span():
    whole = sub(0, 10)
    route = plan_route([whole], 10, start=5, end=8)
    assert [(h.peer_id, h.start, h.end) for h in route.hops] == [(whole.peer_id, 5, 8)]
    with pytest.raises(MissingLayersError):
        plan_route([rec(0, 10)], 10, start=5, end=8)  # a whole-span peer cannot serve just those


def test_a_peer_is_never_visited_twice():
    """A slow peer on 0:10 and a fast one on 3:7: going slow -> fast -> slow would reuse the slow peer's session
    id; the plan falls back to the slow peer's whole span."""
    slow, fast = sub(0, 10, tput=1.0), sub(3, 7, tput=10_000.0)
    route = plan_route([slow, fast], 10)
    assert len(set(route.peer_ids)) == len(route.peer_ids)
    assert [(h.start, h.end) for h in route.hops] == [(0, 10)]


def test_sub_span_ties_still_spread_with_a_random_generator():
    import random

    a, b = sub(0, 8), sub(0, 8)
    seen = {plan_route([a, b], 8, rng=random.Random(seed)).peer_ids for seed in range(20)}
    assert seen == {(a.peer_id,), (b.peer_id,)}
