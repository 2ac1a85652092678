"""Pushes to next hops: one connection per next-hop peer, shared by every session that goes there.

The connection comes from ``connect(hop)`` (the server's: ``peer/nexthop.py`` resolves the peer and proves
who answers before it hands the channel over). A hop sends a session's output straight to the next hop of its route as a ``Step``. The next hop answers such
pushes only when something is wrong (an ``Error`` about a session it cannot continue); the relay reads those
answers and hands each to ``on_error(session_id, step, hint, error)`` (``hint``: the client's address for
the hop), so the server can tell that session's
client which hop failed.

**Decode first.** Each next hop gets two connections, two *lanes*: one for prefill chunks and replays (many
tokens, megabytes on a big model), one for decode steps (one token per row, a few kilobytes). Frames on one
connection go one after another, so a decode step pushed behind a prefill chunk would wait for the whole
chunk to cross a slow link; on its own connection it waits for nothing (the two share the link's bandwidth
as any two TCP connections do). A session's steps still arrive in order: its decode steps start only after
the client got its prefill's result, which every hop had pushed on before. A replay (failover) is the
exception, as the client does not wait for it to arrive before its next step: a session that pushed one keeps
to the bulk lane from then on (``Session.bulk_only``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from peer.nexthop import NextHop
from swarm.errors import ProtocolError, TransportError
from swarm.net.protocol import Error, Message, parse
from swarm.net.transport import Channel

log = logging.getLogger("molink.peer")

BULK, DECODE = "bulk", "decode"  # the two lanes to each next hop


class Relay:
    def __init__(self, connect: Callable[[NextHop], Awaitable[Channel]],
                 on_error: Callable[[str, int | None, str, Error], Awaitable[None]],
                 spawn: Callable[[Any], None]) -> None:
        self._connect = connect
        self._on_error = on_error
        self._spawn = spawn
        self._channels: dict[tuple[str, str], Channel] = {}  # by (peer id, lane)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}  # one per lane: a slow connect holds up no other

    async def push(self, hop: NextHop, msg: Message, body: bytes | memoryview = b"", *, bulk: bool = True) -> None:
        """Send ``msg`` to the peer ``hop`` names, on its bulk lane or (``bulk=False``: a decode step) its decode
        lane, connecting first if needed; TransportError when that fails."""
        channel = await self._channel(hop, BULK if bulk else DECODE)
        await channel.send(msg.to_header(), body)

    def links(self, most: int) -> dict[str, Channel]:
        """An open push connection per next-hop peer id (at most ``most``; its bulk lane's when both are open):
        what the peer's record lists."""
        found: dict[str, Channel] = {}
        for (peer, _), channel in sorted(self._channels.items(), key=lambda kv: kv[0][1] != BULK):
            if not channel.closed and peer not in found:
                found[peer] = channel
        return dict(itertools.islice(found.items(), most))

    def channels(self) -> dict[tuple[str, str], Channel]:
        """The open push connections, by (next-hop peer id, lane)."""
        return {key: c for key, c in self._channels.items() if not c.closed}

    async def close(self) -> None:
        for channel in list(self._channels.values()):
            await channel.close()
        self._channels.clear()

    async def _channel(self, hop: NextHop, lane: str) -> Channel:
        key = (hop.peer_id, lane)
        channel = self._channels.get(key)
        if channel is not None and not channel.closed:
            return channel
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                channel = self._channels.get(key)
                if channel is None or channel.closed:
                    channel = await self._connect(hop)
                    self._channels[key] = channel
                    self._spawn(self._read_replies(key, hop.hint, channel))
                return channel
        finally:
            if not lock.locked() and self._locks.get(key) is lock and key not in self._channels:
                del self._locks[key]  # a failed connect leaves nothing behind for every id a stranger names

    async def _read_replies(self, key: tuple[str, str], addr: str, channel: Channel) -> None:
        try:
            while (frame := await channel.recv()) is not None:
                try:
                    msg = parse(frame.header)
                except ProtocolError as e:
                    log.info("unreadable answer from next hop %s: %s", addr, e)
                    continue
                if isinstance(msg, Error) and msg.session is not None:
                    await self._on_error(msg.session, msg.step, addr, msg)
        except (TransportError, ProtocolError) as e:
            log.info("push connection to %s ended: %s", addr, e)
        finally:
            if self._channels.get(key) is channel:
                del self._channels[key]
                self._locks.pop(key, None)
