"""PeerLink: the client's one persistent connection to a peer, shared by all its sessions.

Messages are the records of ``swarm/net/protocol.py``, parsed as they arrive (a frame that is not a valid
message is logged and dropped). Requests get an ``id`` and their reply through a future; messages about a
session (results from the last hop, errors and draining notices from any hop) go to that session's inbox
queue as ``Received``, tagged with this link's address so the session knows which hop spoke. A lost connection fails every waiter at once,
so a session learns within one event-loop turn that a hop is gone.

Each link keeps an estimate of its round trip (``rtt_s``) from the timings of its small requests (ping, open,
close: the peer answers them at once, so request to reply is network plus a loop turn), smoothed as TCP's
SRTT is (an EWMA with weight 1/8 on the new sample), with the clock injected. The planner uses it as the
link's latency.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from swarm.errors import ProtocolError, TransportError, error_from_wire
from swarm.net.protocol import REQUESTS, Close, Error, Message, Open, Ping, parse
from swarm.net.transport import Channel

log = logging.getLogger("molink.client")

RTT_SAMPLED: tuple[type[Message], ...] = (Ping, Open, Close)  # answered at once; a rebind waits on a push
RTT_ALPHA = 0.125  # weight of a new sample (RFC 6298's SRTT)


def ewma(previous: float | None, sample: float, alpha: float = RTT_ALPHA) -> float:
    """The smoothed estimate after one more sample; the first sample is taken as it is."""
    return sample if previous is None else (1 - alpha) * previous + alpha * sample


@dataclass(frozen=True)
class Received:
    """A message that came in on a link, with the frame's body (the tensor bytes of a Result)."""

    msg: Message
    body: bytes = b""


class PeerLink:
    def __init__(self, channel: Channel, addr: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.addr = addr
        self.channel = channel
        self.clock = clock
        self.rtt_s: float | None = None  # smoothed round trip of small requests; None until one was answered
        self.bps: float | None = None  # bytes/s toward the peer, from a padded ping (swarm/net/probe.py)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Received]] = {}
        self.inboxes: dict[str, asyncio.Queue[tuple[str, Received | Exception]]] = {}
        self._reader = asyncio.ensure_future(self._read_forever())

    @property
    def closed(self) -> bool:
        return self.channel.closed or self._reader.done()

    async def request(self, msg: Message, timeout: float, body: bytes | memoryview = b"") -> Message:
        """Send a request (Open, Close, Ping, Rebind) and wait for its Ok or Pong; an Error reply raises
        RemoteError. A request with a ``body`` (a bandwidth probe) is no round-trip sample."""
        if not isinstance(msg, REQUESTS):
            raise TypeError(f"{msg.TYPE} is not a request")
        req_id = next(self._ids)
        fut: asyncio.Future[Received] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        sent_at = self.clock()
        try:
            await self.channel.send(dataclasses.replace(msg, id=req_id).to_header(), body)
            reply = (await asyncio.wait_for(fut, timeout)).msg
        except asyncio.TimeoutError:
            raise TransportError(f"{self.addr} did not answer {msg.TYPE} within {timeout:.0f} s") from None
        finally:
            self._pending.pop(req_id, None)
        if isinstance(msg, RTT_SAMPLED) and not body:  # an error reply is a reply too
            self.rtt_s = ewma(self.rtt_s, max(self.clock() - sent_at, 0.0))
        if isinstance(reply, Error):
            raise error_from_wire(reply.code, reply.message, self.addr)
        return reply

    async def send(self, msg: Message, body: bytes | memoryview = b"") -> None:
        await self.channel.send(msg.to_header(), body)

    async def close(self) -> None:
        self._reader.cancel()
        await self.channel.close()

    async def _read_forever(self) -> None:
        reason: Exception = TransportError(f"connection to {self.addr} closed")
        try:
            while (frame := await self.channel.recv()) is not None:
                try:
                    msg = parse(frame.header)
                except ProtocolError as e:  # a newer peer's message, or a broken one: not ours to act on
                    log.debug("unreadable message from %s: %s", self.addr, e)
                    continue
                self._deliver(Received(msg, frame.body))
        except (TransportError, ProtocolError) as e:
            reason = TransportError(f"connection to {self.addr} lost: {e}")
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(reason)
            for inbox in self.inboxes.values():
                inbox.put_nowait((self.addr, reason))
            await self.channel.close()

    def _deliver(self, item: Received) -> None:
        req_id = getattr(item.msg, "id", None)
        if isinstance(req_id, int) and req_id in self._pending:
            fut = self._pending[req_id]
            if not fut.done():
                fut.set_result(item)
            return
        sid = getattr(item.msg, "session", None)
        if isinstance(sid, str) and sid in self.inboxes:
            self.inboxes[sid].put_nowait((self.addr, item))
            return
        log.debug("unexpected %s from %s", item.msg.TYPE, self.addr)
