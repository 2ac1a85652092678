"""Channels over real loopback sockets: frames arrive whole and in order, failures are typed."""

from __future__ import annotations

import asyncio

import pytest
import torch

from swarm.errors import PeerUnreachableError, TransportError
from swarm.net.transport import open_channel, start_server
from swarm.net.wire import Limits, tensor_from_wire, tensor_to_wire


async def test_concurrent_sends_arrive_whole_and_a_handler_error_keeps_the_server_up():
    received: list[int] = []
    done = asyncio.Event()

    async def handler(ch):
        while (frame := await ch.recv()) is not None:
            if frame.header["type"] == "boom":
                raise RuntimeError("handler bug")
            received.append(frame.header["n"])
            x = tensor_from_wire(frame.header["tensor"], frame.body)
            assert x.dtype == torch.bfloat16 and x.shape == (2, 3, 4)
            if len(received) == 50:
                done.set()

    server = await start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ch = await open_channel(f"127.0.0.1:{port}")
        meta, body = tensor_to_wire(torch.ones(2, 3, 4, dtype=torch.bfloat16))
        await asyncio.gather(*(ch.send({"type": "t", "n": i, "tensor": meta}, body) for i in range(50)))
        await asyncio.wait_for(done.wait(), 10)
        assert sorted(received) == list(range(50))
        bad = await open_channel(f"127.0.0.1:{port}")
        await bad.send({"type": "boom"})
        assert await asyncio.wait_for(bad.recv(), 10) is None  # closed by the server after the handler failed
        again = await open_channel(f"127.0.0.1:{port}")  # and the server still accepts
        await again.close()
        await ch.close()
        with pytest.raises(TransportError):
            await ch.send({"type": "t"})
    finally:
        server.close()
        await server.wait_closed()


async def test_dead_port_is_unreachable():
    server = await start_server(lambda ch: asyncio.sleep(0), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(PeerUnreachableError) as err:
        await open_channel(f"127.0.0.1:{port}", timeout=5)
    assert str(port) in str(err.value)


async def test_a_receiver_that_stops_reading_is_cut_off_at_the_frame_deadline():
    """Frames to a connection whose other side reads nothing used to wait for ever (and with them the tasks
    that sent them); now a send that the kernel cannot take within the frame deadline closes the channel."""
    accepted = asyncio.Event()
    writers = []

    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        accepted.set()

    server = await asyncio.start_server(never_reads, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ch = await open_channel(f"127.0.0.1:{port}", limits=Limits(frame_deadline_s=0.5, min_rate=1e12))
        await asyncio.wait_for(accepted.wait(), 10)
        body = bytes(1 << 20)
        with pytest.raises(TransportError, match="took nothing"):
            for _ in range(512):  # the socket buffers hold a few MiB at most: a send blocks long before this
                await ch.send({"type": "t"}, body)
        assert ch.closed
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
