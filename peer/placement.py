"""Which span a joining peer serves: pure functions over a snapshot of the swarm.

Rule (DESIGN.md section 4, first version): serve as many layers as fit in memory, starting where the swarm
covers the fewest peers per layer. Ties go to the lowest start, so the choice is deterministic for a given
snapshot. A later placement issue weighs measured throughput and adds hysteresis for moving peers.
"""

from __future__ import annotations

from collections.abc import Sequence

from swarm.errors import SpanError
from swarm.net.records import PeerRecord, PeerState

SERVING_STATES = (PeerState.ONLINE, PeerState.JOINING)


def coverage(records: Sequence[PeerRecord], num_layers: int) -> list[int]:
    """How many serving peers hold each layer."""
    counts = [0] * num_layers
    for r in records:
        if r.state not in SERVING_STATES:
            continue
        for i in range(max(r.start, 0), min(r.end, num_layers)):
            counts[i] += 1
    return counts


def choose_span(num_layers: int, span_len: int, records: Sequence[PeerRecord]) -> tuple[int, int]:
    """The window of span_len layers the swarm covers least.

    Windows are compared by their least-covered layer first (a gap is worth more than a thin spot), then
    by total coverage, then by start.
    """
    if span_len < 1:
        raise SpanError(f"a peer must serve at least one layer, not {span_len}")
    span_len = min(span_len, num_layers)
    counts = coverage(records, num_layers)

    def key(start: int) -> tuple[int, int, int]:
        window = counts[start : start + span_len]
        return (min(window), sum(window), start)

    best = min(range(num_layers - span_len + 1), key=key)
    return best, best + span_len


def layers_that_fit(max_memory_bytes: float, layer_bytes: float, reserve_bytes: float, num_layers: int) -> int:
    """How many layers fit in max_memory after a reserve for the KV cache and runtime (at least one)."""
    if layer_bytes <= 0:
        return num_layers
    n = int((max_memory_bytes - reserve_bytes) // layer_bytes)
    if n < 1:
        raise SpanError(
            f"--max-memory {max_memory_bytes / 2**30:.2f} GB does not hold one layer "
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
