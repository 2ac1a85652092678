"""Test harness: a peer process that lies about its outputs (a stranger on a public swarm).

It does what ``python -m swarm.peer`` does for one span (``SpanModel.load``, a ``PeerServer`` with its own
identity, TCP port and signed DHT record, heartbeats), but adds noise to every output of its layers, and
announces twenty times the throughput it measured so that clients prefer it: clients count a claim for at most
ten times what they measure (routing/trust.py), which still puts it ahead of honest peers even when its own
measurement ran on a busy machine, and far below what they ban as a lie. Clients see a peer like any
other; only the numbers it returns are wrong.

    python -m tests.integration.liar_peer --initial-peer ADDR --layers 0:2 DIR

Prints ``liar ready: peer_id ID`` once announced; SIGTERM withdraws it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import torch

from models.source import resolve_model
from models.span import SpanModel
from peer.config import PeerConfig
from peer.engine import measure_throughput
from peer.main import announce_first, wait_for_signal
from peer.placement import parse_layers
from peer.server import PeerServer
from swarm.net.dht import HivemindDiscovery
from swarm.net.records import Identity

NOISE = 0.05  # times each output's standard deviation


def noisy(span: SpanModel) -> SpanModel:
    """``span`` with noise added to what its forward passes return."""
    forward, forward_batch = span.forward, span.forward_batch

    def spoil(out: torch.Tensor) -> torch.Tensor:
        return out + NOISE * out.std() * torch.randn_like(out)

    span.forward = lambda hidden, cache: spoil(forward(hidden, cache))  # type: ignore[method-assign]
    span.forward_batch = lambda rows: [spoil(o) for o in forward_batch(rows)]  # type: ignore[method-assign]
    return span


async def serve(initial_peer: str, layers: str, path: str) -> None:
    discovery = await HivemindDiscovery.create([initial_peer], listen="127.0.0.1:0", upnp=False)
    try:
        ckpt = resolve_model(path)
        start, end = parse_layers(layers, ckpt.num_layers)
        span = SpanModel.load(ckpt, start, end, dtype=torch.float32, progress=False)
        claimed = 20 * measure_throughput(span)
        config = PeerConfig(model=path, layers=layers, announce_interval_s=2.0, throughput=claimed)
        server = PeerServer(config=config, span=noisy(span), identity=Identity.generate(),
                            model_key=ckpt.model_key, discovery=discovery, num_layers=ckpt.num_layers)
        await server.start()
        await announce_first(discovery, server, config)
        beat = asyncio.ensure_future(server.heartbeat_forever())
        print(f"liar ready: peer_id {server.identity.peer_id}", flush=True)
        try:
            await wait_for_signal()
        finally:
            beat.cancel()
            await server.stop()
    finally:
        await discovery.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.integration.liar_peer", description=__doc__.split("\n\n")[0])
    p.add_argument("--initial-peer", required=True, help="DHT address of the bootstrap node")
    p.add_argument("--layers", required=True, help="START:END, the span it serves")
    p.add_argument("path", help="checkpoint directory")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    asyncio.run(serve(args.initial_peer, args.layers, args.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
