"""The relay (swarm/net/circuits.py) over a fake libp2p daemon: streams are socket pairs, "connected" is a set.

What is checked: the dial-back answers (reachable, not reachable, no relay), frames through a circuit both ways
with the dialler named to the peer, and the relay's refusals (a peer not connected to it, too many circuits,
a circuit past its duration), each a clear error to the dialler, never a crash of the relay.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import pytest

from swarm.errors import PeerUnreachableError
from swarm.net.circuits import CircuitLimits, Dialer, RelayService, check_reach, serve_relayed
from swarm.net.protocol import Connect, Ping, Pong, parse
from swarm.net.transport import Channel, Gate
from swarm.net.ways import PUNCHED, RELAYED, relayed_way

RELAY_ID = "QmfQrZF4AykDfJ5cV3qadVHqfQvqwmyfvZFvfiozRzTUKT"
PEER_ID = "12D3KooWRch1rxjvgvMT7s4KP2Tsy1bfZeMUVND4a9xbrB16LJ9m"
CLIENT_ID = "12D3KooWCTZdyMZpxsFeH7xBjMgFZo7ZhPn7NjVXCoUDgdTxodpm"
RELAY_MADDR = f"/ip4/127.0.0.1/tcp/31337/p2p/{RELAY_ID}"


@dataclass
class Info:
    peer_id: str
    addr: str
    proto: str


@dataclass
class Listed:
    peer_id: str
    addrs: list[str]


class FakeDaemon:
    """What circuits.py uses of hivemind's P2P, for one node of a FakeNet."""

    def __init__(self, net: FakeNet, peer_id: str) -> None:
        self.net, self.peer_id, self.handlers = net, peer_id, {}
        self._client = self

    async def connect(self, peer_id, maddrs) -> None:
        if str(peer_id) not in self.net.nodes:
            raise ConnectionError(f"no route to {peer_id}")

    async def add_binary_stream_handler(self, name, handler) -> None:
        self.handlers[name] = handler

    async def call_binary_stream_handler(self, peer_id, name):
        other = self.net.nodes.get(str(peer_id))
        if other is None or name not in other.handlers:
            raise ConnectionError(f"{peer_id} does not speak {name}")
        mine, theirs = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=mine)
        t_reader, t_writer = await asyncio.open_connection(sock=theirs)
        info = Info(self.peer_id, self.net.seen_at.get(self.peer_id, "/ip4/127.0.0.1/tcp/1"), name)
        self.net.tasks.append(asyncio.ensure_future(other.handlers[name](info, t_reader, t_writer)))
        return Info(str(peer_id), "", name), reader, writer

    async def list_peers(self):
        return [Listed(p, [self.net.seen_at.get(p, "/ip4/127.0.0.1/tcp/1")])
                for p in self.net.connected.get(self.peer_id, set())]


class FakeNet:
    def __init__(self) -> None:
        self.nodes: dict[str, FakeDaemon] = {}
        self.connected: dict[str, set[str]] = {}
        self.seen_at: dict[str, str] = {}  # node -> the address others see its connections come from
        self.tasks: list[asyncio.Task] = []

    def node(self, peer_id: str) -> FakeDaemon:
        self.nodes[peer_id] = FakeDaemon(self, peer_id)
        return self.nodes[peer_id]

    def connect(self, a: str, b: str) -> None:
        self.connected.setdefault(a, set()).add(b)
        self.connected.setdefault(b, set()).add(a)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def net():
    made = FakeNet()
    yield made
    await made.close()


async def echo_peer(net: FakeNet, seen: list[str], *, punch: bool = True) -> FakeDaemon:
    """A peer behind a NAT: answers a Ping with a Pong, and notes who dialled it and how."""
    daemon = net.node(PEER_ID)

    async def handler(channel: Channel) -> None:
        seen.append(channel.remote if channel.kind == RELAYED else f"{channel.kind} {channel.remote}")
        while (frame := await channel.recv()) is not None:
            await channel.send(Pong(id=frame.header.get("id", 0), peer_id="ab" * 20, model="m", start=0, end=1).to_header())

    await serve_relayed(daemon, handler, Gate(), punch=punch)
    return daemon


