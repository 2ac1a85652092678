"""``python -m swarm.linkem``: a link emulator, a TCP relay that gives a connection a home link's delay, rate and
jitter, so a whole swarm runs on emulated weak links on one machine (kernel netem is not everywhere).

    python -m swarm.linkem --listen 127.0.0.1:41000 --target 127.0.0.1:31400 --delay-ms 25 --rate-mbit 100

Every connection to ``--listen`` is relayed to ``--target``. Each direction is a link of its own (``--delay-ms``,
``--rate-mbit`` and ``--jitter-ms`` set both; ``--return-...`` the way back from the target): bytes leave the
link's sender one after another at the link's rate, as through a bottleneck of that speed, and arrive
``delay`` (plus up to ``jitter``, in order) after they left. What the sender writes faster than the rate waits
in a queue of at most ``--queue-ms`` of the link's rate (a router's buffer); beyond it the sender is held back,
as TCP's flow control does. A peer behind the emulator publishes the emulator's address with
``--announce-addr``, so whoever dials it crosses the emulated link.

``schedule`` is the pure core (when a chunk leaves and arrives); ``Link`` runs one direction of one connection
with an injected clock and sleep; ``serve`` listens and relays. It prints ``linkem ready: LISTEN -> TARGET``
once it listens, and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import random
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from swarm.errors import ConfigError, MolinkError
from swarm.logging_setup import setup_logging
from swarm.net.transport import parse_addr

log = logging.getLogger("molink.linkem")

CHUNK = 64 * 1024  # bytes read at once: at 1000 Mbit/s, 0.5 ms of the link
EARLY_S = 0.0005  # a timer wakes up to 1 ms late (epoll counts whole milliseconds): aim half of that early


@dataclass(frozen=True)
class LinkSpec:
    """One direction of a link: one-way delay and jitter in seconds, rate in bits per second (0: unlimited),
    and the most the link's queue holds, in seconds of its rate."""

    delay_s: float = 0.0
    rate_bps: float = 0.0
    jitter_s: float = 0.0
    queue_s: float = 0.5

    def __post_init__(self) -> None:
        if min(self.delay_s, self.rate_bps, self.jitter_s) < 0 or self.queue_s <= 0:
            raise ConfigError(f"a link needs delay, rate and jitter >= 0 and a queue > 0, got {self}")

    @property
    def queue_bytes(self) -> int:
        """Bytes the link holds in flight and queued before its sender is held back (at least 4 chunks)."""
        in_flight = self.rate_bps / 8 * (self.delay_s + self.jitter_s) if self.rate_bps else 0
        queued = self.rate_bps / 8 * self.queue_s if self.rate_bps else 64 * CHUNK
        return int(max(4 * CHUNK, in_flight + queued))


def schedule(now: float, free_at: float, last_arrival: float, nbytes: int, spec: LinkSpec,
             jitter: float) -> tuple[float, float]:
    """(when the last byte of a chunk of ``nbytes`` read at ``now`` leaves, when it arrives) on a link whose
    sender is busy until ``free_at`` and whose previous chunk arrived at ``last_arrival``; ``jitter`` in [0, 1)
    draws the extra delay. Chunks arrive in order, as TCP delivers them."""
    start = max(now, free_at)
    leaves = start + (nbytes * 8 / spec.rate_bps if spec.rate_bps else 0.0)
    return leaves, max(leaves + spec.delay_s + jitter * spec.jitter_s, last_arrival)


class Link:
    """One direction of one relayed connection: reads from ``reader``, delivers to ``writer`` on schedule."""

    def __init__(self, spec: LinkSpec, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]],
                 rng: random.Random) -> None:
        self.spec, self.reader, self.writer = spec, reader, writer
        self.clock, self.sleep, self.rng = clock, sleep, rng
        self.moved = 0
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._queued = 0
        self._data = asyncio.Event()  # something was queued (or the sender closed)
        self._space = asyncio.Event()  # something was delivered
        self._eof = False

    async def run(self) -> None:
        """Relay until the sender closes and everything queued is delivered (then half-close the receiver)."""
        deliver = asyncio.ensure_future(self._deliver())
        try:
            await self._take()
            await deliver
        finally:
            deliver.cancel()
            await asyncio.gather(deliver, return_exceptions=True)

    async def _take(self) -> None:
        free_at = last_arrival = self.clock()
        try:
            while data := await self.reader.read(CHUNK):
                while self._queued >= self.spec.queue_bytes:  # the bottleneck's buffer is full: hold the sender
                    self._space.clear()
                    await self._space.wait()
                free_at, last_arrival = schedule(self.clock(), free_at, last_arrival, len(data), self.spec,
                                                 self.rng.random())
                self._queue.append((last_arrival, data))
                self._queued += len(data)
                self._data.set()
        except (ConnectionError, OSError):
            pass  # the sender went away: deliver what was queued, then close
        finally:
            self._eof = True
            self._data.set()

    async def _deliver(self) -> None:
        while True:
            if not self._queue:
                if self._eof:
                    break
                self._data.clear()
                await self._data.wait()
                continue
            wait = self._queue[0][0] - self.clock() - EARLY_S
            if wait > 0:
                await self.sleep(wait)
            now = self.clock() + EARLY_S
            batch = []
            while self._queue and self._queue[0][0] <= now:  # everything due goes out in one write
                batch.append(self._queue.popleft()[1])
            size = sum(map(len, batch))
            self._queued -= size
            self.moved += size
            self._space.set()
            self.writer.writelines(batch)
            await self.writer.drain()
        with contextlib.suppress(OSError, RuntimeError):
            if self.writer.can_write_eof():
                self.writer.write_eof()


