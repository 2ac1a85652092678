"""TCP hole punching (swarm/net/punch.py) on loopback: the peer's side takes the dialler's connect on its
port, only from the host the relay named, and a punch nobody answers gives up in time."""

from __future__ import annotations

import asyncio
import socket

from swarm.net.punch import punch_back, punch_port, simultaneous_open


async def _pair(peer_port: int, dialler_port: int) -> tuple[socket.socket | None, socket.socket | None]:
    return tuple(await asyncio.gather(punch_back(peer_port, f"127.0.0.1:{dialler_port}", timeout_s=10),
                                      simultaneous_open(dialler_port, f"127.0.0.1:{peer_port}", timeout_s=10)))


async def test_both_sides_get_one_connection_between_the_ports_they_told_each_other():
    peer_port, dialler_port = punch_port(), punch_port()
    peer, dialler = await _pair(peer_port, dialler_port)
    try:
        assert peer is not None and dialler is not None
        assert peer.getsockname()[1] == peer_port and dialler.getsockname()[1] == dialler_port
        assert peer.getpeername()[1] == dialler_port
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(dialler, b"hello")
        assert await asyncio.wait_for(loop.sock_recv(peer, 5), 10) == b"hello"
    finally:
        for sock in (peer, dialler):
            if sock is not None:
                sock.close()


async def test_the_peer_takes_no_connection_from_another_host_than_the_relay_named():
    peer_port, dialler_port = punch_port(), punch_port()
    punching = asyncio.ensure_future(punch_back(peer_port, f"127.0.0.1:{dialler_port}", timeout_s=10))
    loop = asyncio.get_running_loop()
    for _ in range(200):  # the listener is up within a loop turn or two; bounded
        stranger = socket.socket()
        stranger.bind(("127.0.0.2", 0))  # loopback too, but not the dialler's host
        stranger.setblocking(False)
        try:
            await loop.sock_connect(stranger, ("127.0.0.1", peer_port))
            break
        except ConnectionRefusedError:
            stranger.close()
            await asyncio.sleep(0.01)
    try:  # accepted, then closed at once: an end of stream or a reset, never the punch
        assert await asyncio.wait_for(loop.sock_recv(stranger, 1), 10) == b""
    except ConnectionError:
        pass
    stranger.close()
    assert not punching.done()
    dialler = await simultaneous_open(dialler_port, f"127.0.0.1:{peer_port}", timeout_s=10)
    peer = await punching
    assert peer is not None and dialler is not None and peer.getpeername()[0] == "127.0.0.1"
    peer.close()
    dialler.close()


async def test_a_punch_nobody_answers_gives_up_within_its_time():
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await simultaneous_open(punch_port(), f"127.0.0.1:{punch_port()}", timeout_s=0.3) is None
    assert loop.time() - began < 5  # the bound, with room for a busy machine
