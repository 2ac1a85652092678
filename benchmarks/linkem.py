"""How exact the link emulator is: round trip and throughput through ``python -m swarm.linkem`` on loopback,
measured from outside, against what it was set to, over 1-150 ms and 10-1000 Mbit/s.

For each setting: the smallest of 5 round trips of a 64-byte echo (want 2 x delay) and the rate of a bulk
transfer from its first write to the target's reply after the end (less the two delays). Prints one JSON
object and writes it to benchmarks/results/linkem-<date>.json with the machine's facts.

    .venv/bin/python benchmarks/linkem.py
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import publish  # noqa: E402
from tests.integration.test_linkem import sink  # noqa: E402 - the same echo target the tests measure with

# (one-way delay ms, rate Mbit/s, bytes sent): about a second of transfer each
SETTINGS = [(0, 0, 100_000_000), (1, 1000, 100_000_000), (5, 500, 50_000_000), (25, 100, 12_500_000),
            (50, 20, 2_500_000), (150, 10, 1_250_000), (150, 1000, 100_000_000)]


async def measure(delay_ms: float, rate_mbit: float, nbytes: int) -> dict[str, float]:
    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    target = server.sockets[0].getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "swarm.linkem", "--listen", "127.0.0.1:0", "--target",
                             f"127.0.0.1:{target}", "--delay-ms", str(delay_ms), "--rate-mbit", str(rate_mbit),
                             "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        port = int(proc.stdout.readline().split()[2].rpartition(":")[2])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        rtts = []
        for i in range(5):
            began = time.monotonic()
            writer.write(b"PING%060d" % i)
            await writer.drain()
            await reader.readexactly(64)
            rtts.append(time.monotonic() - began)
        chunk, began = b"\0" * (1 << 16), time.monotonic()
        for _ in range(nbytes // len(chunk)):
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()
        await reader.read()
        rate = nbytes * 8 / 1e6 / (time.monotonic() - began - 2 * delay_ms / 1e3)
        writer.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.close()
    return {"delay_ms": delay_ms, "rate_mbit": rate_mbit, "min_rtt_ms": round(min(rtts) * 1e3, 2),
            "rtt_error": round(min(rtts) * 1e3 / (2 * delay_ms) - 1, 4) if delay_ms else None,
            "measured_mbit": round(rate, 1), "rate_error": round(rate / rate_mbit - 1, 4) if rate_mbit else None}


def main() -> int:
    rows = [asyncio.run(measure(*setting)) for setting in SETTINGS]
    publish("linkem", {"settings": rows, "note": "delay 0 / rate 0: the emulator's own cost (no delay, no cap)"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
