"""The client's view of the swarm (SwarmCore) and its event-loop thread (SwarmClient).

SwarmCore is the async part: DHT reads, route planning, one PeerLink per peer (with its measured round trip),
the failure history and the open sessions shared by the client's sessions (the planner counts them as this
client's load). Discovery, the connector, the clock, the sleep of busy waits and the random generator are
injected, so the sim tier runs real sessions over an in-memory network on a fake clock. SwarmClient adds what the synchronous public API needs: the client's
one asyncio loop in a background thread, with every public call handing a coroutine to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import torch

from routing.codecs import AUTO
from routing.config import ClientConfig
from routing.failover import FailureHistory, FailureKind, HopFailure, avoided, busy_pause_s
from routing.link import PeerLink
from routing.planner import Hop, Route, plan_route, prefer_dtype
from routing.session import InferenceSession
from routing.trust import (
    MEASURE_STEPS,
    PLAN_FACTOR,
    REMEASURE_AFTER_S,
    effective,
    lies,
    measured_throughput,
    proof_key,
    to_probe,
)
from routing.verify import AuditStats
from swarm.errors import (
    ConfigError,
    HopFailedError,
    MolinkError,
    RoutingError,
    SwarmBusyError,
    TransportError,
)
from swarm.net.circuits import Dialer
from swarm.net.probe import PADDING, bandwidth_bps, to_mbit
from swarm.net.protocol import Close, Open, Ping, Pong, Result, Step, check_pong, new_secret
from swarm.net.records import PeerRecord
from swarm.net.ways import DIRECT
from swarm.net.wire import CODECS, tensor_to_wire

log = logging.getLogger("molink.client")
T = TypeVar("T")


Connector = Callable[[str], Awaitable[Any]]  # address -> a connected Channel


WAIT_NOTE_EVERY_S = 5.0  # while waiting for a route, a log line this often


class SwarmCore:
    def __init__(self, model_key: str, num_layers: int, discovery: Any, config: ClientConfig | None = None,
                 *, hidden_size: int = 0, connect: Connector | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        self.model_key = model_key
        self.num_layers = num_layers
        self.hidden_size = hidden_size  # 0: peers are not measured before use (their claims are planned with)
        self.discovery = discovery
        self.config = config or ClientConfig()
        self.clock = clock
        self.sleep = sleep  # waits for busy peers go through it (the sim tier advances a fake clock)
        self.rng = rng or random.Random()  # draws among near-equal routes and jitters busy waits
        # TCP for HOST:PORT, this client's libp2p node for a way through a relay (swarm/net/ways.py)
        self._connect = connect or Dialer(getattr(discovery, "p2p", None), timeout=self.config.connect_timeout_s,
                                           punch=self.config.hole_punching)
        if self.config.wire_codec not in (*CODECS, AUTO):
            raise ConfigError(f"wire_codec {self.config.wire_codec!r} is not one of {', '.join((*CODECS, AUTO))}")
        self.codecs: dict[str, frozenset[str]] = {}  # peer id -> the tensor codecs its proof's Pong listed
        self._probes: set[asyncio.Future[None]] = set()  # bandwidth probes running in the background
        self._ways: dict[str, tuple[str, ...]] = {}  # a peer's first way -> all its ways, from its last record
        self._links: dict[str, PeerLink] = {}
        self._connecting: dict[str, asyncio.Future[PeerLink]] = {}
        self._reading: asyncio.Future[list[PeerRecord]] | None = None
        self.failures = FailureHistory()  # shared by this client's sessions: a dead peer is avoided by all
        self.known: list[PeerRecord] = []  # the last records read from the DHT whose peers proved who they are
        # (peer id, first layer, address) of the peers that proved who they are to this client (routing/trust.py)
        self.proven: set[tuple[str, int, str]] = set()
        self.measured: dict[tuple[str, int], float] = {}  # (peer id, first layer) -> tokens/s this client timed
        self.banned: set[str] = set()  # peers caught lying (throughput, outputs): never used again
        self.audits = AuditStats()  # what spot checks of outputs did and cost (routing/verify.py)
        self.stats: Counter[str] = Counter()  # failovers (a hop replaced) and reroutes (a route reopened), for metrics
        self.sessions: set[InferenceSession] = set()  # open (or opening) sessions: this client's own load

    async def records(self) -> list[PeerRecord]:
        """The model's live records from the DHT. Callers that ask while a read is in flight share it, so
        sessions opened together (the rows of a padded batch) cost one DHT lookup, not one each."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read_records())
        return await asyncio.shield(self._reading)

    async def _read_records(self) -> list[PeerRecord]:
        found = await self.discovery.read(self.model_key)
        if not found:  # maybe cut off (a restarted bootstrap, a lost link): redial the initial peers, read again
            await self.discovery.rejoin()
            found = await self.discovery.read(self.model_key)
        listed = {r.peer_id for r in found}
        self._ways.update((r.addrs[0], r.addrs) for r in found if len(r.addrs) > 1)
        unlisted = [r for r in self.known if r.peer_id not in listed]
        if unlisted:
            # on a busy machine the DHT can lose records (even all of them) while the peers serve on: keep to
            # the peers last seen that still answer a ping as the same peer with the same span
            answering = await self._still_answering(unlisted)
            if answering:
                log.warning("the DHT returned %s; using the %d peer(s) last seen that still answer",
                            "no peer records" if not found else f"no records of {len(unlisted)} peer(s) seen before",
                            len(answering))
            found = [*found, *answering]
        self.known = prefer_dtype(await self._vetted(found), self.config.peer_dtype, self.num_layers)
        return self.known

    async def _vetted(self, records: list[PeerRecord]) -> list[PeerRecord]:
        """The records whose peers have proved who they are (a few new ones are proved now; one that fails
        goes into back-off like any failed peer), banned peers left out (routing/trust.py)."""
        avoid = avoided(self.failures, self.clock(), self.config.backoff)
        probing = to_probe(records, self.proven, avoid, self.rng)
        results = await asyncio.gather(*(self._proves(r) for r in probing))
        for record, why in zip(probing, results, strict=True):
            if why is None:
                self.proven.add(proof_key(record))
            else:
                log.info("peer %s of the records is not used: %s", record.peer_id[:16], why)
                self.failures = self.failures.record(record.peer_id, self.clock())
        return [r for r in records if proof_key(r) in self.proven and r.peer_id not in self.banned]

    async def _proves(self, record: PeerRecord) -> str | None:
        """Why the peer at ``record``'s first address did not prove it is the record's peer; None if it did."""
        nonce = new_secret()
        try:
            link = await asyncio.wait_for(self.link(record.addrs[0]), self.config.connect_timeout_s)
            pong = await link.request(Ping(nonce=nonce), self.config.probe_timeout_s)
        except (MolinkError, asyncio.TimeoutError) as e:
            return f"{record.addrs[0]} did not answer: {e}"
        why = check_pong(pong, peer_id=record.peer_id, model=record.model, start=record.start, nonce=nonce)
        if why is None and isinstance(pong, Pong):  # what it decodes: a session sends it no other codec
            self.codecs[record.peer_id] = frozenset(c for c in pong.codecs or () if c in CODECS)
            if link.bps is None:  # measured in the background: planning does not wait for it
                probe = asyncio.ensure_future(self._probe(link))
                self._probes.add(probe)
                probe.add_done_callback(self._probes.discard)
        return why

    async def _probe(self, link: PeerLink) -> None:
        """The link's bandwidth toward the peer (``swarm/net/probe.py``), left in ``link.bps``. The baseline is
        the least of the proof's round trip and a fresh small ping's: a round trip that happened to wait (a busy
        machine, a queue) would make the padding look faster than it crossed."""
        try:
            began = self.clock()
            await link.request(Ping(), self.config.probe_timeout_s)
            small = min(self.clock() - began, link.rtt_s or float("inf"))
            began = self.clock()
            await link.request(Ping(), self.config.probe_timeout_s, PADDING)
        except MolinkError as e:
            log.debug("bandwidth probe to %s failed: %s", link.addr, e)
            return
        link.bps = bandwidth_bps(small, self.clock() - began)
        log.debug("link to %s: %.1f Mbit/s", link.addr, to_mbit(link.bps))

    async def _still_answering(self, records: Sequence[PeerRecord]) -> list[PeerRecord]:
        async def answers(record: PeerRecord) -> bool:
            try:
                link = await asyncio.wait_for(self.link(record.addrs[0]), self.config.probe_timeout_s)
                pong = await link.request(Ping(), self.config.ping_timeout_s)
            except (MolinkError, asyncio.TimeoutError):
                return False
            return isinstance(pong, Pong) and (pong.peer_id, pong.model, pong.start, pong.end) == (
                record.peer_id, record.model, record.start, record.end)

        alive = await asyncio.gather(*(answers(r) for r in records))
        return [r for r, ok in zip(records, alive, strict=True) if ok]

    def reached(self, addr: str) -> tuple[str, str] | None:
        """How this client's open link to the peer whose first way is ``addr`` was made (direct, punched or
        relayed, ``swarm/net/ways.py``) and where it goes; None without one."""
        link = self._links.get(addr)
        return None if link is None or link.closed else (link.channel.kind, link.channel.remote)

    def rtts(self) -> dict[str, float]:
        """Round trips measured so far, by peer address (links that have had an answer)."""
        return {addr: link.rtt_s for addr, link in self._links.items() if link.rtt_s is not None}

    def bandwidths(self) -> dict[str, float]:
        """Bytes/s toward each peer measured so far, by peer address."""
        return {addr: link.bps for addr, link in self._links.items() if link.bps is not None}

    def link_mbit(self, source: Hop | None, target: Hop | None) -> float | None:
        """Measured Mbit/s of the link ``source`` -> ``target`` (None for either end: this client): the
        client's own figure for its links (for the way back, the one toward that peer), the source peer's
        published one between peers; None when nobody measured it."""
        if source is None or target is None:
            peer = target if source is None else source
            bps = None if peer is None else self.bandwidths().get(peer.addr)
            return None if bps is None else bps * 8 / 1e6
        record = next((r for r in self.known if r.peer_id == source.peer_id), None)
        return None if record is None else record.mbits.get(target.peer_id)

    def link_bytes(self) -> dict[str, tuple[int, int]]:
        """(bytes sent, bytes received) on this client's open link to each peer, by address."""
        return {addr: (getattr(link.channel, "bytes_sent", 0), getattr(link.channel, "bytes_received", 0))
                for addr, link in self._links.items()}

    def own_load(self) -> Counter[str]:
        """Sessions this client has open (or is opening) on each peer, by peer id."""
        return Counter(hop.peer_id for session in self.sessions for hop in session.hops)

    def plan_from(self, records: Sequence[PeerRecord], start: int = 0, end: int | None = None,
                  avoid: Collection[str] = (), need_tokens: int = 0) -> Route:
        """plan_route over ``records`` with what this client knows: measured round trips, its own sessions,
        its random generator for near-equal routes."""
        return plan_route(effective(records, self.measured), self.num_layers, start=start, end=end,
                          avoid=set(avoid) | self.banned, rtt_s=self.rtts(), bps=self.bandwidths(),
                          step_bytes=self.hidden_size * 4,
                          own_load=self.own_load(), need_tokens=need_tokens, rng=self.rng,
                          tolerance=self.config.route_tolerance, model=self.model_key)

    async def replacement_route(self, start: int, end: int, avoid: Collection[str], need_tokens: int = 0) -> Route:
        """A route for layers [start, end) during failover: planned from the records already known when
        they suffice (a DHT read can stall while a node of the DHT hangs), else from fresh reads."""
        try:
            return self.plan_from(self.known, start, end, avoid, need_tokens)
        except RoutingError:
            return await self.wait_route(start, end, avoid, need_tokens=need_tokens)

    async def plan(self, start: int = 0, end: int | None = None, avoid: Collection[str] = (),
                   need_tokens: int = 0) -> Route:
        return self.plan_from(await self.records(), start, end, avoid, need_tokens)

    async def wait_route(self, start: int = 0, end: int | None = None, avoid: Collection[str] = (),
                         timeout_s: float | None = None, need_tokens: int = 0) -> Route:
        """Plan a route for layers [start, end), re-reading the DHT until one exists or the deadline passes
        (then raise why not)."""
        began = time.monotonic()
        deadline = began + (self.config.route_wait_s if timeout_s is None else timeout_s)
        said = began
        while True:
            try:
                return await self.plan(start, end, avoid, need_tokens)
            except RoutingError as e:
                now = time.monotonic()
                if now >= deadline:
                    raise
                if now - said >= WAIT_NOTE_EVERY_S:  # someone is waiting: say for what, now and then
                    said = now
                    log.info("waiting for the swarm to serve every layer (%.0f of %.0f s): %s", now - began,
                             deadline - began, e)
            await asyncio.sleep(0.2)

    async def link(self, addr: str) -> PeerLink:
        """The one connection to ``addr``; sessions that ask at the same time share one connect."""
        link = self._links.get(addr)
        if link is not None and not link.closed:
            return link
        pending = self._connecting.get(addr)
        if pending is None:
            pending = asyncio.ensure_future(self._new_link(addr))
            self._connecting[addr] = pending
            pending.add_done_callback(lambda _: self._connecting.pop(addr, None))
        return await asyncio.shield(pending)

    async def _new_link(self, addr: str) -> PeerLink:
        """A link to the peer whose first way is ``addr``, over the first of its ways that connects (a peer
        behind a NAT lists one way per relay: losing a relay moves its clients to the next)."""
        *others, last = self._ways.get(addr, (addr,))
        for way in others:
            try:
                channel = await self._connect(way)
                break
            except TransportError as e:
                log.info("%s: %s; trying the peer's next way", way, e)
        else:
            channel = await self._connect(last)  # its error is the caller's
        if channel.kind != DIRECT:
            log.info("%s: connected %s (%s)", addr[-24:], channel.kind, channel.remote)
        link = PeerLink(channel, addr, clock=self.clock)
        self._links[addr] = link
        return link

    async def open_route(self, opener: Callable[[Route], Awaitable[T]], *, start: int = 0, end: int | None = None,
                         avoid: Collection[str] = (), need_tokens: int = 0, replacement: bool = False,
                         max_failures: int | None = None) -> tuple[Route, T]:
        """Plan a route for layers [start, end) and open it with ``opener``, which raises HopFailedError
        naming the hops that could not take it.

        A hop that answers busy (full) is planned around for this call only, never put in back-off. When
        every route needs one of the busy peers, wait (``busy_pause_s``, doubling up to ``busy_max_pause_s``,
        jittered) and ask them again, ``busy_wait_s`` in total; then raise SwarmBusyError naming them. A hop
        that fails otherwise (a dead peer with a stale record) is put in back-off and planned around; after
        ``max_failures`` such rounds (default ``max_recoveries``) its HopFailedError is raised.
        ``replacement``: plan from the records already known first (failover).
        """
        end = self.num_layers if end is None else end
        limit = self.config.max_recoveries if max_failures is None else max_failures
        busy: dict[str, str] = {}     # peer id -> address: refused this round, planned around until the next pause
        refused: dict[str, str] = {}  # every peer that answered busy during this call, for the error
        failures, pauses, waited = 0, 0, 0.0
        while True:
            now_avoid = avoided(self.failures, self.clock(), self.config.backoff) | set(avoid)
            route = await self._route_for_open(start, end, now_avoid, busy, need_tokens, replacement)
            if route is None:  # the layers are served, but only through peers that just said busy
                pause = busy_pause_s(pauses, waited, first_s=self.config.busy_pause_s,
                                     max_s=self.config.busy_max_pause_s, total_s=self.config.busy_wait_s,
                                     jitter=self.rng.random())
                if pause is None:
                    raise SwarmBusyError(refused, waited, (start, end))
                log.info("every route for layers %d:%d needs a busy peer (%s): asking again in %.2f s",
                         start, end, ", ".join(sorted(busy.values())), pause)
                await self.sleep(pause)
                waited += pause
                pauses += 1
                busy.clear()
                continue
            if await self._measure_new(route):
                continue  # what was measured changes the plan: plan again
            try:
                return route, await opener(route)
            except HopFailedError as e:
                hops = [(f, route.hops[f.hop_index]) for f in e.failures if isinstance(f, HopFailure)]
                for failure, hop in hops:
                    if failure.kind is FailureKind.BUSY:
                        busy[hop.peer_id] = refused[hop.peer_id] = hop.addr
                    else:
                        self.failures = self.failures.record(hop.peer_id, self.clock())
                if not hops or any(f.kind is not FailureKind.BUSY for f, _ in hops):
                    failures += 1
                    if failures > limit:
                        raise
                    log.warning("could not open a session on %s: %s; planning around it", route.describe(), e)
                else:
                    log.info("busy: %s; planning around it", ", ".join(h.addr for _, h in hops))

    async def _route_for_open(self, start: int, end: int, avoid: frozenset[str], busy: Mapping[str, str],
                              need_tokens: int, replacement: bool) -> Route | None:
        """A route avoiding ``avoid`` and the ``busy`` peers; None when only the busy peers' routes exist.
        With no busy peers (or layers missing whatever they say) this is the usual planning, which waits up
        to ``route_wait_s`` for the swarm to cover the layers."""
        if busy:
            try:
                return self.plan_from(self.known, start, end, avoid | busy.keys(), need_tokens)
            except RoutingError:
                pass
            if not replacement:
                try:
                    return await self.plan(start, end, avoid | busy.keys(), need_tokens)
                except RoutingError:
                    pass
            try:
                self.plan_from(self.known, start, end, avoid, need_tokens)
                return None
            except RoutingError:
                pass  # layers missing whatever the busy peers do: wait for the swarm as always
        if replacement:
            return await self.replacement_route(start, end, avoid, need_tokens)
        return await self.wait_route(start, end, avoid, need_tokens=need_tokens)

    async def _measure_new(self, route: Route) -> bool:
        """Time the hops of ``route`` this client has not measured yet (routing/trust.py); True when that
        changes what the route was planned with (a peer slower than it claims, or one caught lying)."""
        if not self.hidden_size:
            return False
        # a peer's claim is for its whole span: it is timed over all of it, whatever part the route runs
        spans = {r.peer_id: (r.start, r.end) for r in self.known}
        whole = [Hop(h.peer_id, h.addr, *spans.get(h.peer_id, (h.start, h.end))) for h in route.hops]
        new = [h for h in whole if (h.peer_id, h.start) not in self.measured]
        if not new:
            return False
        claims = {(r.peer_id, r.start): r.throughput for r in self.known}
        changed = False
        for hop, speed in zip(new, await asyncio.gather(*(self._measure(h) for h in new)), strict=True):
            if speed is None:  # it did not take a short session: the open that follows decides
                continue
            claimed = claims.get((hop.peer_id, hop.start), 0.0)
            if lies(claimed, speed):
                # a busy moment (its machine, this one, the link) can slow one timing a thousandfold; a liar
                # is as slow the second time, so the faster of two timings a moment apart decides
                log.info("peer %s (%s) claims %.4g tokens/s but ran %.4g: timing it again", hop.peer_id[:16],
                         hop.addr, claimed, speed)
                await asyncio.sleep(REMEASURE_AFTER_S)
                speed = max(speed, await self._measure(hop) or 0.0)
            self.measured[(hop.peer_id, hop.start)] = speed
            if lies(claimed, speed):
                self.banned.add(hop.peer_id)
                log.warning("peer %s (%s) claims %.4g tokens/s but ran %.4g at best of two timings: banned as a liar",
                            hop.peer_id[:16], hop.addr, claimed, speed)
            changed = changed or claimed > PLAN_FACTOR * speed
        return changed

    async def _measure(self, hop: Hop) -> float | None:
        """Tokens/s through ``hop``'s peer alone, timed over a short session of one-token steps; None when the
        peer would not run one (busy, gone)."""
        sid, secret = new_secret(), new_secret()
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        timeout = self.config.probe_timeout_s
        x = torch.randn(1, 1, self.hidden_size, generator=torch.Generator().manual_seed(self.rng.randrange(2**31)))
        meta, body = tensor_to_wire(x * 0.02)
        try:
            link = await asyncio.wait_for(self.link(hop.addr), self.config.connect_timeout_s)
            link.inboxes[sid] = inbox
            await link.request(Open(session=sid, secret=secret, start=hop.start, end=hop.end,
                                    max_length=MEASURE_STEPS + 1, batch=1), timeout)
        except (MolinkError, asyncio.TimeoutError) as e:
            log.info("could not measure %s: %s", hop.addr, e)
            return None
        times = []
        try:
            for i in range(MEASURE_STEPS + 1):
                sent = self.clock()
                await link.send(Step(session=sid, secret=secret, layer=hop.start, step=i, position=i, tensor=meta),
                                body)
                _, item = await asyncio.wait_for(inbox.get(), timeout)
                if not isinstance(getattr(item, "msg", None), Result):
                    log.info("measuring %s: answered %r", hop.addr, item)
                    return None
                if i:  # the first step warms the peer's caches up
                    times.append(self.clock() - sent)
        except (MolinkError, asyncio.TimeoutError) as e:
            log.info("measuring %s failed: %s", hop.addr, e)
            return None
        finally:
            link.inboxes.pop(sid, None)
            with contextlib.suppress(MolinkError, asyncio.TimeoutError):
                await link.request(Close(session=sid, secret=secret), timeout)
        return measured_throughput(times)

    async def open_session(self, max_length: int, batch: int = 1) -> InferenceSession:
        """A session on the cheapest live route (see ``open_route``: a dead hop is put in back-off and the
        route planned again; a busy one is planned around, or waited for)."""

        async def opener(route: Route) -> InferenceSession:
            session = InferenceSession(self, route, max_length=max_length, batch=batch)
            await session.open()
            return session

        _, session = await self.open_route(opener, need_tokens=max_length * batch)
        return session

    async def aclose(self) -> None:
        for probe in list(self._probes):
            probe.cancel()
        if self.audits.checks:
            log.info("%s", self.audits.describe())
        for link in self._links.values():
            await link.close()
        self._links.clear()
        await self.discovery.shutdown()


class SwarmClient(SwarmCore):
    """A SwarmCore on its own event-loop thread, joined to the swarm through a hivemind DHT node."""

    def __init__(self, model_key: str, num_layers: int, initial_peers: Sequence[str],
                 config: ClientConfig | None = None, hidden_size: int = 0) -> None:
        from swarm.net.dht import HivemindDiscovery

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="molink-client", daemon=True)
        self._thread.start()
        config = config or ClientConfig()
        try:
            discovery = self.run(HivemindDiscovery.create(
                list(initial_peers), listen=config.dht_listen, client_mode=True))
        except BaseException:
            self._stop_loop()
            raise
        super().__init__(model_key, num_layers, discovery, config, hidden_size=hidden_size)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the client's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if not self._loop.is_running():
            return
        try:
            self.run(self._aclose())
        finally:
            self._stop_loop()

    async def _aclose(self) -> None:
        await self.aclose()
        current = asyncio.current_task()
        leftovers = [t for t in asyncio.all_tasks() if t is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
