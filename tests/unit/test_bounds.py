"""Bounds against strangers in the ground and the peer's pure parts: rate-limited logs, a deadline for a
frame that stalls midway, and a per-client share of the KV budget."""

from __future__ import annotations

import asyncio

import pytest

from peer.admission import Busy, KVBudget, Reservation, admit
from swarm.errors import TransportError
from swarm.net.loglimit import LogLimiter
from swarm.net.wire import MAGIC, PREFIX, Limits, read_frame


def test_log_limiter_writes_a_burst_per_period_then_counts_what_it_held_back():
    now = [0.0]
    quiet = LogLimiter(burst=2, period_s=60, clock=lambda: now[0])
    assert [quiet.allow("a") for _ in range(4)] == [(True, 0), (True, 0), (False, 1), (False, 2)]
    assert quiet.allow("b") == (True, 0)  # kinds are counted apart
    now[0] = 61.0
    assert quiet.allow("a") == (True, 2)  # the next line written says how many were held back


def test_log_limiter_forgets_old_kinds_beyond_its_bound():
    quiet = LogLimiter(burst=1, max_keys=3)
    for key in "abcd":
        quiet.allow(key)
    assert quiet.allow("a") == (True, 0)  # "a" was forgotten, not kept forever


async def test_a_frame_that_stalls_after_its_prefix_is_cut_off_at_its_deadline():
    reader = asyncio.StreamReader()
    reader.feed_data(PREFIX.pack(MAGIC, 4, 1 << 20) + b"\x81\xa1t\xa1s" + b"x" * 1000)  # 1 MiB body declared
    limits = Limits(frame_deadline_s=0.2, min_rate=1e12)
    with pytest.raises(TransportError, match="did not arrive within"):
        await asyncio.wait_for(read_frame(reader, limits), 10)


async def test_a_frame_that_arrives_in_time_is_read():
    reader = asyncio.StreamReader()
    reader.feed_data(PREFIX.pack(MAGIC, 9, 3) + b"\x81\xa4type\xa2ok" + b"abc")
    frame = await read_frame(reader, Limits(frame_deadline_s=5))
    assert frame is not None and frame.header == {"type": "ok"} and frame.body == b"abc"


def test_limits_give_big_frames_time_in_proportion():
    limits = Limits(frame_deadline_s=30, min_rate=1e6)
    assert limits.frame_deadline(0) == 30 and limits.frame_deadline(256 * 10**6) == pytest.approx(286)


BUDGET = KVBudget(total_bytes=1000, kv_bytes_per_token=1, history_bytes_per_token=0)


def test_one_client_cannot_reserve_more_than_its_share():
    """A stranger's one long max_length used to take a peer's whole KV budget."""
    hog = admit(BUDGET, [], "h1", 600, 1, False, client="203.0.113.9", client_share=0.5)
    assert isinstance(hog, Busy) and "share" in hog.reason
    first = admit(BUDGET, [], "h1", 500, 1, False, client="203.0.113.9", client_share=0.5)
    assert first == Reservation("h1", 500, "203.0.113.9")
    again = admit(BUDGET, [first], "h2", 1, 1, False, client="203.0.113.9", client_share=0.5)
    assert isinstance(again, Busy)
    other = admit(BUDGET, [first], "c1", 400, 1, False, client="198.51.100.7", client_share=0.5)
    assert isinstance(other, Reservation)  # the rest is there for everyone else


def test_a_share_of_one_is_the_whole_budget():
    assert isinstance(admit(BUDGET, [], "s", 1000, 1, False, client="x", client_share=1.0), Reservation)


def test_log_limiter_log_writes_the_allowed_lines_with_the_count_held_back(caplog):
    import logging
    now = [0.0]
    quiet = LogLimiter(burst=1, period_s=60, clock=lambda: now[0])
    log = logging.getLogger("test.loglimit")
    with caplog.at_level(logging.INFO, logger="test.loglimit"):
        for i in range(3):
            quiet.log(log, logging.INFO, "k", "line %d", i)
        now[0] = 61.0
        quiet.log(log, logging.INFO, "k", "line %d", 3)
    assert [r.getMessage() for r in caplog.records] == ["line 0", "line 3 (2 more like it not logged)"]


def test_remote_host_strips_the_port_and_ipv6_brackets():
    from swarm.net.transport import remote_host
    assert remote_host("198.51.100.7:4000") == "198.51.100.7" and remote_host("[::1]:4000") == "::1"
