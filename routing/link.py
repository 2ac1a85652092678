"""PeerLink: the client's one persistent connection to a peer, shared by all its sessions.

Requests with an ``id`` get their reply through a future; frames about a session (results from the last
hop, errors and draining notices from any hop) go to that session's inbox queue, tagged with this link's
address so the session knows which hop spoke. A lost connection fails every waiter at once,
so a session learns within one event-loop turn that a hop is gone.

Each link keeps an estimate of its round trip (``rtt_s``) from the timings of its small requests (ping, open,
close: the peer answers them at once, so request to reply is network plus a loop turn), smoothed as TCP's
SRTT is (an EWMA with weight 1/8 on the new sample), with the clock injected. The planner uses it as the
link's latency.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from swarm.errors import ProtocolError, TransportError, error_from_wire
from swarm.net.transport import Channel
from swarm.net.wire import Frame

log = logging.getLogger("molink.client")

RTT_SAMPLED = frozenset({"ping", "open", "close"})  # replies that come at once; rebind waits on a push
RTT_ALPHA = 0.125  # weight of a new sample (RFC 6298's SRTT)


def ewma(previous: float | None, sample: float, alpha: float = RTT_ALPHA) -> float:
    """The smoothed estimate after one more sample; the first sample is taken as it is."""
    return sample if previous is None else (1 - alpha) * previous + alpha * sample


class PeerLink:
    def __init__(self, channel: Channel, addr: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.addr = addr
        self.channel = channel
        self.clock = clock
        self.rtt_s: float | None = None  # smoothed round trip of small requests; None until one was answered
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self.inboxes: dict[str, asyncio.Queue[tuple[str, Frame | Exception]]] = {}
        self._reader = asyncio.ensure_future(self._read_forever())

    @property
    def closed(self) -> bool:
        return self.channel.closed or self._reader.done()

    async def request(self, header: dict[str, Any], timeout: float) -> Frame:
        """Send a request and wait for its ok/pong; an error reply raises RemoteError."""
        req_id = next(self._ids)
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        sent_at = self.clock()
        try:
            await self.channel.send({**header, "id": req_id})
            frame = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise TransportError(f"{self.addr} did not answer {header.get('type')} within {timeout:.0f} s") from None
        finally:
            self._pending.pop(req_id, None)
        if header.get("type") in RTT_SAMPLED:  # an error reply is a reply too
            self.rtt_s = ewma(self.rtt_s, max(self.clock() - sent_at, 0.0))
        if frame.header.get("type") == "error":
            raise error_from_wire(str(frame.header.get("code")), str(frame.header.get("message")), self.addr)
        return frame

    async def send(self, header: dict[str, Any], body: bytes | memoryview = b"") -> None:
        await self.channel.send(header, body)

    async def close(self) -> None:
        self._reader.cancel()
        await self.channel.close()

    async def _read_forever(self) -> None:
        reason: Exception = TransportError(f"connection to {self.addr} closed")
        try:
            while (frame := await self.channel.recv()) is not None:
                self._deliver(frame)
        except (TransportError, ProtocolError) as e:
            reason = TransportError(f"connection to {self.addr} lost: {e}")
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(reason)
            for inbox in self.inboxes.values():
                inbox.put_nowait((self.addr, reason))
            await self.channel.close()

    def _deliver(self, frame: Frame) -> None:
        h = frame.header
        req_id = h.get("id")
        if isinstance(req_id, int) and req_id in self._pending:
            fut = self._pending[req_id]
            if not fut.done():
                fut.set_result(frame)
            return
        sid = h.get("session")
        if isinstance(sid, str) and sid in self.inboxes:
            self.inboxes[sid].put_nowait((self.addr, frame))
            return
        log.debug("unexpected frame from %s: %s", self.addr, {k: h[k] for k in h if k != "tensor"})
