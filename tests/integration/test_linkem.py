"""The link emulator as a process (``python -m swarm.linkem``), measured from outside on loopback: the round
trip and the throughput through it are within 10% of what it was told, jitter never reorders bytes, and
closing either end closes the other. Short, bounded runs (a few MB at most)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator

import pytest

from swarm.launch import ManagedProcess, start_process

pytestmark = pytest.mark.linkem


async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The target: echoes what starts with PING, swallows the rest, says DONE when the sender half-closes."""
    while data := await reader.read(1 << 16):
        if data.startswith(b"PING"):
            writer.write(data)
            await writer.drain()
    writer.write(b"DONE")
    await writer.drain()
    writer.close()


@pytest.fixture
async def target() -> AsyncIterator[int]:
    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def emulator(tmp_path, port: int, *flags: str) -> tuple[ManagedProcess, int]:
    proc = start_process([sys.executable, "-m", "swarm.linkem", "--listen", "127.0.0.1:0", "--target",
                          f"127.0.0.1:{port}", *flags], "linkem", tmp_path)
    return proc, int(proc.wait_line("linkem ready:", 60).split()[2].rpartition(":")[2])


async def round_trips(port: int, n: int = 6) -> tuple[list[float], asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times = []
    for i in range(n):
        began = time.monotonic()
        writer.write(b"PING%060d" % i)
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(64), 30) == b"PING%060d" % i
        times.append(time.monotonic() - began)
    return times, reader, writer


async def throughput_mbit(reader, writer, nbytes: int, delay_s: float) -> float:
    """Mbit/s of ``nbytes`` sent through, from the first write to the target's DONE (less its two delays)."""
    chunk = b"\0" * (1 << 16)
    began = time.monotonic()
    for _ in range(nbytes // len(chunk)):
        writer.write(chunk)
        await writer.drain()
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 60) == b"DONE"
    return nbytes * 8 / 1e6 / (time.monotonic() - began - 2 * delay_s)


@pytest.mark.parametrize(("delay_ms", "rate_mbit", "nbytes"), [(20, 20, 2 << 20), (5, 200, 16 << 20)])
async def test_delay_and_rate_are_what_was_set(tmp_path, target, delay_ms, rate_mbit, nbytes):
    proc, port = emulator(tmp_path, target, "--delay-ms", str(delay_ms), "--rate-mbit", str(rate_mbit))
    try:
        times, reader, writer = await round_trips(port)
        # the smallest of a few round trips (a busy machine only adds to some of them), within 10%, plus a
        # millisecond for the emulator's own path (0.4 ms per round trip measured idle, more on a busy machine)
        assert 2 * delay_ms * 0.9 <= min(times) * 1e3 <= 2 * delay_ms * 1.1 + 1.0, times
        rate = await throughput_mbit(reader, writer, nbytes, delay_ms / 1e3)
        assert rate_mbit * 0.9 <= rate <= rate_mbit * 1.1, rate
        writer.close()
    finally:
        proc.stop()


async def test_jitter_spreads_round_trips_and_keeps_the_order_and_a_closed_end_closes_the_other(tmp_path, target):
    proc, port = emulator(tmp_path, target, "--delay-ms", "10", "--jitter-ms", "20", "--seed", "1",
                          "--return-delay-ms", "2", "--return-jitter-ms", "0")
    try:
        times, reader, writer = await round_trips(port, 12)  # each echo is checked in order, byte for byte
        assert min(times) >= 0.012 * 0.9 and max(times) <= 0.032 * 1.1 + 0.05, times
        assert max(times) - min(times) > 0.004, times  # jitter was drawn (seeded), not constant
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 30) == b"DONE"  # the target saw the end and closed
        writer.close()
    finally:
        proc.stop()


def test_bad_flags_get_a_clear_error(tmp_path):
    import subprocess

    out = subprocess.run([sys.executable, "-m", "swarm.linkem", "--listen", "127.0.0.1:0", "--target",
                          "127.0.0.1:1", "--delay-ms", "-5"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "delay" in out.stderr and "Traceback" not in out.stderr
