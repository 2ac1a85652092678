"""The peer's data server: a thin shell that turns messages into engine work and answers.

Message flow (``swarm/net/protocol.py`` defines every message and error code): a client opens a session on
every hop of its route over its own connection to that hop, then sends each step to the first hop only. A hop
queues the step in its engine (``peer/engine.py``: batched forward passes over many sessions), and pushes the
output straight to the next hop (``peer/relay.py``); the last hop sends the Result to the client over the
connection the session was opened on. Errors about a session always go to that client connection, so the
client learns which hop failed without any hop relaying for another.

What a request may ask is decided by pure checks (``peer/sessions.py``: check_open, check_step,
check_replay), memory by ``peer/admission.py``. A Rebind (failover) makes a hop push the stored outputs of
earlier steps to its new next hop as one replay Step, which rebuilds that hop's cache and is pushed on until
the hop that already holds those positions. A draining peer sends Draining to each session's client, so
clients move before it leaves. Anything malformed gets an Error and the peer keeps serving; nothing from the
network is unpickled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from peer.admission import Busy, KVBudget, Reservation, admit, free_tokens
from peer.config import PeerConfig
from peer.engine import Engine, measure_throughput
from peer.metrics import PeerMetrics
from peer.nexthop import Directory, NextHop, dial
from peer.placement import move_for, next_check_s
from peer.rates import LiveRates, ThroughputCache
from peer.relay import Relay
from peer.scheduler import Budget
from peer.sessions import (
    Session,
    StepAction,
    check_addr,
    check_next_peer,
    check_open,
    check_reorder,
    check_replay,
    check_secret,
    check_step,
    expired,
)
from swarm.errors import FrameTooLargeError, ProtocolError, SessionError, TransportError
from swarm.net.addresses import advertised_hosts
from swarm.net.loglimit import LogLimiter
from swarm.net.probe import to_mbit
from swarm.net.protocol import (
    FATAL_CODES,
    Close,
    Code,
    Draining,
    Error,
    Message,
    Ok,
    Open,
    Ping,
    Pong,
    Rebind,
    Reorder,
    Replayed,
    Result,
    Step,
    parse,
    secret_matches,
    session_tag,
)
from swarm.net.records import MAX_ADDRS, MAX_LINKS, MAX_STR, Identity, PeerRecord, PeerState
from swarm.net.transport import (
    Channel,
    Gate,
    format_addr,
    open_channel,
    parse_addr,
    remote_host,
    start_server,
)
from swarm.net.ways import DIRECT, RELAYED, is_relayed, parse_relayed, prefer_connected
from swarm.net.wire import CODECS, Frame, Limits, tensor_from_wire, tensor_to_wire

log = logging.getLogger("molink.peer")

REPLAY_CHUNK_TOKENS = 128  # a rebind's replay goes to the new next hop in chunks of this many positions
MAX_REBINDS = 16  # failovers of one session's next hop: each re-sends the session's whole history
MAX_QUEUED_STEPS = 16  # steps of one session waiting for its lock (a client sends one and waits for its result,
# or the chunks of one prefill at once: routing/prefill.py sends at most 8)


class PeerServer:
    """Serves one span of one model. Construct, then ``await start()``; ``await stop()`` to leave."""

    def __init__(
        self,
        *,
        config: PeerConfig,
        span: Any,                      # models.span.SpanModel (duck-typed so tests can pass a fake)
        identity: Identity,
        model_key: str,
        discovery: Any = None,          # swarm.net.dht.Discovery; None -> not announced (tests)
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,  # DHT time: what a record's signed expiry is in
        limits: Limits = Limits(),
        version: str = "0",
        connect: Callable[[str], Any] | None = None,  # address -> awaitable Channel (injected by the sim tier)
        listener: socket.socket | None = None,  # the data port, bound before the span was loaded
        num_layers: int = 0,            # the whole model's layer count, published for listings
        model_name: str = "",           # what the operator called the model, published as a hint
        kv_budget: KVBudget | None = None,  # memory for sessions; None -> config.kv_reserve_tokens, counted in tokens
        throughput_cache: ThroughputCache | None = None,  # where the start-up figure is kept (peer/rates.py)
    ) -> None:
        self.config = config
        self.span = span
        self.identity = identity
        self.model_key = model_key
        self.discovery = discovery
        self.clock = clock
        self.wall_clock = wall_clock
        self.limits = limits
        self.version = version
        self.sessions: dict[str, Session] = {}
        self.throughput = 0.0
        self.subspans = False  # whether sessions may ask for part of the span (decided in start: check_subspans)
        self.live = LiveRates(span_layers=max(getattr(span, "end", 1) - getattr(span, "start", 0), 1))
        self.throughput_cache = throughput_cache  # None: measure at every start, remember nothing        self.addrs: tuple[str, ...] = ()  # every published way to this peer (swarm/net/ways.py), the preferred first
        self.reach = DIRECT  # how others reach it: DIRECT, or RELAYED (behind a NAT, through relays)
        self.bound_port = 0  # the data port, once started
        self.num_layers = num_layers
        self.model_name = model_name
        self._listener = listener
        self._dht_alone = False  # whether the last heartbeat found no other DHT node
        self.state = PeerState.JOINING
        self._announced_span: tuple[int, int] | None = None  # the span a moving peer is taking (its record's)
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.base_events.Server | None = None
        self._idle = asyncio.Event()  # set whenever no session is open (draining waits on it)
        self._idle.set()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="molink-compute")
        self.kv_budget = kv_budget or KVBudget(total_bytes=config.kv_reserve_tokens, kv_bytes_per_token=1,
                                               history_bytes_per_token=0)
        self._reservations: dict[str, Reservation] = {}
        self._quiet = LogLimiter(clock=clock)  # what strangers can trigger is logged at a bounded rate
        self.engine = Engine(span, budget=Budget(max_rows=config.max_batch, max_wait_s=config.batch_wait_ms / 1000),
                             inline_tokens=config.inline_step_tokens, run_compute=self._run_compute,
                             open_rows=lambda: sum(s.batch for s in self.sessions.values()), clock=clock,
                             on_pass=self._observe_pass)
        self._connect = connect or (lambda addr: open_channel(addr, limits=self.limits))
        self.gate = Gate(limits)  # connection caps, shared by the TCP port and streams relays join to this peer
        # the peers of this model, from the DHT: where a session's next hop (named by peer id) is
        self.directory = Directory(None if discovery is None else lambda: discovery.read(model_key), clock=clock)
        self.relay = Relay(self._dial_next, on_error=self._next_hop_refused, spawn=self._spawn)
        self.inbound: set[Channel] = set()  # connections being served (metrics read their byte counts)
        self.inbound_bytes = [0, 0]  # bytes (sent, received) on inbound connections that have ended
        self.metrics = PeerMetrics(self)

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> str:
        """Measure throughput (or take the cached figure), open the data port; returns the address to publish."""
        self.throughput = self.config.throughput or await self.start_throughput()
        await self.check_subspans()
        host, port = parse_addr(self.config.listen)
        self._server = await start_server(self.serve, host, port, limits=self.limits, sock=self._listener,
                                          gate=self.gate)
        bound = self._server.sockets[0].getsockname()
        self.bound_port = int(bound[1])
        if self.config.announce_addr:
            self.addrs = (self.config.announce_addr,)
        else:
            # a record holds at most MAX_ADDRS addresses: the preferred ones come first
            self.addrs = tuple(format_addr(h, bound[1]) for h in advertised_hosts(host))[:MAX_ADDRS]
        self.state = PeerState.ONLINE
        return self.addr

    async def start_throughput(self) -> float:
        """The span's batch-1 decode tokens/s before any step was served: the figure this device, model and
        dtype had last time (peer/rates.py), else measured now and remembered."""
        layers = self.live.span_layers
        cache, key = self.throughput_cache, self._cache_key()
        cached = cache.get(key) if cache is not None else None
        if cached is not None:
            log.info("throughput from %s: %.1f tok/s through %d layers (measured on this device before)",
                     cache.path, 1.0 / (cached * layers), layers)
            await self._run_compute(measure_throughput, self.span, 0)  # one warm-up pass: weights paged in now,
            return 1.0 / (cached * layers)                             # not during the first session's step
        figure = await self._run_compute(measure_throughput, self.span)
        if cache is not None:
            cache.put(key, 1.0 / (figure * layers))
        return figure

    async def check_subspans(self) -> None:
        """Offer sub-span sessions when the span's views are exact (models/span.py: check_views)."""
        check = getattr(self.span, "check_views", None)
        self.subspans = bool(self.config.subspans and check is not None and await self._run_compute(check))
        if self.subspans:
            log.info("sub-span routes: sessions may use any part of layers %d:%d", self.span.start, self.span.end)
        elif self.config.subspans and check is not None:
            log.info("sub-span routes: not for this span (a single layer, or a family whose cache spans layers); "
                     "sessions use all of layers %d:%d", self.span.start, self.span.end)

    def _cache_key(self) -> str:
        return ThroughputCache.key(self.model_key, self.config.device, self.config.dtype)

    def _observe_pass(self, **figures: Any) -> None:
        """Smooth one forward pass into the live figures; the announced throughput follows unless fixed by
        --throughput."""
        self.live.observe(**figures)
        live = self.live.throughput()
        if live is not None and self.config.throughput is None:
            self.throughput = live

    @property
    def addr(self) -> str:
        """The preferred published address ("" before start)."""
        return self.addrs[0] if self.addrs else ""

    async def stop(self) -> None:
        per = self.live.seconds_per_layer()
        if per is not None and self.throughput_cache is not None and self.config.throughput is None:
            self.throughput_cache.put(self._cache_key(), per)  # the next start begins from the live figure
        if self.discovery is not None:
            try:
                await self.discovery.withdraw(self.record(PeerState.OFFLINE), ttl=self.config.ttl_s)
            except Exception as e:  # leaving must not fail: the record expires on its own anyway
                log.warning("could not withdraw the DHT record: %s", e)
        if self._server is not None:
            self._server.close()
        self.engine.close()
        for task in list(self._tasks):
            task.cancel()
        await self.relay.close()
        self.sessions.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def drain(self, timeout_s: float, state: PeerState = PeerState.DRAINING) -> None:
        """Graceful exit (or move), first half: announce ``state``, ask every session's client to move, and
        wait (at most timeout_s) until they have; new sessions are refused meanwhile."""
        self.state = state
        if self.discovery is not None:
            try:
                await self.discovery.announce(self.record(), ttl=self.config.ttl_s)
            except Exception as e:  # clients still learn from the notices below
                log.warning("could not announce draining: %s", e)
        for sid, session in list(self.sessions.items()):
            await self._send_quietly(session.client, Draining(session=sid))
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            log.info("drained: every session moved or closed")
        except asyncio.TimeoutError:
            log.warning("drain timeout (%.0f s): %d sessions did not move; they fail over from their next step",
                        timeout_s, len(self.sessions))

    async def move(self, start: int, end: int, load: Callable[[int, int], Awaitable[Any]]) -> None:
        """Serve layers [start, end) instead of the current span (rebalancing, peer/placement.py).

        The peer announces itself JOINING at the new span at once (placement counts it there, clients send it
        nothing new), asks its sessions' clients to move as in a failover and waits for them (at most the
        drain timeout), frees the old span, loads the new one with ``load(start, end)`` and announces itself
        ONLINE. Its per-layer speed carries over, so the announced throughput is the new span's at once."""
        old = (self.span.start, self.span.end)
        log.info("rebalancing: moving from layers %d:%d to %d:%d", *old, start, end)
        self._announced_span = (start, end)
        await self.drain(self.config.drain_timeout_s, state=PeerState.JOINING)
        for sid in list(self.sessions):  # whatever did not move in time fails over from its next step
            self._drop(sid)
        self.span = self.engine.span = _Vacant(self.span)  # the old weights go before the new ones come
        try:
            span = await load(start, end)
        except Exception:  # e.g. the shards of the new layers could not be read: serve the old span again
            log.exception("loading layers %d:%d failed; loading layers %d:%d again", start, end, *old)
            start, end = old
            self._announced_span = old
            span = await load(start, end)  # if even this fails, the peer cannot serve: the error ends it
        await self._run_compute(measure_throughput, span, 0)  # a warm-up pass pages the new weights in
        self.span = self.engine.span = span
        await self.check_subspans()
        self.live.span_layers = end - start
        live = self.live.throughput()
        if live is not None and self.config.throughput is None:
            self.throughput = live
        elif self.config.throughput is None:
            self.throughput = self.throughput * (old[1] - old[0]) / (end - start)
        self._announced_span = None
        self.state = PeerState.ONLINE
        if self.discovery is not None:
            await self.discovery.announce(self.record(), ttl=self.config.ttl_s)
        log.info("now serving layers %d:%d at %.1f tok/s", start, end, self.throughput)

    async def rebalance_forever(self, load: Callable[[int, int], Awaitable[Any]], rng: random.Random,
                                on_moved: Callable[[PeerServer], None] | None = None) -> None:
        """Every ``rebalance_every_s`` (jittered), move where the swarm needs this peer more, when placement
        says the gain is clear (peer/placement.py: move_for); never again within 2.5 periods of a move.
        ``on_moved(self)`` is called after each move."""
        every = self.config.rebalance_every_s
        last_move = -math.inf
        while True:
            await asyncio.sleep(next_check_s(rng, every))
            if self.state is not PeerState.ONLINE or self.clock() - last_move < 2.5 * every:
                continue
            try:
                records = await self.discovery.read(self.model_key)
            except Exception as e:  # a DHT hiccup: check again next time
                log.debug("rebalancing check skipped: %s", e)
                continue
            target = move_for(records, self.identity.peer_id, self.num_layers)
            if target is not None:
                try:
                    await self.move(*target, load)
                except Exception:  # not even the old span could be loaded again: nothing left to serve
                    log.critical("this peer has no span loaded and stops; restart it")
                    self.state = PeerState.OFFLINE
                    if self.discovery is not None:
                        with contextlib.suppress(Exception):
                            await self.discovery.withdraw(self.record(PeerState.OFFLINE), ttl=self.config.ttl_s)
                    raise  # the process shell (peer/main.py) stops the peer
                last_move = self.clock()
                if on_moved is not None:
                    on_moved(self)

    def free_cache_tokens(self) -> int:
        """KV tokens not promised to an open session (each reserves max_length x batch, and its replay
        history when it pushes to a next hop)."""
        return free_tokens(self.kv_budget, list(self._reservations.values()))

    def record(self, state: PeerState | None = None) -> PeerRecord:
        pushes = self.relay.links(MAX_LINKS)
        start, end = self._announced_span or (self.span.start, self.span.end)
        rec = PeerRecord(
            peer_id=self.identity.peer_id,
            model=self.model_key,
            addrs=self.addrs,
            start=start,
            end=end,
            state=state or self.state,
            throughput=float(self.throughput),
            net_throughput=100.0,
            free_cache_tokens=self.free_cache_tokens(),
            load=len(self.sessions),
            queue=self.engine.queue_depth,
            dtype=str(self.span.dtype).removeprefix("torch."),
            version=self.version,
            rtts={p: c.rtt_s for p, c in pushes.items() if c.rtt_s is not None},  # the planner costs edges by them
            links={p: c.kind for p, c in pushes.items()},
            mbits={p: to_mbit(c.bps) for p, c in pushes.items() if c.bps is not None},
            rates=self.live.rates(),
            subspans=self.subspans,
            num_layers=self.num_layers,
            model_name=self.model_name[:MAX_STR],
            expires_at=self.wall_clock() + self.config.ttl_s,  # the DHT node re-signs it to its own store time
        )
        return self.identity.sign_record(rec)

    async def heartbeat_forever(self) -> None:
        """Refresh the DHT record and expire idle sessions, every announce interval.

        Beats keep to a fixed period: a slow announce (a busy machine, a slow DHT node) shortens the wait
        for the next one instead of adding to it, so a late beat does not let the record expire; a beat that
        comes later than the record's life anyway says so in the log."""
        interval = self.config.announce_interval_s
        last_ok: float | None = None
        while True:
            began = self.clock()
            self.expire_sessions()
            if self.discovery is not None:
                if last_ok is not None and began - last_ok > self.config.ttl_s:
                    log.warning("the last announcement was %.0f s ago, longer than a record lives (%.0f s): is "
                                "this machine overloaded? Clients that still know this peer keep using it while "
                                "it answers pings", began - last_ok, self.config.ttl_s)
                try:
                    # together: redialling a bootstrap that is down can take seconds, the record must not wait
                    await asyncio.gather(self.check_dht_neighbours(),
                                         self.discovery.announce(self.record(), ttl=self.config.ttl_s))
                    last_ok = self.clock()
                except Exception as e:  # a DHT hiccup must not stop serving; the next beat retries
                    log.warning("announce failed (will retry in %.0f s): %s", interval, e)
            await asyncio.sleep(max(0.0, began + interval - self.clock()))

    async def check_dht_neighbours(self) -> None:
        """Redial lost initial peers (a restarted bootstrap) and say so when this peer cannot see the swarm,
        once when it happens and once when it ends, not on every beat."""
        neighbours = await self.discovery.rejoin()
        if self.reach == RELAYED and hasattr(self.discovery, "connected"):
            ordered = prefer_connected(self.addrs, await self.discovery.connected())
            if ordered != self.addrs:
                log.info("relays this peer is connected to come first now: %s", ", ".join(
                    parse_relayed(w).relay_maddr for w in ordered if is_relayed(w)))
                self.addrs = ordered
        alone = neighbours == 0 and bool(self.config.initial_peers)
        if alone and not self._dht_alone:
            log.warning("this peer cannot see the swarm: no other DHT node answers (initial peers %s down or "
                        "unreachable?); clients cannot find it until one does. Retrying every %.0f s.",
                        ", ".join(self.config.initial_peers), self.config.announce_interval_s)
        elif self._dht_alone and not alone:
            log.info("the swarm is visible again: %d DHT node(s) known", neighbours)
        self._dht_alone = alone

    def expire_sessions(self) -> None:
        for sid in expired(self.sessions, self.clock(), self.config.session_timeout_s):
            log.info("session %s idle for over %.0f s: closed", session_tag(sid), self.config.session_timeout_s)
            self._drop(sid)

    # ---- connections -----------------------------------------------------------------------------------

    async def serve(self, channel: Channel) -> None:
        """Serve one connection (from the TCP port, or a stream a relay joined) until it ends."""
        self.inbound.add(channel)
        try:
            while True:
                try:
                    frame = await channel.recv()
                except (FrameTooLargeError, ProtocolError) as e:
                    self._quiet.log(log, logging.WARNING, f"bad frame {remote_host(channel.remote)}",
                                    "bad frame from %s: %s", channel.remote, e)
                    await self._send_quietly(channel, self._error(e.code, str(e)))
                    if isinstance(e, FrameTooLargeError) or e.code in FATAL_CODES:
                        return
                    continue
                if frame is None:
                    return
                await self._dispatch(channel, frame)
        except TransportError as e:
            log.debug("connection from %s lost: %s", channel.remote, e)
        finally:
            self.inbound.discard(channel)
            self.inbound_bytes[0] += getattr(channel, "bytes_sent", 0)
            self.inbound_bytes[1] += getattr(channel, "bytes_received", 0)
            for sid in [sid for sid, s in self.sessions.items() if s.client is channel]:
                log.info("session %s closed: its client disconnected", session_tag(sid))
                self._drop(sid)

    async def _dispatch(self, channel: Channel, frame: Frame) -> None:
        raw_id = frame.header.get("id")
        req_id = raw_id if type(raw_id) is int else None  # so a malformed request's error finds its waiter
        try:
            msg = parse(frame.header)
            if isinstance(msg, Step):
                self._spawn(self._on_step(channel, msg, frame.body))
            elif isinstance(msg, Open):
                await self._on_open(channel, msg)
            elif isinstance(msg, Close):
                await self._on_close(channel, msg)
            elif isinstance(msg, Rebind):
                await self._on_rebind(channel, msg)
            elif isinstance(msg, Reorder):
                await self._on_reorder(channel, msg)
            elif isinstance(msg, Ping):
                await channel.send(self.pong(msg.id, msg.nonce).to_header())
            elif isinstance(msg, Error):
                log.warning("error from %s: %s: %s", channel.remote, msg.code, msg.message)
            else:  # a reply or a notice: nothing a client sends a peer
                raise ProtocolError(f"a peer does not take {msg.TYPE!r} messages", code=Code.UNKNOWN_TYPE)
        except ProtocolError as e:
            await self._send_quietly(channel, self._error(e.code, str(e), id=req_id))

    def pong(self, req_id: int = 0, nonce: str | None = None) -> Pong:
        """The answer to a Ping: who this peer is and how loaded it is now; with a ``nonce``, the proof of it."""
        proof = None
        if nonce is not None:
            check_secret(nonce, "nonce")
            proof = self.identity.prove(nonce, self.model_key, self.span.start)
        return Pong(id=req_id, peer_id=self.identity.peer_id, model=self.model_key, start=self.span.start,
                    end=self.span.end, load=len(self.sessions), free_cache_tokens=self.free_cache_tokens(),
                    queue=self.engine.queue_depth, passes=self.engine.passes,
                    batched_steps=self.engine.batched_rows,
                    public_key=None if proof is None else self.identity.public_key, proof=proof,
                    codecs=list(CODECS))

    # ---- requests ----------------------------------------------------------------------------------------

    async def _on_open(self, channel: Channel, msg: Open) -> None:
        check_open(msg, span=(self.span.start, self.span.end), config=self.config,
                   accepting=None if self.state is PeerState.ONLINE else self.state.value,
                   open_sessions=self.sessions, n_open=len(self.sessions), own_addrs=self.addrs,
                   own_id=self.identity.peer_id, subspans=self.subspans)
        granted = admit(self.kv_budget, list(self._reservations.values()), msg.session, msg.max_length, msg.batch,
                        msg.next is not None, client=remote_host(channel.remote),
                        client_share=self.config.max_client_share)
        if isinstance(granted, Busy):  # not a failure: the client tries another peer or waits
            raise ProtocolError(f"peer is busy: {granted.reason}", code=Code.BUSY)
        model = self.span if (msg.start, msg.end) == (self.span.start, self.span.end) else self.span.view(
            msg.start, msg.end)
        self._reservations[msg.session] = granted
        self.sessions[msg.session] = Session(
            session_id=msg.session, start=msg.start, end=msg.end, max_length=msg.max_length, batch=msg.batch,
            cache=model.new_cache(), client=channel, next_addr=msg.next, last_used=self.clock(),
            secret=msg.secret, next_secret=msg.next_secret, next_peer=msg.next_peer, codec=msg.codec, model=model,
        )
        self._locks[msg.session] = asyncio.Lock()
        self._idle.clear()
        log.info("session %s opened: layers %d:%d, batch %d, max_length %d, next %s", session_tag(msg.session),
                 msg.start, msg.end, msg.batch, msg.max_length, msg.next or "client")
        await channel.send(Ok(id=msg.id).to_header())

    async def _on_close(self, channel: Channel, msg: Close) -> None:
        self._owned(msg.session, msg.secret)
        self._drop(msg.session)
        await channel.send(Ok(id=msg.id).to_header())

    async def _on_rebind(self, channel: Channel, msg: Rebind) -> None:
        check_addr(msg.next, self.addrs)
        check_next_peer(msg.next_peer, self.identity.peer_id)
        check_secret(msg.next_secret, "next_secret")
        session = self._owned(msg.session, msg.secret)
        if session.rebinds >= MAX_REBINDS:  # each rebind re-sends the whole history: bounded, no amplifier
            raise ProtocolError(f"session rebound {MAX_REBINDS} times already", code=Code.BAD_MESSAGE)
        session.rebinds += 1
        self.metrics.rebinds.inc()
        async with self._locks[msg.session]:
            session.next_addr, session.next_secret, session.next_peer = msg.next, msg.next_secret, msg.next_peer
            replay = session.replay_input(msg.upto_step)
            session.bulk_only |= replay is not None  # the steps after it must not overtake it
            if replay is not None:
                log.info("session %s: replaying %d positions to %s", session_tag(msg.session), replay.shape[1],
                         msg.next)
                try:  # in chunks, pipelined like a prefill: the replacement computes one while the next travels
                    for start in range(0, replay.shape[1], REPLAY_CHUNK_TOKENS):
                        meta, body = tensor_to_wire(replay[:, start:start + REPLAY_CHUNK_TOKENS], session.codec)
                        await self.relay.push(NextHop(msg.next_peer, msg.next, session.end), Step(
                            session=msg.session, secret=msg.next_secret, layer=session.end,
                            step=msg.upto_step - 1, position=start, tensor=meta, replay=True,
                            replay_until=msg.replay_until), body)
                except TransportError as e:  # the replacement is unreachable: the client picks another
                    raise ProtocolError(f"next hop {msg.next} failed: {e}", code=Code.NEXT_HOP_FAILED) from e
        await channel.send(Ok(id=msg.id).to_header())

    async def _on_reorder(self, channel: Channel, msg: Reorder) -> None:
        """Beam search: the session's rows take a new order, in its cache and its kept outputs, between steps."""
        session = self._owned(msg.session, msg.secret)
        async with self._locks[msg.session]:
            rows = check_reorder(session, msg.rows, msg.position)
            try:
                (session.model or self.span).reorder(session.cache, rows)
            except SessionError as e:
                raise ProtocolError(str(e), code=Code.BAD_STEP) from e
            session.reorder(rows)
        await channel.send(Ok(id=msg.id).to_header())

    async def _on_step(self, channel: Channel, msg: Step, body: bytes) -> None:
        sid, step = msg.session, msg.step
        try:
            session = self._owned(sid, msg.secret)
            if msg.keep < 0:
                raise ProtocolError(f"keep must be >= 0, got {msg.keep}", code=Code.BAD_STEP)
            if msg.layer != session.start:  # a route moves up the layers: a loop back is refused
                raise ProtocolError(f"this session's layers start at {session.start}, the step enters layer "
                                    f"{msg.layer}", code=Code.BAD_SPAN)
            if session.queued >= MAX_QUEUED_STEPS:  # a client waits for each result: more is a flood
                raise ProtocolError(f"{session.queued} steps of this session are waiting already",
                                    code=Code.BAD_STEP)
        except ProtocolError as e:
            await self._send_quietly(channel, self._error(e.code, str(e), session=sid, step=step))
            return
        session.queued += 1
        try:
            await self._step_in_turn(session, msg, body)
        finally:
            session.queued -= 1

    async def _step_in_turn(self, session: Session, msg: Step, body: bytes) -> None:
        """Apply a step under its session's lock and pass the output on; errors go to the session's client."""
        sid, step = msg.session, msg.step
        async with self._locks[sid]:
            began = self.clock()
            try:
                out = await self._apply_step(session, msg, body)
            except ProtocolError as e:
                log.info("session %s step %d refused: %s", session_tag(sid), step, e)
                await self._send_quietly(session.client, self._error(e.code, str(e), session=sid, step=step))
                return
            except Exception as e:  # a failed forward leaves the cache half-written: the session is lost
                log.exception("session %s step %d failed in compute", session_tag(sid), step)
                self._drop(sid)
                await self._send_quietly(session.client, self._error(
                    Code.COMPUTE_FAILED, f"{type(e).__name__}: {e}", session=sid, step=step))
                return
            session.last_used = self.clock()
            await self._pass_on(session, msg, out)
            self.metrics.observe_step(out.shape[1], msg.replay, self.clock() - began)

    async def _apply_step(self, session: Session, msg: Step, body: bytes) -> torch.Tensor:
        hidden = tensor_from_wire(msg.tensor, body)  # hidden: [B, T, H]
        if hidden.ndim != 3 or hidden.shape[0] != session.batch or hidden.shape[2] != self.span.hidden_size:
            raise ProtocolError(
                f"hidden states must be [batch={session.batch}, tokens, hidden={self.span.hidden_size}], "
                f"got {list(hidden.shape)}",
                code=Code.BAD_SHAPE,
            )
        if hidden.shape[1] < 1:
            raise ProtocolError("a step needs at least one token", code=Code.BAD_SHAPE)
        if msg.replay:
            check_replay(session, msg.step, msg.position, hidden.shape[1])
        else:
            action = check_step(session, msg.step, msg.position, hidden.shape[1], rewind=msg.rewind)
            if action is StepAction.REPLAY and session.last_output:
                return session.last_output[2]
            if action is StepAction.REWIND:
                try:
                    (session.model or self.span).rewind(session.cache, msg.position)
                except SessionError as e:
                    raise ProtocolError(str(e), code=Code.BAD_POSITION) from e
                session.rewind(msg.position)
        out = await self.engine.submit(session.session_id, hidden, session.cache, model=session.model)
        session.position += hidden.shape[1]
        session.next_step = msg.step + 1
        session.last_output = None if msg.replay else (msg.step, msg.position, out)
        if session.next_addr is not None:
            session.history.append((msg.step, out))
        return out

    async def _pass_on(self, session: Session, msg: Step, out: torch.Tensor) -> None:
        """Push a step's output to the next hop, or give the client its Result (last hop). A replay stops at
        the hop that already holds these positions (``replay_until``) and tells the client it is done."""
        sid = session.session_id
        if msg.replay and session.next_addr in (None, msg.replay_until):
            await self._send_quietly(session.client, Replayed(session=sid, step=msg.step, positions=session.position))
            return
        if session.next_addr is None and msg.keep > 0:
            out = out[:, -msg.keep:]  # only what the client asked for travels back
        meta, body = tensor_to_wire(out, session.codec)
        session.bulk_only |= msg.replay  # a decode step pushed after a replay must not overtake it
        if session.next_addr is None:
            await self._send_quietly(session.client, Result(session=sid, step=msg.step, position=msg.position,
                                                            tensor=meta), body)
            return
        try:
            await self.relay.push(NextHop(session.next_peer or "", session.next_addr, session.end), Step(
                session=sid, secret=session.next_secret or "", layer=session.end, step=msg.step,
                position=msg.position, tensor=meta, replay=msg.replay, replay_until=msg.replay_until,
                keep=msg.keep, rewind=msg.rewind), body, bulk=session.bulk_only or out.shape[1] > 1)
        except TransportError as e:
            log.warning("session %s: next hop %s failed: %s", session_tag(sid), session.next_addr, e)
            await self._send_quietly(session.client, self._error(
                Code.NEXT_HOP_FAILED, f"next hop {session.next_addr} failed: {e}", session=sid, step=msg.step,
                hop=session.next_addr))

    async def _dial_next(self, hop: NextHop) -> Channel:
        """A connection to the next hop ``hop`` names, resolved from this peer's records and proved to be that
        peer, serving this model with the layer pushes to it enter (``peer/nexthop.py``)."""
        layer = hop.layer if hop.layer >= 0 else self.span.end
        return await dial(hop, lookup=self.directory.lookup, have_records=lambda: self.directory.have_records,
                          connect=self._connect, model=self.model_key, start=layer, quiet=self._quiet)

    async def _next_hop_refused(self, sid: str, step: int | None, addr: str, error: Error) -> None:
        """The next hop refused a push (e.g. it lost the session): blame it, not this peer."""
        session = self.sessions.get(sid)
        if session is not None:
            addr = session.next_addr or addr  # the address this session's client knows the hop by
            await self._send_quietly(session.client, self._error(
                Code.NEXT_HOP_FAILED, f"{addr} answered {error.code}: {error.message}", session=sid, step=step,
                hop=addr))

    # ---- helpers ------------------------------------------------------------------------------------------

    def _owned(self, sid: str, secret: str) -> Session:
        """The session ``sid`` when ``secret`` is its capability; otherwise the same unknown_session error
        whether the session exists or not (a wrong secret tells a stranger nothing)."""
        session = self.sessions.get(sid)
        if session is None or not secret_matches(session.secret, secret):
            if session is not None:
                log.debug("session %s: a request with a wrong secret", session_tag(sid))
            raise ProtocolError(f"no session {sid} on this peer", code=Code.UNKNOWN_SESSION)
        return session

    def _error(self, code: str, message: str, **about: Any) -> Error:
        return Error(code=code, message=message, peer=self.identity.peer_id, **about)

    async def _run_compute(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _drop(self, sid: str) -> None:
        self.sessions.pop(sid, None)
        self._locks.pop(sid, None)
        self._reservations.pop(sid, None)  # its memory is free again
        if not self.sessions:
            self._idle.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_quietly(self, channel: Channel, msg: Message, body: bytes | memoryview = b"") -> None:
        try:
            await channel.send(msg.to_header(), body)
        except TransportError as e:  # the other side is gone; nothing left to tell it
            log.debug("could not send %s to %s: %s", msg.TYPE, channel.remote, e)


class _Vacant:
    """Where a moving peer's span was, while the new one loads: its figures, and no layers to run."""

    def __init__(self, span: Any) -> None:
        self.start, self.end = span.start, span.end
        self.hidden_size, self.dtype, self.device = span.hidden_size, span.dtype, getattr(span, "device", "cpu")
        self.batchable = False

    def __getattr__(self, name: str) -> Any:
        raise SessionError("this peer is moving its span: no layers are loaded")
