"""Peers behind NATs: reachability checks and relayed connections over the libp2p daemon the DHT runs on.

Every molink process already runs a libp2p daemon (hivemind's p2pd) for the DHT, and a peer behind a NAT keeps
an outbound libp2p connection to its initial peers (the bootstraps) open. A bootstrap started with ``--relay``
runs a ``RelayService`` on its daemon, under the libp2p protocol ``/molink/relay/1``:

- ``Dialback{port}``: the relay connects to ``port`` at the address it sees the asker at, and answers
  ``Reach{addr, reachable}`` (AutoNAT's idea, for molink's own data port). It dials nobody else: the address is
  the asker's own, as its connection shows it.
- ``Connect{peer}``: the relay opens a stream, over the connection that peer keeps to it, under
  ``/molink/frames/1``, says who dialled (``Relayed{source}``), answers ``joined``, and joins the two streams. From
  then on both ends speak plain molink frames, as over TCP: the same limits, the same checks, the same proof
  on connect. Only peers connected to the relay are served (the relay dials out to nobody for a stranger), and
  circuits are bounded: in number, per peer, in bytes/s per peer and in duration (``CircuitLimits``). What a
  stranger can make the relay log (dial-backs, circuits) is logged at a bounded rate per source.

``Dialer`` is the one way to open a connection to a way (``swarm/net/ways.py``): TCP for HOST:PORT, the relay
for a relayed way. ``serve_relayed`` hands streams a relay joined to a peer's connection handler, under the
same connection caps (``Gate``) as its TCP port. Over a joined stream both ends first try a TCP hole punch
(``swarm/net/punch.py``): ``Connect.punch`` carries the dialler's port, the relay adds the hosts it sees both
ends at (``Relayed.punch``, ``Joined.host``), the peer answers its own port (``Punch``), and both connect at
once; a punched connection replaces the relayed one, a failed punch keeps it.

libp2p's own circuit relay v2 was measured first (``docs/architecture.md``, "Peers behind NATs"): with one
relay the daemon's autorelay reserved a slot only after about three minutes (it waits for more candidate
relays, or a boot delay), so a peer behind a NAT could not serve for its first minutes; joining streams ourselves on the
same daemon connection needs no reservation.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from swarm.net.errors import ConfigError, MolinkError, PeerUnreachableError, ProtocolError, one_line
from swarm.net.loglimit import LogLimiter
from swarm.net.protocol import Connect, Dialback, Error, Joined, Message, Ok, Punch, Reach, Relayed, parse
from swarm.net.punch import punch_back, punch_port, simultaneous_open
from swarm.net.transport import (
    Channel,
    Gate,
    format_addr,
    open_channel,
    parse_addr,
    remote_host,
    serve_channel,
    set_nodelay,
)
from swarm.net.ways import PUNCHED, RELAYED, is_relayed, parse_relayed
from swarm.net.wire import Limits

log = logging.getLogger("molink.relay")

RELAY_PROTOCOL = "/molink/relay/1"
FRAMES_PROTOCOL = "/molink/frames/1"
HELLO_TIMEOUT_S = 10.0  # the first frame on a new stream must come within this
DIALBACK_TIMEOUT_S = 3.0  # a relay's connect back to an asker's data port
MAX_PUNCHES = 8  # hole punches a peer tries at once (each holds a socket for at most PUNCH_TIMEOUT_S)
NO_PUNCH_S = 600.0  # after a punch to a peer failed, its connections stay relayed this long
CHUNK = 64 * 1024
_SMALL = Limits(max_header=4096, max_body=0)  # what the relay reads itself: one small request
_OBSERVED = re.compile(r"^/(ip4|ip6)/([^/]+)/tcp/\d+")


def _observed_host(maddr: str | None) -> str | None:
    """The host of a libp2p address /ip4/H/tcp/P (or /ip6/): where a relay sees a connection come from."""
    found = _OBSERVED.match(maddr or "")
    return found.group(2) if found else None


def _p2p_errors() -> tuple[type[BaseException], ...]:
    from hivemind.p2p import P2PDaemonError, P2PHandlerError

    return (P2PDaemonError, P2PHandlerError, ConnectionError, OSError, ValueError, EOFError,
            asyncio.IncompleteReadError)


async def _open_stream(p2p: Any, peer_id: str, maddr: str | None, proto: str) -> tuple[Any, Any]:
    """A libp2p stream to ``peer_id`` under ``proto``, connecting first at ``maddr`` (/ip4/H/tcp/P) if given."""
    from hivemind.p2p import PeerID
    from hivemind.utils.multiaddr import Multiaddr

    pid = PeerID.from_base58(peer_id)
    if maddr:
        # the peer id goes separately: the daemon reads a /p2p/ part of an address in a form hivemind does not write
        await p2p._client.connect(pid, [Multiaddr(maddr)])
    _, reader, writer = await p2p.call_binary_stream_handler(pid, proto)
    return reader, writer


async def _ask_relay(p2p: Any, relay_id: str, relay_addr: str, request: Message, *, remote: str,
                     limits: Limits) -> tuple[Channel, Message | None]:
    """Open a ``/molink/relay/1`` stream to a relay, send ``request`` and read the answer (None: it hung up);
    the channel comes back open, or is closed when this fails."""
    reader, writer = await _open_stream(p2p, relay_id, relay_addr, RELAY_PROTOCOL)
    channel = Channel(reader, writer, remote=remote, limits=limits)
    try:
        await channel.send(request.to_header())
        frame = await channel.recv()
        return channel, parse(frame.header) if frame is not None else None
    except BaseException:  # a timeout cancels it too: the stream must not stay open
        await channel.close()
        raise


async def open_relayed(p2p: Any, way: str, *, limits: Limits = Limits(), timeout: float = 10.0,
                       punch: bool = False) -> Channel:
    """A channel to the peer behind a relayed way; PeerUnreachableError naming the relay when there is none.
    ``punch``: try a hole punch over the joined stream first, and give the direct connection when it comes
    (its ``kind`` is ``punched``; the relayed one's ``relayed``)."""
    relayed = parse_relayed(way)
    port = punch_port() if punch else 0
    try:
        async with asyncio.timeout(timeout):
            channel, answer = await _ask_relay(p2p, relayed.relay_id, relayed.relay,
                                               Connect(peer=relayed.target, punch=port), remote=way, limits=limits)
    except TimeoutError as exc:
        raise PeerUnreachableError(f"relay {relayed.relay_maddr} did not join a circuit within {timeout:g} s") from exc
    except (*_p2p_errors(), MolinkError) as exc:
        raise PeerUnreachableError(f"cannot reach {relayed.target[-8:]} through relay {relayed.relay_maddr}: "
                                   f"{one_line(exc)}") from exc
    if not isinstance(answer, (Ok, Joined)):
        await channel.close()
        why = answer.message if isinstance(answer, Error) else "no answer"
        raise PeerUnreachableError(f"relay {relayed.relay_maddr} did not join {relayed.target[-8:]}: {why}")
    channel.kind = RELAYED
    if port and isinstance(answer, Joined) and answer.host:
        direct = await _punch_from(channel, port, answer.host, limits=limits, timeout=timeout)
        if direct is not None:
            await channel.close()
            return direct
    return channel


async def _punch_from(channel: Channel, port: int, host: str, *, limits: Limits, timeout: float) -> Channel | None:
    """The dialler's side of a hole punch: read the peer's ``Punch`` (first on the joined stream), connect from
    ``port`` to ``host`` at the peer's port; the punched channel, or None (the relayed one stays usable).
    PeerUnreachableError, with ``channel`` closed, when the peer never says how it punches."""
    try:
        frame = await asyncio.wait_for(channel.recv(), timeout)
        answer = parse(frame.header) if frame is not None else None
    except (TimeoutError, MolinkError) as exc:
        await channel.close()
        raise PeerUnreachableError(f"{channel.remote} said nothing after the relay joined it: {one_line(exc)}") from exc
    if not isinstance(answer, Punch):
        await channel.close()
        raise PeerUnreachableError(f"{channel.remote} did not answer the hole punch request")
    if not 0 < answer.port <= 65535:
        return None  # the peer does not punch
    addr = format_addr(host, answer.port)
    began = time.monotonic()
    sock = await simultaneous_open(port, addr)
    if sock is None:
        log.info("hole punch to %s failed within %.1f s: staying on the relay", addr, time.monotonic() - began)
        return None
    log.info("hole punch to %s: direct connection in %.2f s", addr, time.monotonic() - began)
    return await _channel_on(sock, addr, limits)


async def _channel_on(sock: Any, remote: str, limits: Limits) -> Channel:
    reader, writer = await asyncio.open_connection(sock=sock)
    set_nodelay(writer)
    return Channel(reader, writer, remote=remote, limits=limits, kind=PUNCHED)


class Dialer:
    """Opens a Channel to a way: TCP for HOST:PORT, through the relay for a relayed way (``p2p``: this
    process's libp2p daemon, hivemind's P2P; None: relayed ways are unreachable). ``punch``: try a hole punch
    for each relayed connection, except to a peer a punch failed to within ``NO_PUNCH_S`` (a symmetric NAT
    fails every time: its connections go straight to the relay)."""

    def __init__(self, p2p: Any | None, *, limits: Limits = Limits(), timeout: float = 10.0, punch: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.p2p = p2p
        self.limits = limits
        self.timeout = timeout
        self.punch = punch
        self.clock = clock
        self._no_punch: dict[str, float] = {}  # libp2p peer id -> until when its connections are not punched

    async def __call__(self, way: str) -> Channel:
        if not is_relayed(way):
            return await open_channel(way, limits=self.limits, timeout=self.timeout)
        if self.p2p is None:
            raise PeerUnreachableError(f"{way} is a relayed way and this process runs no libp2p node")
        target = parse_relayed(way).target
        now = self.clock()
        punch = self.punch and self._no_punch.get(target, now) <= now
        channel = await open_relayed(self.p2p, way, limits=self.limits, timeout=self.timeout, punch=punch)
        if punch and channel.kind != PUNCHED:
            self._no_punch[target] = now + NO_PUNCH_S
            if len(self._no_punch) > 1024:  # forget the oldest: strangers' ids cannot grow it without bound
                del self._no_punch[min(self._no_punch, key=self._no_punch.__getitem__)]
        else:
            self._no_punch.pop(target, None)
        return channel


async def serve_relayed(p2p: Any, handler: Callable[[Channel], Awaitable[None]], gate: Gate,
                        limits: Limits = Limits(), *, punch: bool = True) -> None:
    """Serve the streams relays join to this peer with ``handler``, under ``gate`` (the TCP port's caps).
    ``punch``: when the dialler asks, try a hole punch back to the address the relay saw it at (at most
    ``MAX_PUNCHES`` at once) and serve the direct connection too, as a TCP connection from that host."""
    punching: set[asyncio.Task[None]] = set()

    async def punch_to(port: int, addr: str) -> None:
        sock = await punch_back(port, addr)
        if sock is None:
            gate.quiet.log(log, logging.INFO, f"punch {remote_host(addr)}", "hole punch from %s failed: it stays "
                           "relayed", addr)
            return
        channel = await _channel_on(sock, addr, limits)
        host = remote_host(addr)
        if not gate.admit(host):
            await channel.close()
            return
        gate.quiet.log(log, logging.INFO, f"punch {host}", "hole punch from %s: direct connection", addr)
        await serve_channel(handler, channel, host, gate)

    async def answer_punch(channel: Channel, addr: str) -> None:
        port = 0
        try:
            parse_addr(addr)
            if punch and len(punching) < MAX_PUNCHES:
                port = punch_port(remote_host(addr))
        except (ConfigError, OSError):
            port = 0
        await channel.send(Punch(port=port).to_header())
        if port:
            task = asyncio.ensure_future(punch_to(port, addr))
            punching.add(task)
            task.add_done_callback(punching.discard)

    async def on_stream(info: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        relay = str(info.peer_id)
        channel = Channel(reader, writer, remote=f"relay {relay[-8:]}", limits=limits, kind=RELAYED)
        try:
            frame = await asyncio.wait_for(channel.recv(), HELLO_TIMEOUT_S)
            hello = parse(frame.header) if frame is not None else None
        except (TimeoutError, MolinkError) as e:
            gate.quiet.log(log, logging.INFO, f"hello {relay}", "relayed stream from %s ended before it said who "
                           "dialled: %s", relay, e)
            await channel.close()
            return
        if not isinstance(hello, Relayed):
            await channel.close()
            return
        source = f"{relay}/{hello.source}"  # counted per relay and dialler: nobody fills another's share
        channel.remote = f"{hello.source[-8:]} via relay {relay[-8:]}"
        if not gate.admit(source):
            await channel.close()
            return
        if hello.punch is not None:
            try:
                await answer_punch(channel, hello.punch)
            except MolinkError:
                gate.release(source)
                await channel.close()
                return
        await serve_channel(handler, channel, source, gate)

    await p2p.add_binary_stream_handler(FRAMES_PROTOCOL, on_stream)


async def check_reach(p2p: Any, initial_peers: Sequence[str], port: int, *,
                      timeout: float = 10.0) -> list[tuple[str, Reach | None]]:
    """Ask every initial peer (full addresses) to connect back to this node's data ``port``: per peer, its
    ``Reach`` answer, or None when it is no relay (or did not answer within ``timeout``)."""

    async def ask(maddr: str) -> tuple[str, Reach | None]:
        relay_addr, _, relay_id = maddr.rpartition("/p2p/")
        try:
            async with asyncio.timeout(timeout):
                channel, answer = await _ask_relay(p2p, relay_id, relay_addr, Dialback(port=port), remote=maddr,
                                                   limits=_SMALL)
            await channel.close()
        except (TimeoutError, *_p2p_errors(), MolinkError) as e:
            log.debug("%s did not check reachability: %s", maddr, one_line(e))
            answer = None
        return maddr, answer if isinstance(answer, Reach) else None

    return list(await asyncio.gather(*(ask(m) for m in initial_peers)))


@dataclass(frozen=True)
class CircuitLimits:
    """What a relay gives strangers: circuits at once (in all, and per peer at either end), bytes per second per
    dialling peer (each direction; 0: unlimited) and seconds per circuit."""

    max_circuits: int = 256
    max_per_peer: int = 32
    rate_bytes_s: float = 0.0
    max_duration_s: float = 3600.0
    max_dialbacks: int = 4  # connects back to askers at once


class Bucket:
    """A token bucket of ``rate`` bytes/s (0: no cap): ``take(n)`` waits until ``n`` bytes fit the rate, one
    second's worth may burst. Clock and sleep are injected (the tests run it on a fake clock)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.rate, self.clock, self.sleep = rate, clock, sleep
        self.tokens, self.at = rate, clock()

    def wait_s(self, n: int) -> float:
        """Take ``n`` bytes now; the seconds to wait before sending them (pure but for the bucket's state)."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate) - n
        self.at = now
        return max(0.0, -self.tokens / self.rate)

    async def take(self, n: int) -> None:
        wait = self.wait_s(n)
        if wait > 0:
            await self.sleep(wait)


class RelayService:
    """The relay side of ``/molink/relay/1`` on this process's libp2p daemon (see the module docstring)."""

    def __init__(self, p2p: Any, limits: CircuitLimits = CircuitLimits(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.p2p = p2p
        self.limits = limits
        self.clock = clock
        self.open: dict[int, tuple[str, str]] = {}  # circuit number -> (source, target) libp2p peer ids
        self.relayed_bytes = 0
        self.circuits_served = 0
        self._buckets: dict[str, Bucket] = {}
        self._dialbacks = asyncio.Semaphore(limits.max_dialbacks)
        self._next = 0
        self._quiet = LogLimiter()

    async def start(self) -> None:
        await self.p2p.add_binary_stream_handler(RELAY_PROTOCOL, self._on_stream)

    async def _on_stream(self, info: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = str(info.peer_id)
        channel = Channel(reader, writer, remote=source, limits=_SMALL)
        keep = False
        try:
            frame = await asyncio.wait_for(channel.recv(), HELLO_TIMEOUT_S)
            msg = parse(frame.header) if frame is not None else None
            if isinstance(msg, Dialback):
                await channel.send((await self._dialback(str(info.addr), msg)).to_header())
            elif isinstance(msg, Connect):
                keep = await self._connect(source, msg, str(info.addr), reader, writer, channel)
            elif msg is not None:
                await channel.send(Error(code="unknown_type", message=f"a relay does not take {msg.TYPE!r}").to_header())
        except (TimeoutError, MolinkError, *_p2p_errors()) as e:
            self._quiet.log(log, logging.INFO, f"bad {source}", "relay request from %s failed: %s", source,
                            one_line(e))
        except Exception:  # noqa: BLE001 - one stranger's stream must never take the relay down
            self._quiet.log(log, logging.ERROR, f"crash {source}", "relay request from %s failed", source,
                            exc_info=True)
        finally:
            if not keep:
                await channel.close()

    async def _dialback(self, observed: str, msg: Dialback) -> Reach:
        host = _observed_host(observed)
        if host is None or not 0 < msg.port <= 65535:
            raise ProtocolError(f"cannot dial back {observed!r} port {msg.port}")
        addr = format_addr(host, msg.port)
        async with self._dialbacks:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, msg.port), DIALBACK_TIMEOUT_S)
            except (TimeoutError, OSError):
                reachable = False
            else:
                reachable = True
                writer.close()
        self._quiet.log(log, logging.INFO, f"dialback {host}", "dial-back to %s: %s", addr,
                        "reachable" if reachable else "not reachable")
        return Reach(addr=addr, reachable=reachable, id=msg.id)

    def _refusal(self, source: str, target: str) -> str | None:
        count = len(self.open)
        if count >= self.limits.max_circuits:
            return f"the relay holds its most circuits ({count})"
        for who in (source, target):
            held = sum(who in ends for ends in self.open.values())
            if held >= self.limits.max_per_peer:
                return f"{who[-8:]} holds its most circuits through this relay ({held})"
        return None

    async def _connect(self, source: str, msg: Connect, observed: str, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter, channel: Channel) -> bool:
        """Join the asker's stream to a stream to ``msg.peer``; True when the circuit ran (streams closed here).
        When the asker asks for a hole punch, the peer is told where to punch to (the host this relay sees the
        asker at, the port it said) and the asker where the peer is (the host this relay sees it at)."""
        target = msg.peer
        refusal = self._refusal(source, target)
        target_seen = None  # the host this relay sees the target's connection come from
        if refusal is None:
            connected = {str(p.peer_id): p for p in await self.p2p.list_peers()}
            if target not in connected:
                refusal = f"{target[-8:]} is not connected to this relay"
            else:
                target_seen = next(filter(None, (_observed_host(str(a)) for a in connected[target].addrs)), None)
        if refusal is not None:
            self._quiet.log(log, logging.INFO, f"refused {source}", "no circuit %s -> %s: %s", source[-8:],
                            target[-8:], refusal)
            await channel.send(Error(code="busy", message=refusal).to_header())
            return False
        source_host = _observed_host(observed)
        punch_to = format_addr(source_host, msg.punch) if source_host and 0 < msg.punch <= 65535 else None
        target_host = target_seen if punch_to else None
        number, self._next = self._next, self._next + 1
        self.open[number] = (source, target)
        try:
            try:
                t_reader, t_writer = await asyncio.wait_for(_open_stream(self.p2p, target, None, FRAMES_PROTOCOL),
                                                            HELLO_TIMEOUT_S)
            except (TimeoutError, *_p2p_errors()) as e:
                await channel.send(Error(code="busy", message=f"{target[-8:]} did not take a stream: "
                                         f"{one_line(e)}").to_header())
                return False
            to_target = Channel(t_reader, t_writer, remote=target, limits=_SMALL)
            await to_target.send(Relayed(source=source, punch=punch_to if target_host else None).to_header())
            await channel.send(Joined(host=target_host).to_header())
            self.circuits_served += 1
            self._quiet.log(log, logging.INFO, f"open {source}", "circuit %d open: %s -> %s (%d open)%s", number,
                            source[-8:], target[-8:], len(self.open), ", hole punch asked" if target_host else "")
            await self._join(number, source, (reader, writer), (t_reader, t_writer))
            await to_target.close()
            await channel.close()
            return True
        finally:
            del self.open[number]

    async def _join(self, number: int, source: str, a: tuple[Any, Any], b: tuple[Any, Any]) -> None:
        bucket = self._buckets.setdefault(source, Bucket(self.limits.rate_bytes_s, self.clock))
        moved = [0, 0]
        began = self.clock()

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
            while data := await reader.read(CHUNK):
                await bucket.take(len(data))
                writer.write(data)
                await writer.drain()
                moved[i] += len(data)
                self.relayed_bytes += len(data)

        pumps = [asyncio.ensure_future(pump(a[0], b[1], 0)), asyncio.ensure_future(pump(b[0], a[1], 1))]
        done, pending = await asyncio.wait(pumps, timeout=self.limits.max_duration_s,
                                           return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        why = "duration limit" if not done else "closed"
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                why = one_line(task.exception())
        if len(self._buckets) > 4 * self.limits.max_circuits:  # forget the buckets of peers long gone
            active = {s for s, _ in self.open.values()}
            self._buckets = {k: v for k, v in self._buckets.items() if k in active}
        self._quiet.log(log, logging.INFO, f"ended {source}", "circuit %d ended (%s) after %.1f s: %d bytes up, %d down",
                        number, why, self.clock() - began, moved[0], moved[1])

    def describe(self) -> str:
        rate = f"{self.limits.rate_bytes_s * 8 / 1e6:g} Mbit/s per peer" if self.limits.rate_bytes_s else "no rate cap"
        return (f"relaying for peers behind NATs: at most {self.limits.max_circuits} circuits, "
                f"{self.limits.max_per_peer} per peer, {rate}, {self.limits.max_duration_s:g} s each")
