"""The peer's data server: sessions over our TCP framing, activations pushed to the next hop.

Message flow (DESIGN.md section 2): a client opens a session on every hop of its route over its own
connection to that hop, then sends each step to the first hop only. A hop runs its span and pushes the
output straight to the next hop; the last hop sends the result to the client over the connection the session
was opened on. Errors about a session always go to that client connection, so the client learns which hop
failed without any hop relaying for another.

Messages (header "type"; every request that expects a reply carries an integer "id"):
    open   {id, session, start, end, max_length, batch, next}   -> ok {id} | error {id, code, message}
    step   {session, step, position, tensor} + body             -> pushed on, or result {session, step, tensor}
    close  {id, session}                                        -> ok {id} | error
    ping   {id}                                                 -> pong {id, peer_id, model, start, end, load}
    rebind {id, session, next, upto_step, replay_until}        -> ok {id}; pushes the stored outputs of steps
           before upto_step to the new next hop as one replay step (failover: KV rebuild downstream)
A step with "replay": true rebuilds a fresh session's cache; it is pushed on until the hop whose address is
"replay_until" (which holds those positions already), or the route's end, and produces no result.
A draining peer sends {type: draining, session} to each session's client, so clients move before it leaves.
Anything malformed gets an error frame and the peer keeps serving; nothing from the network is unpickled.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from peer.admission import Busy, KVBudget, Reservation, admit, free_tokens
from peer.config import PeerConfig
from peer.engine import Engine
from peer.scheduler import Budget
from peer.sessions import Session, StepAction, check_replay, check_step, expired
from swarm.errors import FrameTooLargeError, ProtocolError, TransportError
from swarm.net.addresses import advertised_hosts
from swarm.net.records import MAX_ADDRS, MAX_STR, Identity, PeerRecord, PeerState
from swarm.net.transport import Channel, format_addr, open_channel, parse_addr, start_server
from swarm.net.wire import Frame, Limits, header_field, tensor_from_wire, tensor_to_wire

log = logging.getLogger("molink.peer")

MAX_SESSION_ID = 128
FATAL_CODES = ("bad_magic", "frame_too_large")  # after these the byte stream cannot be trusted


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
        limits: Limits = Limits(),
        version: str = "0",
        connect: Callable[[str], Any] | None = None,  # address -> awaitable Channel (injected by the sim tier)
        listener: socket.socket | None = None,  # the data port, bound before the span was loaded
        num_layers: int = 0,            # the whole model's layer count, published for listings
        model_name: str = "",           # what the operator called the model, published as a hint
        kv_budget: KVBudget | None = None,  # memory for sessions; None -> config.kv_reserve_tokens, counted in tokens
    ) -> None:
        self.config = config
        self.span = span
        self.identity = identity
        self.model_key = model_key
        self.discovery = discovery
        self.clock = clock
        self.limits = limits
        self.version = version
        self._connect = connect or (lambda addr: open_channel(addr, limits=self.limits))
        self.sessions: dict[str, Session] = {}
        self.throughput = 0.0
        self.addrs: tuple[str, ...] = ()  # every published address of the data port, the preferred first
        self.num_layers = num_layers
        self.model_name = model_name
        self._listener = listener
        self._dht_alone = False  # whether the last heartbeat found no other DHT node
        self.state = PeerState.JOINING
        self._locks: dict[str, asyncio.Lock] = {}
        self._pushes: dict[str, Channel] = {}
        self._push_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.base_events.Server | None = None
        self._idle = asyncio.Event()  # set whenever no session is open (draining waits on it)
        self._idle.set()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="molink-compute")
        self.kv_budget = kv_budget or KVBudget(total_bytes=config.kv_reserve_tokens, kv_bytes_per_token=1,
                                               history_bytes_per_token=0)
        self._reservations: dict[str, Reservation] = {}
        self.engine = Engine(span, budget=Budget(max_rows=config.max_batch), inline_tokens=config.inline_step_tokens,
                             run_compute=self._run_compute)

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> str:
        """Measure throughput, open the data port; returns the address to publish."""
        self.throughput = await self._run_compute(measure_throughput, self.span)
        host, port = parse_addr(self.config.listen)
        self._server = await start_server(self._handle, host, port, limits=self.limits, sock=self._listener)
        bound = self._server.sockets[0].getsockname()
        if self.config.announce_addr:
            self.addrs = (self.config.announce_addr,)
        else:
            # a record holds at most MAX_ADDRS addresses: the preferred ones come first
            self.addrs = tuple(format_addr(h, bound[1]) for h in advertised_hosts(host))[:MAX_ADDRS]
        self.state = PeerState.ONLINE
        return self.addr

    @property
    def addr(self) -> str:
        """The preferred published address ("" before start)."""
        return self.addrs[0] if self.addrs else ""

    async def stop(self) -> None:
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
        for ch in list(self._pushes.values()):
            await ch.close()
        self.sessions.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def drain(self, timeout_s: float) -> None:
        """Graceful exit, first half: announce DRAINING, ask every session's client to move, and wait
        (at most timeout_s) until they have; new sessions are refused meanwhile."""
        self.state = PeerState.DRAINING
        if self.discovery is not None:
            try:
                await self.discovery.announce(self.record(), ttl=self.config.ttl_s)
            except Exception as e:  # clients still learn from the notices below
                log.warning("could not announce draining: %s", e)
        for sid, session in list(self.sessions.items()):
            await self._send_quietly(session.client, {"type": "draining", "session": sid})
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            log.info("drained: every session moved or closed")
        except asyncio.TimeoutError:
            log.warning("drain timeout (%.0f s): leaving with %d sessions open", timeout_s, len(self.sessions))

    def free_cache_tokens(self) -> int:
        """KV tokens not promised to an open session (each reserves max_length x batch, and its replay
        history when it pushes to a next hop)."""
        return free_tokens(self.kv_budget, list(self._reservations.values()))

    def record(self, state: PeerState | None = None) -> PeerRecord:
        rec = PeerRecord(
            peer_id=self.identity.peer_id,
            model=self.model_key,
            addrs=self.addrs,
            start=self.span.start,
            end=self.span.end,
            state=state or self.state,
            throughput=float(self.throughput),
            net_throughput=100.0,
            free_cache_tokens=self.free_cache_tokens(),
            load=len(self.sessions),
            queue=self.engine.queue_depth,
            dtype=str(self.span.dtype).removeprefix("torch."),
            version=self.version,
            rtts={},
            num_layers=self.num_layers,
            model_name=self.model_name[:MAX_STR],
        )
        return self.identity.sign_record(rec)

    async def heartbeat_forever(self) -> None:
        """Refresh the DHT record and expire idle sessions, every announce interval."""
        while True:
            self.expire_sessions()
            if self.discovery is not None:
                try:
                    # together: redialling a bootstrap that is down can take seconds, the record must not wait
                    await asyncio.gather(self.check_dht_neighbours(),
                                         self.discovery.announce(self.record(), ttl=self.config.ttl_s))
                except Exception as e:  # a DHT hiccup must not stop serving; the next beat retries
                    log.warning("announce failed (will retry in %.0f s): %s", self.config.announce_interval_s, e)
            await asyncio.sleep(self.config.announce_interval_s)

    async def check_dht_neighbours(self) -> None:
        """Redial lost initial peers (a restarted bootstrap) and say so when this peer cannot see the swarm,
        once when it happens and once when it ends, not on every beat."""
        neighbours = await self.discovery.rejoin()
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
            log.info("session %s idle for over %.0f s: closed", sid, self.config.session_timeout_s)
            self._drop(sid)

    # ---- connections -----------------------------------------------------------------------------------

    async def _handle(self, channel: Channel) -> None:
        try:
            while True:
                try:
                    frame = await channel.recv()
                except (FrameTooLargeError, ProtocolError) as e:
                    log.warning("bad frame from %s: %s", channel.remote, e)
                    await self._send_quietly(channel, error_header(e.code, str(e), self.identity.peer_id))
                    if isinstance(e, FrameTooLargeError) or e.code in FATAL_CODES:
                        return
                    continue
                if frame is None:
                    return
                await self._dispatch(channel, frame)
        except TransportError as e:
            log.debug("connection from %s lost: %s", channel.remote, e)
        finally:
            for sid in [sid for sid, s in self.sessions.items() if s.client is channel]:
                log.info("session %s closed: its client disconnected", sid)
                self._drop(sid)

    async def _dispatch(self, channel: Channel, frame: Frame) -> None:
        kind = frame.header.get("type")
        req_id = frame.header.get("id")
        try:
            if kind == "step":
                self._spawn(self._on_step(channel, frame))
            elif kind == "open":
                await self._on_open(channel, frame.header)
            elif kind == "close":
                await self._on_close(channel, frame.header)
            elif kind == "rebind":
                await self._on_rebind(channel, frame.header)
            elif kind == "ping":
                await channel.send({"type": "pong", "id": req_id, **self.info()})
            elif kind == "error":
                log.warning("error frame from %s: %s", channel.remote, frame.header.get("message"))
            else:
                raise ProtocolError(f"unknown message type {kind!r}", code="unknown_type")
        except ProtocolError as e:
            await self._send_quietly(channel, error_header(e.code, str(e), self.identity.peer_id, id=req_id))

    def info(self) -> dict[str, Any]:
        return {
            "peer_id": self.identity.peer_id,
            "model": self.model_key,
            "start": self.span.start,
            "end": self.span.end,
            "load": len(self.sessions),
            "free_cache_tokens": self.free_cache_tokens(),
            "queue": self.engine.queue_depth,
            "passes": self.engine.passes,              # forward passes run so far
            "batched_steps": self.engine.batched_rows,  # steps that shared a pass with another step
        }

    # ---- requests ----------------------------------------------------------------------------------------

    async def _on_open(self, channel: Channel, h: dict[str, Any]) -> None:
        req_id = header_field(h, "id", int)
        sid = header_field(h, "session", str)
        start = header_field(h, "start", int)
        end = header_field(h, "end", int)
        max_length = header_field(h, "max_length", int)
        batch = header_field(h, "batch", int)
        next_addr = header_field(h, "next", str, optional=True)
        if not 0 < len(sid) <= MAX_SESSION_ID:
            raise ProtocolError(f"session id must be 1..{MAX_SESSION_ID} characters", code="bad_message")
        if (start, end) != (self.span.start, self.span.end):
            raise ProtocolError(
                f"this peer serves layers {self.span.start}:{self.span.end}, not {start}:{end}", code="bad_span"
            )
        if not 0 < max_length <= self.config.max_session_tokens:
            raise ProtocolError(
                f"max_length {max_length} outside 1..{self.config.max_session_tokens}", code="too_long"
            )
        if not 0 < batch <= self.config.max_batch:
            raise ProtocolError(f"batch {batch} outside 1..{self.config.max_batch}", code="bad_batch")
        if next_addr is not None:
            parse_addr(next_addr)
        if self.state is not PeerState.ONLINE:
            raise ProtocolError(f"peer is {self.state.value}: not taking new sessions", code="draining")
        if sid in self.sessions:
            raise ProtocolError(f"session {sid} is already open", code="session_exists")
        if len(self.sessions) >= self.config.max_sessions:
            raise ProtocolError(f"peer is full ({self.config.max_sessions} sessions)", code="busy")
        granted = admit(self.kv_budget, list(self._reservations.values()), sid, max_length, batch,
                        next_addr is not None)
        if isinstance(granted, Busy):  # not a failure: the client tries another peer or waits
            raise ProtocolError(f"peer is busy: {granted.reason}", code="busy")
        self._reservations[sid] = granted
        self.sessions[sid] = Session(
            session_id=sid, start=start, end=end, max_length=max_length, batch=batch,
            cache=self.span.new_cache(), client=channel, next_addr=next_addr, last_used=self.clock(),
        )
        self._locks[sid] = asyncio.Lock()
        self._idle.clear()
        log.info("session %s opened: batch %d, max_length %d, next %s", sid, batch, max_length, next_addr or "client")
        await channel.send({"type": "ok", "id": req_id})

    async def _on_close(self, channel: Channel, h: dict[str, Any]) -> None:
        req_id = header_field(h, "id", int)
        sid = header_field(h, "session", str)
        if sid not in self.sessions:
            raise ProtocolError(f"no session {sid} on this peer", code="unknown_session")
        self._drop(sid)
        await channel.send({"type": "ok", "id": req_id})

    async def _on_rebind(self, channel: Channel, h: dict[str, Any]) -> None:
        req_id = header_field(h, "id", int)
        sid = header_field(h, "session", str)
        next_addr = header_field(h, "next", str)
        upto_step = header_field(h, "upto_step", int)
        replay_until = header_field(h, "replay_until", str, optional=True)
        parse_addr(next_addr)
        session = self.sessions.get(sid)
        if session is None:
            raise ProtocolError(f"no session {sid} on this peer", code="unknown_session")
        async with self._locks[sid]:
            session.next_addr = next_addr
            replay = session.replay_input(upto_step)
            if replay is not None:
                log.info("session %s: replaying %d positions to %s", sid, replay.shape[1], next_addr)
                meta, body = tensor_to_wire(replay)
                try:
                    push = await self._push_channel(next_addr)
                    await push.send({"type": "step", "session": sid, "step": upto_step - 1, "position": 0,
                                     "tensor": meta, "replay": True, "replay_until": replay_until}, body)
                except TransportError as e:  # the replacement is unreachable: the client picks another
                    raise ProtocolError(f"next hop {next_addr} failed: {e}", code="next_hop_failed") from e
        await channel.send({"type": "ok", "id": req_id})

    async def _on_step(self, channel: Channel, frame: Frame) -> None:
        h = frame.header
        try:
            sid = header_field(h, "session", str)
            step = header_field(h, "step", int)
            position = header_field(h, "position", int)
        except ProtocolError as e:
            await self._send_quietly(channel, error_header(e.code, str(e), self.identity.peer_id))
            return
        session = self.sessions.get(sid)
        if session is None:
            await self._send_quietly(channel, error_header(
                "unknown_session", f"no session {sid} on this peer", self.identity.peer_id, session=sid, step=step))
            return
        async with self._locks[sid]:
            try:
                out = await self._apply_step(session, step, position, h, frame.body)
            except ProtocolError as e:
                log.info("session %s step %d refused: %s", sid, step, e)
                await self._send_quietly(session.client, error_header(
                    e.code, str(e), self.identity.peer_id, session=sid, step=step))
                return
            except Exception as e:  # a failed forward leaves the cache half-written: the session is lost
                log.exception("session %s step %d failed in compute", sid, step)
                self._drop(sid)
                await self._send_quietly(session.client, error_header(
                    "compute_failed", f"{type(e).__name__}: {e}", self.identity.peer_id, session=sid, step=step))
                return
            session.last_used = self.clock()
            if h.get("replay") is True:
                await self._forward_replay(session, step, out, h.get("replay_until"))
            else:
                await self._forward(session, step, position, out)

    async def _apply_step(
        self, session: Session, step: int, position: int, h: dict[str, Any], body: bytes
    ) -> torch.Tensor:
        hidden = tensor_from_wire(h.get("tensor"), body)  # hidden: [B, T, H]
        if hidden.ndim != 3 or hidden.shape[0] != session.batch or hidden.shape[2] != self.span.hidden_size:
            raise ProtocolError(
                f"hidden states must be [batch={session.batch}, tokens, hidden={self.span.hidden_size}], "
                f"got {list(hidden.shape)}",
                code="bad_shape",
            )
        if hidden.shape[1] < 1:
            raise ProtocolError("a step needs at least one token", code="bad_shape")
        replay = h.get("replay") is True
        if replay:
            check_replay(session, step, position, hidden.shape[1])
        elif check_step(session, step, position, hidden.shape[1]) is StepAction.REPLAY and session.last_output:
            return session.last_output[2]
        out = await self.engine.submit(session.session_id, hidden, session.cache)
        session.position += hidden.shape[1]
        session.next_step = step + 1
        session.last_output = None if replay else (step, position, out)
        if session.next_addr is not None:
            session.history.append((step, out))
        return out

    async def _forward(self, session: Session, step: int, position: int, out: torch.Tensor) -> None:
        meta, body = tensor_to_wire(out)
        header = {"session": session.session_id, "step": step, "position": position, "tensor": meta}
        if session.next_addr is None:
            await self._send_quietly(session.client, {"type": "result", **header}, body)
            return
        try:
            push = await self._push_channel(session.next_addr)
            await push.send({"type": "step", **header}, body)
        except TransportError as e:
            log.warning("session %s: next hop %s failed: %s", session.session_id, session.next_addr, e)
            await self._send_quietly(session.client, error_header(
                "next_hop_failed", f"next hop {session.next_addr} failed: {e}", self.identity.peer_id,
                session=session.session_id, step=step, hop=session.next_addr))

    async def _forward_replay(self, session: Session, step: int, out: torch.Tensor, until: Any) -> None:
        """Push a replay on, unless the next hop already holds these positions (or there is none)."""
        if session.next_addr is None or session.next_addr == until:
            await self._send_quietly(session.client, {"type": "replayed", "session": session.session_id,
                                                      "step": step, "positions": session.position})
            return
        meta, body = tensor_to_wire(out)
        try:
            push = await self._push_channel(session.next_addr)
            await push.send({"type": "step", "session": session.session_id, "step": step, "position": 0,
                             "tensor": meta, "replay": True, "replay_until": until}, body)
        except TransportError as e:
            await self._send_quietly(session.client, error_header(
                "next_hop_failed", f"next hop {session.next_addr} failed: {e}", self.identity.peer_id,
                session=session.session_id, step=step, hop=session.next_addr))

    # ---- helpers ------------------------------------------------------------------------------------------

    async def _push_channel(self, addr: str) -> Channel:
        async with self._push_lock:
            ch = self._pushes.get(addr)
            if ch is None or ch.closed:
                ch = await self._connect(addr)
                self._pushes[addr] = ch
                self._spawn(self._read_push_replies(addr, ch))
            return ch

    async def _read_push_replies(self, addr: str, ch: Channel) -> None:
        """Downstream peers answer pushes only with errors; hand each to the session's client."""
        try:
            while (frame := await ch.recv()) is not None:
                sid = frame.header.get("session")
                session = self.sessions.get(sid) if isinstance(sid, str) else None
                if frame.header.get("type") == "error" and session is not None:
                    # the next hop refused a push (e.g. it lost the session): blame it, not this peer
                    await self._send_quietly(session.client, error_header(
                        "next_hop_failed", f"{addr} answered {frame.header.get('code')}: "
                        f"{frame.header.get('message')}", self.identity.peer_id,
                        session=sid, step=frame.header.get("step"), hop=addr))
        except (TransportError, ProtocolError) as e:
            log.info("push connection to %s ended: %s", addr, e)
        finally:
            if self._pushes.get(addr) is ch:
                del self._pushes[addr]

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

    async def _send_quietly(self, channel: Channel, header: dict[str, Any], body: bytes | memoryview = b"") -> None:
        try:
            await channel.send(header, body)
        except TransportError as e:  # the other side is gone; nothing left to tell it
            log.debug("could not send %s to %s: %s", header.get("type"), channel.remote, e)


def error_header(code: str, message: str, peer_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "peer": peer_id,
            **{k: v for k, v in extra.items() if v is not None}}


def measure_throughput(span: Any, steps: int = 3) -> float:
    """Decode tokens per second through the whole span at batch 1 (one warm-up step, then ``steps``)."""
    cache = span.new_cache()
    x = torch.zeros(1, 1, span.hidden_size, dtype=span.dtype)
    span.forward(x, cache)
    t0 = time.perf_counter()
    for _ in range(steps):
        span.forward(x, cache)
    return steps / max(time.perf_counter() - t0, 1e-9)