async def test_dial_back_tells_reachable_from_not_and_a_relay_from_a_plain_node(net):
    relay = RelayService(net.node(RELAY_ID))
    await relay.start()
    net.node("QmNotARelay1111111111111111111111111111111111")  # speaks no relay protocol
    asker = net.node(PEER_ID)
    net.seen_at[PEER_ID] = "/ip4/127.0.0.1/tcp/40000"
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    open_port = listening.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there any more
    try:
        plain = "/ip4/127.0.0.1/tcp/1/p2p/QmNotARelay1111111111111111111111111111111111"
        answers = dict(await check_reach(asker, [RELAY_MADDR, plain], open_port, timeout=10))
        assert answers[plain] is None
        assert (answers[RELAY_MADDR].addr, answers[RELAY_MADDR].reachable) == (f"127.0.0.1:{open_port}", True)
        [(_, reach)] = await check_reach(asker, [RELAY_MADDR], closed_port, timeout=10)
        assert (reach.addr, reach.reachable) == (f"127.0.0.1:{closed_port}", False)
    finally:
        listening.close()


async def test_frames_cross_a_circuit_and_the_peer_learns_who_dialled(net):
    relay = RelayService(net.node(RELAY_ID))
    await relay.start()
    seen: list[str] = []
    await echo_peer(net, seen)
    net.connect(RELAY_ID, PEER_ID)
    dial = Dialer(net.node(CLIENT_ID), timeout=10, punch=False)
    channel = await dial(relayed_way(f"/ip4/127.0.0.1/tcp/31337/p2p/{RELAY_ID}", PEER_ID))
    assert channel.kind == RELAYED
    for i in range(3):
        await channel.send(Ping(id=i).to_header())
        answer = parse((await asyncio.wait_for(channel.recv(), 10)).header)
        assert isinstance(answer, Pong) and answer.id == i
    assert seen == [f"{CLIENT_ID[-8:]} via relay {RELAY_ID[-8:]}"]
    assert relay.circuits_served == 1 and len(relay.open) == 1
    await channel.close()


async def test_a_hole_punch_over_a_circuit_gives_a_direct_connection(net):
    """Both ends connect to each other at once from the ports they told each other, at the hosts the relay sees
    them at (here loopback): the dialler gets a punched TCP connection and the peer serves it as one."""
    relay = RelayService(net.node(RELAY_ID))
    await relay.start()
    seen: list[str] = []
    await echo_peer(net, seen)
    net.connect(RELAY_ID, PEER_ID)
    dial = Dialer(net.node(CLIENT_ID), timeout=10)
    channel = await dial(relayed_way(RELAY_MADDR, PEER_ID))
    assert channel.kind == PUNCHED
    await channel.send(Ping(id=7).to_header())
    answer = parse((await asyncio.wait_for(channel.recv(), 10)).header)
    assert isinstance(answer, Pong) and answer.id == 7
    punched = [s for s in seen if s.startswith(PUNCHED)]
    assert len(punched) == 1 and punched[0].startswith(f"{PUNCHED} 127.0.0.1:"), seen
    assert await _until(lambda: relay.open == {})  # the relayed stream was let go once the punch held
    await channel.close()


