"""An in-memory swarm for the sim tier: real PeerServers and real client sessions, no sockets.

- MemChannel: a Channel look-alike; headers go through msgpack on every send, like on the wire.
- MemNetwork: addresses -> PeerServers; connect() pairs two channels and starts the server's handler;
  kill() closes every channel of an address and refuses new ones; hang() black-holes its traffic.
- FakeSpan: layers whose output depends on every earlier input (a stand-in for a KV cache), computed layer
  by layer, so any split of the layers, and a correct replay, give the same numbers as one pass.
- FakeDiscovery: the DHT as a dict of records.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import torch

from peer.config import PeerConfig
from peer.server import PeerServer
from swarm.errors import PeerUnreachableError, TransportError
from swarm.net.records import Identity, PeerRecord, PeerState
from swarm.net.wire import Frame

HIDDEN = 4


class MemChannel:
    def __init__(self, net: MemNetwork, remote: str, dest: str) -> None:
        self.net = net
        self.remote = remote  # who is on the other side
        self.dest = dest      # the address whose traffic this channel carries (for hang/kill)
        self.peer: MemChannel | None = None
        self._inbox: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._closed = False
        self.kind = "direct"  # as a transport.Channel says how it was made
        self.rtt_s: float | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, header: dict[str, Any], body: bytes | memoryview = b"") -> None:
        if self._closed or self.peer is None or self.peer._closed:
            raise TransportError(f"channel to {self.remote} is closed")
        if self.dest in self.net.hung:
            return  # a hung peer: bytes go nowhere, nothing comes back
        decoded = msgpack.unpackb(msgpack.packb(header, use_bin_type=True), raw=False)
        self.peer._inbox.put_nowait(Frame(decoded, bytes(body)))

    async def recv(self) -> Frame | None:
        return await self._inbox.get()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.put_nowait(None)
        if self.peer is not None and not self.peer._closed:
            self.peer._closed = True
            self.peer._inbox.put_nowait(None)


class MemNetwork:
    def __init__(self) -> None:
        self.servers: dict[str, PeerServer] = {}
        self.hung: set[str] = set()
        self.channels: dict[str, list[MemChannel]] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def connector(self, source: str):
        async def connect(addr: str) -> MemChannel:
            server = self.servers.get(addr)
            if server is None:
                raise PeerUnreachableError(f"cannot connect to {addr}: refused")
            mine, theirs = MemChannel(self, addr, addr), MemChannel(self, source, addr)
            mine.peer, theirs.peer = theirs, mine
            for key in (addr, source):
                self.channels.setdefault(key, []).extend([mine, theirs])
            self.tasks.append(asyncio.ensure_future(server.serve(theirs)))
            return mine

        return connect

    async def kill(self, addr: str) -> None:
        self.servers.pop(addr, None)
        for ch in self.channels.pop(addr, []):
            await ch.close()

    def hang(self, addr: str) -> None:
        self.hung.add(addr)

    async def shutdown(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def layer_fn(layer: int, hidden: torch.Tensor, past: list[torch.Tensor]) -> torch.Tensor:
    """hidden: [B, T, H]; depends on every earlier input of this layer, like attention over a KV cache."""
    full = torch.cat([*past, hidden], dim=1)
    past.append(hidden)
    csum = full.cumsum(dim=1)[:, -hidden.shape[1]:]
    return hidden + 0.001 * (layer + 1) * csum


class FakeSpan:
    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.hidden_size = HIDDEN
        self.dtype = torch.float32
        self.fail_on_call: int | None = None  # raise on this forward call (0-based)
        self.calls = 0

    def new_cache(self) -> dict[int, list[torch.Tensor]]:
        return {i: [] for i in range(self.start, self.end)}

    def forward(self, hidden: torch.Tensor, cache: dict[int, list[torch.Tensor]]) -> torch.Tensor:
        call, self.calls = self.calls, self.calls + 1
        if self.fail_on_call is not None and call >= self.fail_on_call:
            raise RuntimeError("simulated compute failure")
        for layer in range(self.start, self.end):
            hidden = layer_fn(layer, hidden, cache[layer])
        return hidden


def reference(inputs: torch.Tensor, num_layers: int) -> torch.Tensor:
    """All layers over the whole sequence in one pass."""
    return FakeSpan(0, num_layers).forward(inputs, FakeSpan(0, num_layers).new_cache())


class FakeDiscovery:
    def __init__(self) -> None:
        self.records: dict[str, PeerRecord] = {}

    async def read(self, model: str) -> list[PeerRecord]:
        return [r for r in self.records.values() if r.model == model and r.state is not PeerState.OFFLINE]

    async def announce(self, record: PeerRecord, ttl: float) -> None:
        self.records[record.peer_id] = record

    async def withdraw(self, record: PeerRecord, ttl: float) -> None:
        self.records.pop(record.peer_id, None)

    async def rejoin(self) -> int:
        return len(self.records)

    async def shutdown(self) -> None:
        pass


async def add_peer(net: MemNetwork, dht: FakeDiscovery, name: str, start: int, end: int,
                   throughput: float = 100.0, span: Any = None) -> PeerServer:
    """A real PeerServer over the in-memory network, announced in the fake DHT; ``span`` (a real
    models.span.SpanModel, say) replaces the FakeSpan of layers [start, end)."""
    addr = f"{name}:1"
    server = PeerServer(
        config=PeerConfig(model="sim", inline_step_tokens=10**6),
        span=span if span is not None else FakeSpan(start, end),
        identity=Identity.generate(), model_key="sim", discovery=dht, connect=net.connector(addr),
    )
    server.addrs, server.throughput, server.state = (addr,), throughput, PeerState.ONLINE
    net.servers[addr] = server
    await dht.announce(server.record(), ttl=60)
    return server
