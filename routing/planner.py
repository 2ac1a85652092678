"""Route planning: the cheapest chain of live peers that covers every layer of a model.

A pure function from a snapshot (peer records, the client's measured round trips, its own open sessions, an
optional random generator) to a typed plan. The cost of a route is the expected time per decode token
(DESIGN.md section 4), summed over its hops, plus the leg back to the client:

    hop time = (1 + load) / throughput + latency of the link into the hop + step bytes / its bandwidth
    return   = latency of the link from the last hop back to the client + step bytes / its bandwidth

- ``throughput`` is the peer's measured tokens/s through its whole span at batch 1. ``load`` is its open
  sessions (the larger of what its record says and what this client knows it has opened there since): a peer
  runs one step at a time, so with ``load`` other sessions stepping, a token of ours waits behind about
  ``load`` other steps. It is an upper bound (idle sessions cost nothing), which is the safe side: a loaded
  peer loses to an idle replica of nearly the same speed, and a much faster loaded peer still wins.
- Link latency is one way, half a round trip: into the first hop and back from the last, the round trip the
  client measured to that address (an EWMA kept by its PeerLink); between two peers, the round trip the
  upstream peer published for the downstream one, else the client's round trip to the downstream one (a
  proxy: a peer slow to reach from the client is usually slow to reach from other peers too), else
  ``DEFAULT_LINK_LATENCY_S`` (``DEFAULT_RELAYED_LATENCY_S`` into a peer that is reached through a relay, whose
  record's first way is a relayed one: two legs and a relay's queue, so an unmeasured relayed edge never looks
  as cheap as an unmeasured direct one). A relayed edge is then costed by what the client measured on it.
- Link bandwidth, like latency, is what was measured (``swarm/net/probe.py``): between two peers, the
  bandwidth the upstream peer published for the downstream one (``mbits``), else the client's to the
  downstream one, else the downstream peer's own ``net_throughput`` claim; into the first hop and back, the
  client's to that peer, else that claim. ``step_bytes`` is what one decode step carries over a link (hidden
  size x 4 bytes for a row in float32); 0 leaves bandwidth out.
- A peer whose record says it has less free KV cache than the session needs (max_length x batch tokens) gets
  ``NO_ROOM_PENALTY_S`` per token: it is used only when no peer with room serves those layers (records are a
  few seconds old; the peer's answer to ``open`` decides). The penalty steers the choice only: the route's
  ``est_time_s`` (which sets step deadlines) leaves it out.

Ties: with a random generator, the route is drawn among the routes whose cost is within ``tolerance`` of the
cheapest (a forward walk that, at each boundary, picks uniformly among the hops that can still finish within
that budget), so clients that read the same records at the same time spread over equal replicas instead of
all picking the same one. Without one, the cheapest route is returned (ties by peer id), deterministically.

Sub-span routes: a peer whose record says ``subspans`` runs any contiguous part of its span for a session
(``models/span.py: SpanModel.view``), its compute cost scaled by the share of its span it runs; other peers
run their whole span. Overlapping spans therefore chain wherever the cheapest plan needs them to. Costs are
linear in the layers a hop runs, so the cheapest route only changes peers at a span's start or end (moving a
change point between two such layers moves the cost one way all along): the search only considers those
points.

The search is exact for these costs: a backward pass over the change points computes, for each peer and
point, the cheapest way from that point to the model's end given that this peer ran the layers up to it (link
costs depend on the previous peer), and a forward walk follows it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from swarm.errors import MissingLayersError, RoutingError
from swarm.net.records import PeerRecord, PeerState
from swarm.net.ways import is_relayed

DEFAULT_LINK_LATENCY_S = 0.005  # assumed one-way latency of a link nobody has measured yet
DEFAULT_RELAYED_LATENCY_S = 0.02  # the same, into a peer reached through a relay
MIN_BPS = 1e3  # bytes/s; floor for a bandwidth claimed as 0
MIN_THROUGHPUT = 1e-3  # tokens/s; floor so a peer reporting 0 is very expensive, not a division by zero
NO_ROOM_PENALTY_S = 10.0  # per token, for a hop whose record says the session's KV does not fit
TIE_TOLERANCE = 0.05  # routes within 5% of the cheapest are equals (throughput figures are that noisy)
_EPS = 1e-9  # relative slack for float sums compared against a budget


@dataclass(frozen=True)
class Hop:
    """One peer of a route and the layers [start, end) it runs for the session."""

    peer_id: str
    addr: str
    start: int
    end: int


@dataclass(frozen=True)
class Route:
    hops: tuple[Hop, ...]
    est_time_s: float  # expected seconds per decode token (penalties left out)

    @property
    def peer_ids(self) -> tuple[str, ...]:
        return tuple(h.peer_id for h in self.hops)

    def describe(self) -> str:
        return " -> ".join(f"{h.addr}[{h.start}:{h.end}]" for h in self.hops)


@dataclass(frozen=True)
class CostInputs:
    """What the client knows beyond the records: round trips it measured (address -> seconds), sessions it
    has open (peer id -> count), the KV tokens the session needs on each hop, bandwidths it measured (address
    -> bytes/s) and the bytes of one step."""

    rtt_s: Mapping[str, float]
    own_load: Mapping[str, int]
    need_tokens: int = 0
    bps: Mapping[str, float] = field(default_factory=dict)  # bytes/s the client measured, by address
    step_bytes: int = 0


def usable(record: PeerRecord, avoid: Collection[str]) -> bool:
    """A peer the client may send new work to."""
    return record.state == PeerState.ONLINE and record.peer_id not in avoid and bool(record.addrs)


def compute_s(record: PeerRecord, own_load: Mapping[str, int]) -> float:
    """Expected seconds one decode token spends computing in this peer, queued behind its other sessions."""
    load = max(record.load, own_load.get(record.peer_id, 0), 0)
    return (1 + load) / max(record.throughput, MIN_THROUGHPUT)


def link_s(record: PeerRecord, prev: PeerRecord | None, rtt_s: Mapping[str, float]) -> float:
    """One-way latency of the link into this hop (from the client when ``prev`` is None)."""
    if prev is not None and record.peer_id in prev.rtts:
        return prev.rtts[record.peer_id] / 2
    return _unmeasured_or(record, rtt_s)


def transfer_s(record: PeerRecord, prev: PeerRecord | None, inputs: CostInputs) -> float:
    """Seconds one step's bytes take over the link into this hop (from the client when ``prev`` is None), or
    back from it to the client (the same way: the client's figure for that peer)."""
    if inputs.step_bytes <= 0:
        return 0.0
    if prev is not None and record.peer_id in prev.mbits:
        bps = prev.mbits[record.peer_id] * 1e6 / 8
    else:
        bps = inputs.bps.get(record.addrs[0], record.net_throughput * 1e6 / 8)
    return inputs.step_bytes / max(bps, MIN_BPS)


def _unmeasured_or(record: PeerRecord, rtt_s: Mapping[str, float]) -> float:
    measured = rtt_s.get(record.addrs[0])
    if measured is not None:
        return measured / 2
    return DEFAULT_RELAYED_LATENCY_S if is_relayed(record.addrs[0]) else DEFAULT_LINK_LATENCY_S


def return_s(record: PeerRecord, rtt_s: Mapping[str, float]) -> float:
    """One-way latency of the result's way back from the last hop to the client."""
    return _unmeasured_or(record, rtt_s)


def hop_time_s(record: PeerRecord, prev: PeerRecord | None, inputs: CostInputs) -> float:
    """Expected seconds one decode token spends in this hop, the link into it included."""
    return compute_s(record, inputs.own_load) + link_s(record, prev, inputs.rtt_s) + transfer_s(record, prev, inputs)


def back_s(record: PeerRecord, inputs: CostInputs) -> float:
    """Expected seconds of the last hop's result on its way back to the client."""
    return return_s(record, inputs.rtt_s) + transfer_s(record, None, inputs)


def penalty_s(record: PeerRecord, need_tokens: int) -> float:
    return NO_ROOM_PENALTY_S if record.free_cache_tokens < need_tokens else 0.0


def prefer_dtype(records: Sequence[PeerRecord], dtype: str | None, num_layers: int) -> list[PeerRecord]:
    """The records of peers computing in ``dtype`` when those alone cover every layer, else all of them.

    Peers of one checkpoint share its model key whatever --dtype they run, so a route could mix float32 and
    bfloat16 hops; a client keeps to its own precision (its outputs then match local transformers in it) as
    long as the swarm allows, and falls back to any precision rather than to no route.
    """
    if dtype is None:
        return list(records)
    same = [r for r in records if r.dtype == dtype and r.state == PeerState.ONLINE]
    if same and not missing_layers([(r.start, r.end) for r in same], 0, num_layers):
        return same
    return list(records)


def missing_layers(spans: Sequence[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Maximal ranges [a, b) inside [start, end) that none of the spans covers."""
    covered = {i for a, b in spans for i in range(max(a, start), min(b, end))}
    gaps: list[tuple[int, int]] = []
    for i in range(start, end):
        if i in covered:
            continue
        if gaps and gaps[-1][1] == i:
            gaps[-1] = (gaps[-1][0], i + 1)
        else:
            gaps.append((i, i + 1))
    return gaps


def plan_route(
    records: Sequence[PeerRecord],
    num_layers: int,
    *,
    start: int = 0,
    end: int | None = None,
    avoid: Collection[str] = frozenset(),
    rtt_s: Mapping[str, float] | None = None,
    own_load: Mapping[str, int] | None = None,
    need_tokens: int = 0,
    rng: random.Random | None = None,
    tolerance: float = TIE_TOLERANCE,
    model: str = "",
    bps: Mapping[str, float] | None = None,
    step_bytes: int = 0,
) -> Route:
    """The cheapest chain of usable peers that runs layers [start, end) (default: all of them); with ``rng``,
    one drawn among the chains within ``tolerance`` of the cheapest.

    ``rtt_s``: round trips the client measured, by address; ``own_load``: sessions this client has open, by
    peer id; ``need_tokens``: the KV tokens the session needs on each hop (max_length x batch).
    Raises MissingLayersError naming the layers no usable peer serves, or RoutingError when every layer
    is served but no chain of spans fits together.

    A peer appears at most once in a route (a session has one id on every hop): when the cheapest chain
    would visit a peer twice (part of its span, another peer, then more of its span), that peer is planned
    with its whole span only and the plan is made again.
    """
    end = num_layers if end is None else end
    inputs = CostInputs(rtt_s or {}, own_load or {}, need_tokens, bps or {}, step_bytes)
    whole_only: set[str] = set()
    while True:
        route = _plan(records, start, end, avoid, inputs, rng, tolerance, model, whole_only)
        ids = route.peer_ids
        twice = next((p for i, p in enumerate(ids) if p in ids[:i]), None)
        if twice is None:
            return route
        whole_only.add(twice)


@dataclass(frozen=True)
class _Option:
    """A hop the planner may use: ``record`` entered at layer ``a`` and left at layer ``b``."""

    record: PeerRecord
    a: int
    b: int


def _plan(records: Sequence[PeerRecord], start: int, end: int, avoid: Collection[str], inputs: CostInputs,
          rng: random.Random | None, tolerance: float, model: str, whole_only: Collection[str]) -> Route:
    def part(r: PeerRecord) -> bool:  # routes may use any part of this peer's span
        return r.subspans and r.peer_id not in whole_only

    live = sorted((r for r in records if usable(r, avoid) and (
        (part(r) and r.start < end and r.end > start) or (start <= r.start and r.end <= end))),
        key=lambda r: (r.start, r.end, r.peer_id))
    bounds = {r.peer_id: (max(r.start, start), min(r.end, end)) if part(r) else (r.start, r.end) for r in live}
    points = sorted({start, end, *(x for lo_hi in bounds.values() for x in lo_hi)})
    entering: dict[int, list[PeerRecord]] = {p: [] for p in points}  # peers a hop may start at p on
    leaving: dict[int, list[PeerRecord]] = {p: [] for p in points}  # peers a hop may end at p on
    for r in live:
        lo, hi = bounds[r.peer_id]
        for p in points:
            if (lo <= p < hi) if part(r) else p == lo:
                entering[p].append(r)
            if (lo < p <= hi) if part(r) else p == hi:
                leaving[p].append(r)

    def layer_s(r: PeerRecord) -> float:  # compute seconds per layer of its span
        return compute_s(r, inputs.own_load) / max(r.end - r.start, 1)

    def fixed(prev: PeerRecord | None, r: PeerRecord) -> float:  # a hop's cost whatever layers it runs
        return link_s(r, prev, inputs.rtt_s) + transfer_s(r, prev, inputs) + penalty_s(r, inputs.need_tokens)

    # togo[(peer, p)]: the cheapest cost from layer p to the client, the peer having run the layers up to p;
    # cont[(peer, p)]: the cheapest cost of entering that peer at p and going on (its links left out)
    togo: dict[tuple[str, int], float] = {}
    cont: dict[tuple[str, int], float] = {}
    for p in reversed(points):
        for r in entering[p]:
            lo, hi = bounds[r.peer_id]
            cont[(r.peer_id, p)] = min((layer_s(r) * (b - p) + togo[(r.peer_id, b)] for b in points
                                        if p < b <= hi and (r.peer_id, b) in togo), default=math.inf)
        for r in leaving[p]:
            if p == end:
                togo[(r.peer_id, p)] = back_s(r, inputs)
            else:
                togo[(r.peer_id, p)] = min((fixed(r, nxt) + cont[(nxt.peer_id, p)] for nxt in entering[p]
                                            if nxt.peer_id != r.peer_id), default=math.inf)
    best = min((fixed(None, r) + cont[(r.peer_id, start)] for r in entering.get(start, ())), default=math.inf)
    if math.isfinite(best):
        return _walk(points, entering, bounds, togo, fixed, layer_s, inputs, start, end, best, rng, tolerance)
    gaps = missing_layers(list(bounds.values()), start, end)
    if gaps:
        raise MissingLayersError(gaps, model=model)
    raise RoutingError(
        f"every layer of {start}..{end - 1} is served, but no chain of peer spans fits together "
        f"(spans: {sorted((r.start, r.end) for r in live)})"
    )


def _walk(points, entering, bounds, togo, fixed, layer_s, inputs: CostInputs, start: int, end: int, best: float,
          rng: random.Random | None, tolerance: float) -> Route:
    """Follow the costs forward from ``start``: the cheapest hop at each boundary, or with ``rng`` a uniform
    pick among the hops that still finish within (1 + tolerance) x the cheapest route's cost."""
    budget = best * (1 + (max(tolerance, 0.0) if rng is not None else 0.0)) * (1 + _EPS) + _EPS
    chain: list[_Option] = []
    spent, est, prev, boundary = 0.0, 0.0, None, start
    while boundary < end:
        options = []
        for r in entering[boundary]:
            if prev is not None and r.peer_id == prev.peer_id:
                continue
            for b in points:
                if boundary < b <= bounds[r.peer_id][1] and math.isfinite(togo.get((r.peer_id, b), math.inf)):
                    cost = fixed(prev, r) + layer_s(r) * (b - boundary)
                    options.append((spent + cost + togo[(r.peer_id, b)], cost, _Option(r, boundary, b)))
        fitting = [o for o in options if o[0] <= budget]
        if rng is not None and len(fitting) > 1:
            _, cost, hop = rng.choice(fitting)
        else:
            _, cost, hop = min(options, key=lambda o: o[0])  # stable: options are in (span, peer id, end) order
        spent += cost
        compute = compute_s(hop.record, inputs.own_load) * (hop.b - hop.a) / max(hop.record.end - hop.record.start, 1)
        est += compute + link_s(hop.record, prev, inputs.rtt_s) + transfer_s(hop.record, prev, inputs)
        chain.append(hop)
        prev, boundary = hop.record, hop.b
    est += back_s(chain[-1].record, inputs)
    hops = tuple(Hop(o.record.peer_id, o.record.addrs[0], o.a, o.b) for o in chain)
    return Route(hops=hops, est_time_s=est)
