"""Persistent TCP connections that carry molink frames (see swarm.net.wire).

Activations go over plain asyncio TCP streams wherever a peer can be reached directly (a peer behind a NAT is
reached through a relay instead, over the libp2p daemon the DHT uses: ``swarm/net/circuits.py``, and a
``Channel`` wraps that stream just the same): one connection per pair of peers stays open for the whole session, TCP_NODELAY is set so a decode step
of a few kilobytes leaves at once instead of waiting for Nagle's algorithm, and a frame's body is
written straight from the tensor's memory. A ``Channel`` wraps one connection; writers share it
through a lock so frames never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable

from swarm.net.errors import ConfigError, MolinkError, PeerUnreachableError, TransportError
from swarm.net.loglimit import LogLimiter
from swarm.net.wire import Frame, Limits, encode_frame, read_frame

logger = logging.getLogger(__name__)


def parse_addr(addr: str) -> tuple[str, int]:
    """(host, port) of "host:port" or "[v6addr]:port"; ConfigError for anything else."""
    if not isinstance(addr, str) or ":" not in addr:
        raise ConfigError(f"address {addr!r} is not HOST:PORT")
    host, _, port_text = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host:
            raise ConfigError(f"address {addr!r} has an empty host")
    elif ":" in host or "[" in host or "]" in host:
        raise ConfigError(f"address {addr!r}: write an IPv6 host in brackets, like [::1]:PORT")
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"address {addr!r} has no valid host")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"address {addr!r} has no valid port (0..65535)")
    return host, int(port_text)


def remote_host(remote: str) -> str:
    """The host of a "host:port" or "[v6]:port" remote, as ``format_addr`` wrote it: what limits count by."""
    host = remote.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def format_addr(host: str, port: int) -> str:
    """The "host:port" form, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Channel:
    """One open connection carrying frames in both directions. ``kind`` says how it was made (the words of
    ``swarm/net/ways.py``): ``direct`` TCP, ``punched`` TCP after a hole punch, or ``relayed`` through a relay."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        remote: str,
        limits: Limits = Limits(),
        kind: str = "direct",
    ) -> None:
        self.remote = remote
        self.limits = limits
        self.kind = kind
        self.rtt_s: float | None = None  # a round trip its opener measured on it (a proof on connect), if any
        self.bps: float | None = None  # bytes/s its opener measured with a padded ping (swarm/net/probe.py)
        self.bytes_sent = 0      # frame bytes written to it and read from it (metrics)
        self.bytes_received = 0
        self._reader = reader
        self._writer = writer
        self._send_lock = asyncio.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or self._writer.is_closing()

    async def send(self, header: dict, body: bytes | memoryview = b"") -> None:
        """Write one frame and wait until the kernel took it (drain); TransportError when the link is gone, or
        when the other side takes no frame within the deadline a received frame of its size gets
        (``Limits.frame_deadline``): a reader that stalls cannot hold the sender's frames and tasks forever."""
        buffers = encode_frame(header, body)
        deadline = self.limits.frame_deadline(sum(len(b) for b in buffers))
        async with self._send_lock:
            if self.closed:
                raise TransportError(f"channel to {self.remote} is closed")
            try:
                self._writer.writelines(buffers)
                self.bytes_sent += sum(len(b) for b in buffers)
                await asyncio.wait_for(self._writer.drain(), deadline)
            except asyncio.TimeoutError:  # before OSError: it is one
                self._closed = True
                self._writer.close()
                raise TransportError(f"{self.remote} took nothing for {deadline:.0f} s: connection closed") from None
            except (ConnectionError, OSError) as exc:
                # the peer reset or the socket died: the channel cannot be used again
                self._closed = True
                raise TransportError(f"lost connection to {self.remote}: {exc}") from exc

    async def recv(self) -> Frame | None:
        """The next frame; None when the other side closed cleanly between frames."""
        try:
            frame = await read_frame(self._reader, self.limits)
        except (ConnectionError, OSError) as exc:
            self._closed = True
            raise TransportError(f"lost connection to {self.remote}: {exc}") from exc
        if frame is not None:
            self.bytes_received += frame.size
        return frame

    async def close(self) -> None:
        if self._closed and self._writer.is_closing():
            return
        self._closed = True
        self._writer.close()
        # the other side may already be gone; closing is best effort
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()

    def __repr__(self) -> str:
        return f"Channel({self.remote!r}, closed={self.closed})"