async def relay(up: LinkSpec, down: LinkSpec, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                target: str, *, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]],
                rng: random.Random) -> None:
    """Relay one accepted connection to ``target`` through an ``up`` link and back through a ``down`` one."""
    c_reader, c_writer = client
    host, port = parse_addr(target)
    try:
        t_reader, t_writer = await asyncio.open_connection(host, port)
    except OSError as e:
        log.warning("cannot reach the target %s: %s", target, e)
        c_writer.close()
        return
    links = [Link(up, c_reader, t_writer, clock=clock, sleep=sleep, rng=rng),
             Link(down, t_reader, c_writer, clock=clock, sleep=sleep, rng=rng)]
    try:
        await asyncio.gather(*(link.run() for link in links))
    except (ConnectionError, OSError) as e:
        log.info("connection ended: %s", e)
    finally:
        for writer in (t_writer, c_writer):
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def serve(listen: str, target: str, up: LinkSpec, down: LinkSpec, *, rng: random.Random | None = None,
                clock: Callable[[], float] | None = None,
                sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> asyncio.Server:
    """Listen on ``listen`` and relay every connection to ``target`` over the emulated links."""
    rng = rng or random.Random()
    loop = asyncio.get_running_loop()
    clock = clock or loop.time
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await relay(up, down, (reader, writer), target, clock=clock, sleep=sleep, rng=rng)

    host, port = parse_addr(listen)
    try:
        return await asyncio.start_server(on_connect, host, port)
    except OSError as e:
        raise ConfigError(f"cannot listen on {listen}: {e}") from e


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m swarm.linkem",
        description="Relay TCP connections through emulated links: a one-way delay, a rate cap and jitter per "
        "direction, so a swarm on one machine runs as if over home links. A peer behind it publishes the "
        "emulator's address with --announce-addr.")
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="where the emulated link starts")
    p.add_argument("--target", required=True, metavar="HOST:PORT", help="where every connection is relayed to")
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay of each direction (default 0)")
    p.add_argument("--rate-mbit", type=float, default=0.0, help="rate of each direction in Mbit/s (default 0: no cap)")
    p.add_argument("--jitter-ms", type=float, default=0.0,
                   help="extra delay drawn uniformly from [0, J) per chunk; order is kept (default 0)")
    p.add_argument("--queue-ms", type=float, default=500.0,
                   help="how much the link queues before the sender is held back, in ms of its rate (default 500)")
    for name in ("delay-ms", "rate-mbit", "jitter-ms"):
        p.add_argument(f"--return-{name}", type=float, default=None,
                       help=f"--{name} of the way back from the target (default: the same)")
    p.add_argument("--seed", type=int, default=None, help="seed of the jitter draws (default: random)")
    p.add_argument("--log-level", default="INFO")
    return p


def specs(args: argparse.Namespace) -> tuple[LinkSpec, LinkSpec]:
    """The (to the target, back) links the flags describe."""
    def spec(delay: float, rate: float, jitter: float) -> LinkSpec:
        return LinkSpec(delay_s=delay / 1000, rate_bps=rate * 1e6, jitter_s=jitter / 1000, queue_s=args.queue_ms / 1000)

    def back(name: str, default: float) -> float:
        value = getattr(args, f"return_{name}")
        return default if value is None else value

    return (spec(args.delay_ms, args.rate_mbit, args.jitter_ms),
            spec(back("delay_ms", args.delay_ms), back("rate_mbit", args.rate_mbit), back("jitter_ms", args.jitter_ms)))


async def _main(args: argparse.Namespace) -> None:
    up, down = specs(args)
    server = await serve(args.listen, args.target, up, down, rng=random.Random(args.seed))
    host, port = server.sockets[0].getsockname()[:2]
    print(f"linkem ready: {host}:{port} -> {args.target}", flush=True)
    log.info("to the target: %.1f ms, %s, jitter %.1f ms; back: %.1f ms, %s, jitter %.1f ms", up.delay_s * 1e3,
             f"{up.rate_bps / 1e6:g} Mbit/s" if up.rate_bps else "no rate cap", up.jitter_s * 1e3, down.delay_s * 1e3,
             f"{down.rate_bps / 1e6:g} Mbit/s" if down.rate_bps else "no rate cap", down.jitter_s * 1e3)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        asyncio.run(_main(args))
    except MolinkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
