"""Route planning: the cheapest chain of live peers that covers every layer of a model.

A pure function from a snapshot of peer records to a typed plan. The cost of a route is the expected time
per decode token (DESIGN.md section 4): for each hop, the peer's compute time for its span
(1 / measured tokens-per-second) plus the latency of the link into it. The search is a shortest path over
layer boundaries (Dijkstra's order is not needed: every edge goes forward, so one pass over the boundaries
in increasing order is exact).

A hop currently runs a peer's whole span, so hops chain where one span ends exactly where the next starts.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from swarm.errors import MissingLayersError, RoutingError
from swarm.records import PeerRecord, PeerState

DEFAULT_LINK_LATENCY_S = 0.005  # assumed one-way latency of a link nobody has measured yet
MIN_THROUGHPUT = 1e-3  # tokens/s; floor so a peer reporting 0 is very expensive, not a division by zero


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
    est_time_s: float  # expected seconds per decode token

    @property
    def peer_ids(self) -> tuple[str, ...]:
        return tuple(h.peer_id for h in self.hops)

    def describe(self) -> str:
        return " -> ".join(f"{h.addr}[{h.start}:{h.end}]" for h in self.hops)


def usable(record: PeerRecord, avoid: Collection[str]) -> bool:
    """A peer the client may send new work to."""
    return record.state == PeerState.ONLINE and record.peer_id not in avoid and bool(record.addrs)


def hop_cost(record: PeerRecord, prev: PeerRecord | None, latency: Mapping[str, float]) -> float:
    """Expected seconds one decode token spends in this hop, the link into it included."""
    compute = 1.0 / max(record.throughput, MIN_THROUGHPUT)
    if prev is not None and record.peer_id in prev.rtts:
        link = prev.rtts[record.peer_id] / 2
    else:
        link = latency.get(record.peer_id, DEFAULT_LINK_LATENCY_S)
    return compute + link


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
    latency: Mapping[str, float] | None = None,
    model: str = "",
) -> Route:
    """The cheapest chain of usable peers that runs layers [start, end) (default: all of them).

    Raises MissingLayersError naming the layers no usable peer serves, or RoutingError when every layer
    is served but no chain of whole spans fits together.
    """
    end = num_layers if end is None else end
    latency = latency or {}
    live = [r for r in records if usable(r, avoid) and start <= r.start and r.end <= end]
    # best[b]: (cost, hops) of the cheapest chain covering [start, b); processed in increasing b.
    best: dict[int, tuple[float, tuple[PeerRecord, ...]]] = {start: (0.0, ())}
    for boundary in range(start, end):
        if boundary not in best:
            continue
        cost_here, chain = best[boundary]
        prev = chain[-1] if chain else None
        for rec in sorted((r for r in live if r.start == boundary), key=lambda r: r.peer_id):
            cost = cost_here + hop_cost(rec, prev, latency)
            if cost < best.get(rec.end, (math.inf, ()))[0]:
                best[rec.end] = (cost, (*chain, rec))
    if end in best and best[end][1]:
        cost, chain = best[end]
        hops = tuple(Hop(r.peer_id, r.addrs[0], r.start, r.end) for r in chain)
        return Route(hops=hops, est_time_s=cost)
    gaps = missing_layers([(r.start, r.end) for r in live], start, end)
    if gaps:
        raise MissingLayersError(gaps, model=model)
    raise RoutingError(
        f"every layer of {start}..{end - 1} is served, but no chain of peer spans fits together "
        f"(spans: {sorted((r.start, r.end) for r in live)})"
    )

