"""TCP hole punching: a direct connection between two hosts behind NATs, by a simultaneous open.

Two peers that talk through a relay (``swarm/net/circuits.py``) can often talk directly: each binds a fresh
local port, learns through the relay the port the other bound and the host the relay sees it at, and both
connect to each other at the same time. Each one's SYN opens a mapping in its own NAT (a home router keeps
the source port where it can) and its firewall then lets the other's SYN in as an answer; the two SYNs cross
and TCP's simultaneous open makes one connection of them (RFC 793, section 3.4). This is what libp2p's DCUtR
does over a circuit relay; ``docs/architecture.md`` ("Peers behind NATs") has why molink does it over its own
relay streams, and what it measured.

The peer's side (``punch_back``) also listens on its port, so a dialler's SYN that arrives when the peer's own
connect was refused (a host with no NAT answers a SYN with a reset) is still taken; its connects keep the way
through its own NAT open. It fails where a NAT gives every connection a new port (a symmetric NAT: the port the
other side was told is not the one its SYN comes from); the relayed stream is then kept. A connect that is
refused at once (the other side was not connecting yet) is tried again until ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from swarm.net.transport import parse_addr

PUNCH_TIMEOUT_S = 2.5  # a punch between two cone NATs connected within 0.3 s in tests/integration/test_nat.py
RETRY_S = 0.02  # after a connect was refused at once (the other side was not connecting yet)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bound(family: socket.AddressFamily, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the same port again after a refused try
        if hasattr(socket, "SO_REUSEPORT"):  # connects from the port a listener holds (not on Windows)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def punch_port(host_like: str = "0.0.0.0") -> int:
    """A free local port to punch from (for a peer at an address of the family of ``host_like``)."""
    with contextlib.closing(_bound(_family(host_like), 0)) as sock:
        return sock.getsockname()[1]


async def simultaneous_open(local_port: int, addr: str, *, timeout_s: float = PUNCH_TIMEOUT_S,
                            retry_s: float = RETRY_S) -> socket.socket | None:
    """A socket connected from ``local_port`` to ``addr`` (HOST:PORT) while the other side connects back, or
    None when no connection came within ``timeout_s``."""
    host, port = parse_addr(addr)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (left := deadline - loop.time()) > 0:
        try:
            sock = _bound(_family(host), local_port)
        except OSError:
            return None  # the port was taken meanwhile: no punch
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), left)
            return sock
        except (OSError, TimeoutError):
            sock.close()
        await asyncio.sleep(min(retry_s, max(0.0, deadline - loop.time())))
    return None


async def punch_back(local_port: int, addr: str, *, timeout_s: float = PUNCH_TIMEOUT_S,
                     retry_s: float = RETRY_S) -> socket.socket | None:
    """The peer's side of a punch: connect from ``local_port`` to ``addr`` as ``simultaneous_open`` does, and take
    a connection from ``addr``'s host on that port too; the first connection that comes, or None."""
    host, _ = parse_addr(addr)
    loop = asyncio.get_running_loop()
    try:
        listener = _bound(_family(host), local_port)
        listener.listen(4)
    except OSError:
        return await simultaneous_open(local_port, addr, timeout_s=timeout_s, retry_s=retry_s)

    async def accept() -> socket.socket:
        while True:
            sock, (from_host, *_) = await loop.sock_accept(listener)
            if from_host == host:
                return sock
            sock.close()  # a stranger found the port: not who the relay named

    tries = [asyncio.ensure_future(accept()),
             asyncio.ensure_future(simultaneous_open(local_port, addr, timeout_s=timeout_s, retry_s=retry_s))]
    winner: socket.socket | None = None
    try:
        pending = set(tries)
        deadline = loop.time() + timeout_s
        while winner is None and pending and (left := deadline - loop.time()) > 0:
            done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            winner = next((t.result() for t in done if not t.cancelled() and t.exception() is None
                           and t.result() is not None), None)
        return winner
    finally:
        listener.close()
        for task in tries:
            task.cancel()
        for late in await asyncio.gather(*tries, return_exceptions=True):
            if isinstance(late, socket.socket) and late is not winner:
                late.close()  # a second connection that came as the first was taken
