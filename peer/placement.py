"""Which layers a peer holds: pure functions from a snapshot of the swarm to a span, and the swarm's throughput.

The model of the swarm. Every token passes through every layer once. A peer that holds ``n`` layers and
serves T tokens/s through them (its record's ``throughput``) has a compute rate of ``T x n`` layer-tokens/s,
which it can spend on any of its layers: routes may use any contiguous part of a span
(``routing/planner.py``). So:

- the **capacity** of a layer is the sum of the T of the peers holding it (each peer's rate spread evenly
  over its span): ``layer_capacity``;
- the swarm's **throughput** for a placement is the largest flow F such that every run of layers [i, j]
  gets F x (j - i + 1) layer-tokens/s from the peers overlapping it (Hall's condition; for intervals it is
  enough to check runs), ``swarm_throughput``; it is at least the weakest layer's capacity;
- its **upper bound**, whatever the placement, is the largest F with F x L <= sum over peers of
  min(rate, F x n): every token costs L layer-passes, and a peer can give at most F to each of the n layers it
  has room for (the max-flow bound of Helix, links left out): ``throughput_bound``.

Choosing a span (``choose_start``): a joining peer goes where the swarm is weakest. Windows of its length are
compared by their weakest layer first (a gap, capacity 0, beats any thin spot, and adding the peer there
raises the swarm's minimum the most), then by their total capacity (of two windows holding the weakest layer,
the one whose other layers are thinner gains more), then by start (deterministic for a given snapshot).
In a small swarm (at most ``EXACT_PEERS`` other peers) the windows are first compared by the swarm's exact
throughput with the peer there (``best_start``): with few peers, a fast one can carry a thin stretch that
the per-layer figure calls weak, and the exact figure sees it (``benchmarks/placement.py``, 10 peers: 0.96 of
the bound on average instead of 0.88). Past that size the per-layer figure is within a few percent of the bound and costs a
scan instead of a flow per window.

Moving (``plan_move``): a peer takes itself out of the snapshot, chooses again, and moves only when that
raises the swarm's throughput (the weakest layer's capacity, or the exact figure in a small swarm) by more
than ``margin`` (hysteresis: a move costs a reload and a failover of its sessions, and figures are noisy). A
peer that alone holds a layer never leaves it: removing it leaves that layer at 0, and no new place can
raise the swarm above that. Many peers deciding at once
converge because each decides at jittered times (``next_check_s``) on records that already show the moves
of the others (a moving peer announces itself JOINING at its new span at once, which counts for placement
but takes no new sessions, while it drains the old one), and each waits ``MIN_DWELL_S`` after a move before
it considers another.

Records of peers that are offline or whose records expired are not in the snapshot: the DHT returns only
live records, and ``SERVING_STATES`` leaves out offline and draining ones.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swarm.errors import SpanError
from swarm.net.records import PeerRecord, PeerState

SERVING_STATES = (PeerState.ONLINE, PeerState.JOINING)
MOVE_MARGIN = 0.2  # a move must raise the weakest layer's capacity by more than 20%
CHECK_EVERY_S = 120.0  # mean time between a peer's rebalancing checks
CHECK_JITTER = 0.5  # each wait is drawn uniformly in [1 - jitter, 1 + jitter] x CHECK_EVERY_S
MIN_DWELL_S = 2.5 * CHECK_EVERY_S  # a peer that moved waits this long before it considers moving again
EXACT_PEERS = 48  # up to this many other serving peers, spans are judged by the swarm's exact throughput


@dataclass(frozen=True)
class Holding:
    """One peer as placement sees it: layers [start, end) served at ``throughput`` tokens/s through them."""

    start: int
    end: int
    throughput: float

    @property
    def rate(self) -> float:
        """Layer-tokens per second: what the peer can spend over any of its layers."""
        return self.throughput * (self.end - self.start)


def holdings(records: Sequence[PeerRecord], exclude: str = "") -> list[Holding]:
    """The serving peers of a snapshot (all but ``exclude``, a peer id) as holdings."""
    return [Holding(r.start, r.end, max(float(r.throughput), 0.0)) for r in records
            if r.state in SERVING_STATES and r.peer_id != exclude]


def layer_capacity(held: Sequence[Holding], num_layers: int) -> np.ndarray:
    """Tokens/s each layer can pass: the sum of the throughputs of the peers holding it."""
    cap = np.zeros(num_layers + 1)
    for h in held:
        a, b = max(h.start, 0), min(h.end, num_layers)
        if a < b:
            cap[a] += h.throughput
            cap[b] -= h.throughput
    return np.cumsum(cap)[:num_layers]


def _window_stats(capacity: Sequence[float] | np.ndarray, span_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The weakest layer's capacity and the total capacity of each window of ``span_len`` layers, by start."""
    cap = np.asarray(capacity, dtype=float)
    windows = np.lib.stride_tricks.sliding_window_view(cap, min(max(span_len, 1), len(cap)))
    return windows.min(axis=1), windows.sum(axis=1)