async def open_channel(addr: str, *, limits: Limits = Limits(), timeout: float = 10.0) -> Channel:
    """A connected Channel to ``addr``; PeerUnreachableError naming the address when it does not answer."""
    host, port = parse_addr(addr)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError as exc:
        raise PeerUnreachableError(f"{addr} did not accept a connection within {timeout:g} s") from exc
    except OSError as exc:  # refused, unreachable network, unknown host
        raise PeerUnreachableError(f"cannot connect to {addr}: {exc}") from exc
    set_nodelay(writer)
    return Channel(reader, writer, remote=addr, limits=limits)


class Gate:
    """The caps on the connections one server holds: ``limits.max_connections`` in all, and
    ``limits.max_per_host`` from one source (a host, or a libp2p peer for streams through a relay)."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self.per_source: dict[str, int] = {}
        self.quiet = LogLimiter()  # what strangers can trigger is logged at a bounded rate

    def admit(self, source: str) -> bool:
        """Count a new connection from ``source`` in; False (logged, rate-limited) when a cap is reached."""
        total = sum(self.per_source.values())
        held = self.per_source.get(source, 0)
        if total >= self.limits.max_connections or held >= self.limits.max_per_host:
            self.quiet.log(logger, logging.WARNING, f"cap {source}",
                            "refused a connection from %s: %d open from it, %d in all (caps %d and %d)", source,
                            held, total, self.limits.max_per_host, self.limits.max_connections)
            return False
        self.per_source[source] = held + 1
        return True

    def release(self, source: str) -> None:
        self.per_source[source] -= 1
        if not self.per_source[source]:
            del self.per_source[source]


async def serve_channel(handler: Callable[[Channel], Awaitable[None]], channel: Channel, source: str,
                        gate: Gate) -> None:
    """Run ``handler`` on a channel ``gate`` admitted from ``source``; never raises, always closes and releases."""
    try:
        await handler(channel)
    except asyncio.CancelledError:  # the server is shutting down: nobody awaits this task, end quietly
        pass
    except MolinkError as exc:  # a peer broke the protocol or dropped the link: expected, no traceback
        gate.quiet.log(logger, logging.WARNING, f"ended {source}", "connection from %s ended: %s", channel.remote,
                        exc)
    except Exception:  # noqa: BLE001 - one bad connection must never take the server down
        gate.quiet.log(logger, logging.ERROR, f"failed {source}", "handler for connection from %s failed",
                        channel.remote, exc_info=True)
    finally:
        gate.release(source)
        await channel.close()


async def start_server(
    handler: Callable[[Channel], Awaitable[None]],
    host: str,
    port: int,
    *,
    limits: Limits = Limits(),
    sock: socket.socket | None = None,
    gate: Gate | None = None,
) -> asyncio.Server:
    """A listening server that runs ``handler`` on a Channel per inbound connection and closes it afterwards.

    The bound port is ``server.sockets[0].getsockname()[1]`` (useful with port 0). ``sock``: a socket
    already bound and listening (host and port are then only for messages). ``gate``: the connection caps,
    shared with the server's other ways in (streams through relays, ``swarm/net/circuits.py``).
    """

    gate = gate or Gate(limits)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        host = str(peername[0]) if peername else "unknown"
        remote = format_addr(host, peername[1]) if peername else "unknown"
        if not gate.admit(host):
            writer.close()
            return
        set_nodelay(writer)
        await serve_channel(handler, Channel(reader, writer, remote=remote, limits=limits), host, gate)

    try:
        if sock is not None:
            return await asyncio.start_server(on_connect, sock=sock)
        return await asyncio.start_server(on_connect, host, port)
    except OSError as exc:  # port taken, address not local
        raise ConfigError(f"cannot listen on {format_addr(host, port)}: {exc}") from exc
