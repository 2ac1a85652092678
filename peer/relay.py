"""Pushes to next hops: one connection per next-hop address, shared by every session that goes there.

A hop sends a session's output straight to the next hop of its route as a ``Step``. The next hop answers such
pushes only when something is wrong (an ``Error`` about a session it cannot continue); the relay reads those
answers and hands each to ``on_error(session_id, step, addr, error)``, so the server can tell that session's
client which hop failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from swarm.errors import ProtocolError, TransportError
from swarm.net.protocol import Error, Message, parse
from swarm.net.transport import Channel

log = logging.getLogger("molink.peer")


class Relay:
    def __init__(self, connect: Callable[[str], Awaitable[Channel]],
                 on_error: Callable[[str, int | None, str, Error], Awaitable[None]],
                 spawn: Callable[[Any], None]) -> None:
        self._connect = connect
        self._on_error = on_error
        self._spawn = spawn
        self._channels: dict[str, Channel] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one per address: a slow connect holds up no other hop

    async def push(self, addr: str, msg: Message, body: bytes | memoryview = b"") -> None:
        """Send ``msg`` to the hop at ``addr``, connecting first if needed; TransportError when that fails."""
        channel = await self._channel(addr)
        await channel.send(msg.to_header(), body)

    async def close(self) -> None:
        for channel in list(self._channels.values()):
            await channel.close()
        self._channels.clear()

    async def _channel(self, addr: str) -> Channel:
        channel = self._channels.get(addr)
        if channel is not None and not channel.closed:
            return channel
        async with self._locks.setdefault(addr, asyncio.Lock()):
            channel = self._channels.get(addr)
            if channel is None or channel.closed:
                channel = await self._connect(addr)
                self._channels[addr] = channel
                self._spawn(self._read_replies(addr, channel))
            return channel

    async def _read_replies(self, addr: str, channel: Channel) -> None:
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
            if self._channels.get(addr) is channel:
                del self._channels[addr]