def choose_start(capacity: Sequence[float] | np.ndarray, span_len: int) -> int:
    """The start of the window of ``span_len`` layers to serve, given each layer's capacity (see the module
    docstring: weakest layer, then total capacity, then lowest start)."""
    lows, totals = _window_stats(capacity, span_len)
    low = lows.min()
    tight = np.flatnonzero(lows <= low + 1e-9 * max(abs(low), 1.0))
    return int(tight[np.argmin(totals[tight])])


def best_start(others: Sequence[Holding], num_layers: int, span_len: int, throughput: float) -> int:
    """Where a peer of ``span_len`` layers at ``throughput`` tokens/s goes among ``others``: by the swarm's
    exact throughput with it there when the swarm is small, ties (and large swarms) by ``choose_start``'s
    order. Windows are tried in that order, and one is solved exactly only if it can beat the best so far
    (one ``carries`` check each), so a choice costs about one flow per window, not forty."""
    capacity = layer_capacity(others, num_layers)
    span_len = min(max(span_len, 1), num_layers)
    if len(others) > EXACT_PEERS or throughput <= 0:
        return choose_start(capacity, span_len)
    lows, totals = _window_stats(capacity, span_len)
    order = sorted(range(num_layers - span_len + 1), key=lambda s: (float(lows[s]), float(totals[s]), s))
    best, best_flow = order[0], swarm_throughput([*others, Holding(order[0], order[0] + span_len, throughput)],
                                                 num_layers)
    for s in order[1:]:
        held = [*others, Holding(s, s + span_len, throughput)]
        if not carries(held, num_layers, max(best_flow * (1 + 1e-6), 1e-9)):
            continue
        best, best_flow = s, swarm_throughput(held, num_layers)
    return best


def choose_span(num_layers: int, span_len: int, records: Sequence[PeerRecord], exclude: str = "",
                throughput: float = 0.0) -> tuple[int, int]:
    """The span of ``span_len`` layers a peer joining this snapshot serves (all layers when it holds them);
    ``throughput``: its own figure, for the exact comparison of small swarms (0: by layer capacity only)."""
    if span_len < 1:
        raise SpanError(f"a peer must serve at least one layer, not {span_len}")
    span_len = min(span_len, num_layers)
    start = best_start(holdings(records, exclude), num_layers, span_len, throughput)
    return start, start + span_len


def plan_move(capacity: np.ndarray, mine: Holding, margin: float = MOVE_MARGIN) -> int | None:
    """The start a peer holding ``mine`` should move to, or None to stay. ``capacity``: each layer's capacity
    with the peer included (``layer_capacity``). Moves only when the weakest layer's capacity rises by more
    than ``margin`` (a layer at 0 rising to anything counts)."""
    n = mine.end - mine.start
    others = capacity.copy()
    others[mine.start:mine.end] -= mine.throughput
    start = choose_start(others, n)
    if start == mine.start:
        return None
    moved = others.copy()
    moved[start:start + n] += mine.throughput
    now, then = float(capacity.min()), float(moved.min())
    if then > now * (1 + margin) + 1e-12:
        return start
    return None


def plan_move_exact(others: Sequence[Holding], mine: Holding, num_layers: int, margin: float = MOVE_MARGIN) -> int | None:
    """``plan_move`` for a small swarm: judged by the swarm's exact throughput (``swarm_throughput``)."""
    size = mine.end - mine.start
    start = best_start(others, num_layers, size, mine.throughput)
    if start == mine.start:
        return None
    now = swarm_throughput([*others, mine], num_layers)
    moved = [*others, Holding(start, start + size, mine.throughput)]
    return start if carries(moved, num_layers, max(now * (1 + margin), 1e-9)) else None