async def test_a_peer_that_does_not_punch_stays_relayed_and_is_not_asked_again(net):
    """--no-hole-punching on the peer: it says so at once, the dialler keeps the relayed stream, and its next
    connections to that peer do not ask (a symmetric NAT would fail the same way every time)."""
    relay = RelayService(net.node(RELAY_ID))
    await relay.start()
    seen: list[str] = []
    await echo_peer(net, seen, punch=False)
    net.connect(RELAY_ID, PEER_ID)
    now = [0.0]
    dial = Dialer(net.node(CLIENT_ID), timeout=10, clock=lambda: now[0])
    first = await dial(relayed_way(RELAY_MADDR, PEER_ID))
    assert first.kind == RELAYED
    await first.send(Ping(id=1).to_header())
    assert isinstance(parse((await asyncio.wait_for(first.recv(), 10)).header), Pong)
    asked: list[int] = []
    real_connect = Connect.to_header

    def spy(msg):
        asked.append(msg.punch)
        return real_connect(msg)

    Connect.to_header = spy
    try:
        await (await dial(relayed_way(RELAY_MADDR, PEER_ID))).close()
        now[0] += 601  # NO_PUNCH_S later it asks again
        await (await dial(relayed_way(RELAY_MADDR, PEER_ID))).close()
    finally:
        Connect.to_header = real_connect
    assert asked[0] == 0 and asked[1] > 0
    assert all(s.endswith(f"via relay {RELAY_ID[-8:]}") for s in seen), seen
    await first.close()


async def test_a_relay_serves_only_peers_connected_to_it_and_within_its_limits(net):
    relay = RelayService(net.node(RELAY_ID), CircuitLimits(max_per_peer=1))
    await relay.start()
    await echo_peer(net, [])
    dial = Dialer(net.node(CLIENT_ID), timeout=10, punch=False)
    way = relayed_way(f"/ip4/127.0.0.1/tcp/31337/p2p/{RELAY_ID}", PEER_ID)
    with pytest.raises(PeerUnreachableError, match="not connected to this relay"):
        await dial(way)  # the relay dials out to nobody for a stranger
    net.connect(RELAY_ID, PEER_ID)
    first = await dial(way)
    with pytest.raises(PeerUnreachableError, match="holds its most circuits"):
        await dial(way)
    await first.close()
    await _until(lambda: relay.open == {})
    await (await dial(way)).close()  # a closed circuit gives its place back


async def test_a_circuit_past_its_duration_is_closed(net):
    relay = RelayService(net.node(RELAY_ID), CircuitLimits(max_duration_s=0.2))
    await relay.start()
    await echo_peer(net, [])
    net.connect(RELAY_ID, PEER_ID)
    channel = await Dialer(net.node(CLIENT_ID), timeout=10, punch=False)(relayed_way(RELAY_MADDR, PEER_ID))
    assert await asyncio.wait_for(channel.recv(), 30) is None  # closed by the relay, not by either end
    assert await _until(lambda: relay.open == {})


async def test_garbage_to_a_relay_gets_nothing_and_breaks_nothing(net):
    relay = RelayService(net.node(RELAY_ID))
    await relay.start()
    stranger = net.node(CLIENT_ID)
    _, reader, writer = await stranger.call_binary_stream_handler(RELAY_ID, "/molink/relay/1")
    writer.write(b"GET / HTTP/1.1\r\n\r\n" * 10)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 30) == b""  # closed: a stranger learns nothing
    await echo_peer(net, [])
    net.connect(RELAY_ID, PEER_ID)
    await (await Dialer(stranger, timeout=10, punch=False)(relayed_way(RELAY_MADDR, PEER_ID))).close()  # still relays


async def _until(condition, timeout: float = 30.0) -> bool:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
    return True


def test_a_peer_s_bytes_through_a_relay_keep_to_its_rate():
    """--relay-rate-mbit: what one dialling peer sends waits for the bucket (a fake clock; no real waiting)."""
    from swarm.net.circuits import Bucket

    now = [0.0]
    bucket = Bucket(1_000_000, clock=lambda: now[0])
    assert bucket.wait_s(600_000) == 0.0  # within a second's burst
    assert bucket.wait_s(600_000) == pytest.approx(0.2)  # 200 KB over: 0.2 s at 1 MB/s
    now[0] += 1.2  # waited, and one more second passed: the bucket refilled to its burst
    assert bucket.wait_s(1_000_000) == 0.0
    assert bucket.wait_s(3_000_000) == pytest.approx(3.0)
    assert Bucket(0, clock=lambda: now[0]).wait_s(10**9) == 0.0  # no cap
