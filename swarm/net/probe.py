"""Bandwidth of a connection, measured once after its proof: a Ping carrying ``PROBE_BYTES`` of padding.

The peer answers any Ping with a Pong once the whole frame is in, so the padded ping's round trip minus the
small one's (the proof, just before) is the time the padding took to cross the link in the direction of the
pushes. ``bandwidth_bps`` turns the two round trips into bytes per second; a difference under
``MIN_EXTRA_S`` is below what the clock can tell on a fast link, and counts as ``FAST_BPS``.

What it measures is what a 64 KiB transfer sees on that connection: on a link with a long round trip, TCP's
slow start on a fresh connection makes that less than the link's rate, as it does for the first chunks of a
prefill. Peers publish it per push edge (``PeerRecord.mbits``); clients measure their own links the same way
(``routing/swarm_client.py``); the planner costs a step's bytes by it (``routing/planner.py``).
"""

from __future__ import annotations

PROBE_BYTES = 64 * 1024
MIN_EXTRA_S = 0.0005  # a probe that took less extra time than this crossed a link too fast to measure
FAST_BPS = PROBE_BYTES / MIN_EXTRA_S  # about 1 Gbit/s: what such a link counts as
PADDING = bytes(PROBE_BYTES)


def bandwidth_bps(small_rtt_s: float, probe_rtt_s: float, probe_bytes: int = PROBE_BYTES) -> float:
    """Bytes per second the link carried the probe at, from the round trips of a small ping and the probe."""
    extra = probe_rtt_s - small_rtt_s
    if extra < MIN_EXTRA_S:
        return probe_bytes / MIN_EXTRA_S
    return probe_bytes / extra


def to_mbit(bps: float) -> float:
    return round(bps * 8 / 1e6, 2)
