"""The link emulator's pure core (swarm/linkem.py: schedule, LinkSpec): when a chunk leaves and arrives."""

from __future__ import annotations

import pytest

from swarm.errors import ConfigError
from swarm.linkem import CHUNK, LinkSpec, schedule

LINK = LinkSpec(delay_s=0.025, rate_bps=100e6, jitter_s=0.010)


def test_a_chunk_leaves_at_the_link_s_rate_and_arrives_a_delay_later():
    leaves, arrives = schedule(10.0, 0.0, 0.0, 125_000, LINK, jitter=0.0)  # 1 Mbit at 100 Mbit/s: 10 ms
    assert leaves == pytest.approx(10.010) and arrives == pytest.approx(10.035)


def test_chunks_written_faster_than_the_rate_queue_behind_each_other():
    free_at, last = schedule(0.0, 0.0, 0.0, 125_000, LINK, jitter=0.0)
    leaves, arrives = schedule(0.001, free_at, last, 125_000, LINK, jitter=0.0)  # read 1 ms later: waits its turn
    assert leaves == pytest.approx(0.020) and arrives == pytest.approx(0.045)
    idle = schedule(1.0, leaves, arrives, 125_000, LINK, jitter=0.0)  # an idle link: no queue
    assert idle == (pytest.approx(1.010), pytest.approx(1.035))


def test_jitter_adds_up_to_its_bound_and_never_reorders():
    _, first = schedule(0.0, 0.0, 0.0, 100, LINK, jitter=0.99)  # drew almost the whole jitter
    _, second = schedule(0.0001, 0.0, first, 100, LINK, jitter=0.0)  # drew none: still not before the first
    assert 0.025 < first < 0.035 + 1e-6 and second == first


def test_no_rate_cap_sends_at_once_and_the_queue_bounds_hold():
    assert schedule(2.0, 0.0, 0.0, 10**9, LinkSpec(delay_s=0.001), jitter=0.5) == (2.0, pytest.approx(2.001))
    assert LinkSpec(delay_s=0.05, rate_bps=8e6, queue_s=0.5).queue_bytes == 550_000  # in flight + 0.5 s queued
    assert LinkSpec().queue_bytes >= 4 * CHUNK
    for bad in ({"delay_s": -1}, {"rate_bps": -1}, {"jitter_s": -0.1}, {"queue_s": 0}):
        with pytest.raises(ConfigError):
            LinkSpec(**bad)
