"""Test harness: one process serving the same span of many tiny models (the zoo matrix's shared peers).

The zoo matrix (tests/integration/test_zoo_swarm.py) sends every architecture through three real peers.
Three processes per row would be ~150 process starts on a 2-core CI machine, so each of three host
processes serves one span position for every row instead: per model it does what a peer process does
for one (``SpanModel.load``, a ``PeerServer`` with its own identity, TCP port and signed DHT record,
heartbeats), all on one event loop sharing one DHT node. Clients cannot tell the difference: they find
the peers in the DHT and stream hidden states to them over the wire like to any other.

    python -m tests.integration.zoo_host --initial-peer ADDR --layers 1:3 DIR[@DTYPE] [DIR[@DTYPE] ...]

Prints ``zoo host ready: N servers, layers A:B, at ADDR ...`` once all are announced; SIGTERM withdraws and stops them all.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import torch

from models.source import resolve_model
from models.span import SpanModel
from peer.config import PeerConfig
from peer.main import announce_first, torch_dtype, wait_for_signal
from peer.placement import parse_layers
from peer.server import PeerServer
from swarm.net.dht import HivemindDiscovery
from swarm.net.records import Identity


def parse_entry(entry: str) -> tuple[str, str]:
    """'DIR' or 'DIR@DTYPE' -> (DIR, dtype name)."""
    path, _, dtype = entry.partition("@")
    return path, dtype or "float32"


async def serve(initial_peer: str, layers: str, entries: list[str], announce_interval_s: float) -> None:
    discovery = await HivemindDiscovery.create([initial_peer], listen="127.0.0.1:0", upnp=False)
    servers: list[PeerServer] = []
    beats: list[asyncio.Future] = []
    try:
        for entry in entries:
            path, dtype = parse_entry(entry)
            ckpt = resolve_model(path)
            start, end = parse_layers(layers, ckpt.num_layers)
            span = SpanModel.load(ckpt, start, end, dtype=torch_dtype(dtype), progress=False)
            config = PeerConfig(model=path, layers=layers, dtype=dtype, announce_interval_s=announce_interval_s)
            server = PeerServer(config=config, span=span, identity=Identity.generate(), model_key=ckpt.model_key,
                                discovery=discovery)
            servers.append(server)
            await server.start()
            await announce_first(discovery, server, config)
        beats = [asyncio.ensure_future(server.heartbeat_forever()) for server in servers]
        addrs = " ".join(server.addr for server in servers)
        print(f"zoo host ready: {len(servers)} servers, layers {layers}, at {addrs}", flush=True)
        await wait_for_signal()
    finally:
        for beat in beats:
            beat.cancel()
        for server in servers:
            await server.stop()
        await discovery.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.integration.zoo_host", description=__doc__.split("\n\n")[0])
    p.add_argument("--initial-peer", required=True, help="DHT address of the bootstrap node")
    p.add_argument("--layers", required=True, help="START:END, the span served for every model")
    p.add_argument("--announce-interval", type=float, default=20.0, help="heartbeat period in seconds")
    p.add_argument("entries", nargs="+", help="checkpoint directories, each optionally @float16 or @bfloat16")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    asyncio.run(serve(args.initial_peer, args.layers, args.entries, args.announce_interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
