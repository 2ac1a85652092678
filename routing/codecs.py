"""``ClientConfig.wire_codec="auto"``: each link's codec from its measured bandwidth (``swarm/net/probe.py``).

A fast link carries hidden states raw (exact); a slower one float16 (half the bytes, greedy tokens equal to
raw's on every test model in benchmarks/codecs.py); a very slow one int8 (blocks of 32 values with a scale
each, 28% of raw's bytes, which changes some greedy tokens: benchmarks/results/codecs-2026-12-03.json). An
unmeasured link stays raw. The session then sends a peer only a codec its Pong listed.
"""

from __future__ import annotations

from swarm.net.wire import RAW

AUTO = "auto"
RAW_FROM_MBIT = 200.0     # links at least this fast stay exact
FLOAT16_FROM_MBIT = 10.0  # links at least this fast (and slower than RAW_FROM_MBIT) carry float16; slower: int8


def codec_for(mbit: float | None) -> str:
    """The codec for a link of ``mbit`` Mbit/s (None: not measured)."""
    if mbit is None or mbit >= RAW_FROM_MBIT:
        return RAW
    return "float16" if mbit >= FLOAT16_FROM_MBIT else "int8"
