"""A bandwidth probe's arithmetic (swarm/net/probe.py)."""

from __future__ import annotations

import pytest

from swarm.net.probe import FAST_BPS, PROBE_BYTES, bandwidth_bps, to_mbit


def test_the_probe_s_extra_round_trip_is_its_bytes_over_the_link():
    # 64 KiB that took 52.4 ms longer than a small ping: 10 Mbit/s
    assert to_mbit(bandwidth_bps(0.1, 0.1 + PROBE_BYTES * 8 / 10e6)) == pytest.approx(10.0, rel=1e-3)


def test_a_probe_too_fast_to_time_counts_as_a_fast_link():
    assert bandwidth_bps(0.01, 0.0101) == FAST_BPS
    assert bandwidth_bps(0.01, 0.009) == FAST_BPS  # a smaller round trip than the ping's: noise
    assert to_mbit(FAST_BPS) > 1000