def move_for(records: Sequence[PeerRecord], peer_id: str, num_layers: int, margin: float = MOVE_MARGIN) -> tuple[int, int] | None:
    """The span ``peer_id`` should move to in this snapshot of records, or None (``plan_move``)."""
    me = next((r for r in records if r.peer_id == peer_id), None)
    if me is None or me.state not in SERVING_STATES:
        return None
    mine = Holding(me.start, me.end, max(float(me.throughput), 0.0))
    others = holdings(records, exclude=peer_id)
    if len(others) <= EXACT_PEERS:
        start = plan_move_exact(others, mine, num_layers, margin)
    else:
        start = plan_move(layer_capacity([*others, mine], num_layers), mine, margin)
    return None if start is None else (start, start + (me.end - me.start))


def swarm_throughput(held: Sequence[Holding], num_layers: int) -> float:
    """Tokens/s the swarm can pass through every layer with sub-span routes (module docstring): the largest F
    that ``carries`` accepts, by bisection below ``throughput_bound``."""
    low, high = 0.0, throughput_bound(held, num_layers)
    if high <= 0 or not carries(held, num_layers, high):
        for _ in range(40):  # 1e-12 of the bound
            mid = (low + high) / 2
            if carries(held, num_layers, mid):
                low = mid
            else:
                high = mid
        return low
    return high


def carries(held: Sequence[Holding], num_layers: int, flow: float) -> bool:
    """Whether the peers can give every layer ``flow`` tokens/s, each spending at most its rate over its own
    layers. Layer by layer, demand is met from the peers whose spans end soonest (earliest deadline first,
    optimal when every peer's layers are a run)."""
    import heapq

    order = sorted((h for h in held if h.start < h.end), key=lambda h: h.start)
    left = [h.rate for h in order]
    ready: list[tuple[int, int]] = []  # (end, index into order)
    nxt = 0
    if flow <= 0:
        return True
    need_slack = 1e-9 * flow
    for layer in range(num_layers):
        while nxt < len(order) and order[nxt].start <= layer:
            heapq.heappush(ready, (order[nxt].end, nxt))
            nxt += 1
        demand = flow
        while demand > need_slack:
            while ready and (ready[0][0] <= layer or left[ready[0][1]] <= 0):
                heapq.heappop(ready)
            if not ready:
                return False
            i = ready[0][1]
            used = min(left[i], demand)
            left[i] -= used
            demand -= used
    return True


def throughput_bound(held: Sequence[Holding], num_layers: int) -> float:
    """The most tokens/s these peers could pass through the model in any placement of spans of their sizes
    (module docstring): the largest F with F x L <= sum of min(rate, F x span length)."""
    if num_layers < 1 or not held:
        return 0.0
    rates = np.array([h.rate for h in held])
    sizes = np.array([min(h.end - h.start, num_layers) for h in held], dtype=float)
    low, high = 0.0, float(rates.sum()) / num_layers
    for _ in range(60):  # the slack sum(min(rate, F n)) - F L only falls once it is negative: bisect
        mid = (low + high) / 2
        if np.minimum(rates, mid * sizes).sum() >= mid * num_layers:
            low = mid
        else:
            high = mid
    return low


def next_check_s(rng: random.Random, every_s: float = CHECK_EVERY_S, jitter: float = CHECK_JITTER) -> float:
    """Seconds until a peer's next rebalancing check: ``every_s`` give or take ``jitter`` of it."""
    return every_s * rng.uniform(1 - jitter, 1 + jitter)


def layers_that_fit(max_memory_bytes: float, layer_bytes: float, reserve_bytes: float, num_layers: int,
                    what: str = "--max-memory") -> int:
    """How many layers fit in max_memory after a reserve for the KV cache and runtime (at least one);
    ``what`` names the budget in the error."""
    if layer_bytes <= 0:
        return num_layers
    n = int((max_memory_bytes - reserve_bytes) // layer_bytes)
    if n < 1:
        raise SpanError(
            f"{what}: {max_memory_bytes / 2**30:.2f} GB does not hold one layer "
            f"({layer_bytes / 2**30:.2f} GB) plus the reserve ({reserve_bytes / 2**30:.2f} GB)"
        )
    return min(n, num_layers)


def parse_layers(text: str, num_layers: int) -> tuple[int, int]:
    """'START:END' (END exclusive) -> (start, end), checked against the model."""
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError as e:  # not two integers separated by ':'
        raise SpanError(f"--layers takes START:END, e.g. 0:10, not {text!r}") from e
    if not 0 <= a < b <= num_layers:
        raise SpanError(f"--layers {text} is outside the model's {num_layers} layers (valid: 0 <= START < END <= {num_layers})")
    return a, b
