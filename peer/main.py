"""Run a peer: resolve the model, choose the span, load it, serve, announce, and leave cleanly.

The imperative shell around PeerServer. Failures a user can fix (unknown model, bad span, too little memory,
unreachable bootstrap) surface as ConfigError and become one line and a non-zero exit in swarm.peer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import sys
from typing import Any

import torch

from peer.admission import KVBudget, kv_budget_bytes
from peer.config import PeerConfig
from peer.memory import (
    GB,
    MemoryPlan,
    check_fits,
    element_size,
    free_memory,
    kv_bytes_per_token,
    layer_sizes,
    span_plan,
)
from peer.placement import SERVING_STATES, choose_span, layers_that_fit, parse_layers
from peer.rates import ThroughputCache
from peer.server import PeerServer
from swarm.errors import ConfigError, SpanError, TransportError
from swarm.http import serve_metrics
from swarm.net.addresses import bind_listener, check_port_free
from swarm.net.circuits import Dialer, check_reach, serve_relayed
from swarm.net.records import MAX_ADDRS, Identity
from swarm.net.transport import format_addr, parse_addr
from swarm.net.ways import Reachability, choose_ways

log = logging.getLogger("molink.peer")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, not {name!r}") from None


FREE_SHARE = 0.9  # without --max-memory, a peer plans to use at most this share of the device's free memory


async def choose_layers(
    config: PeerConfig, ckpt: Any, discovery: Any, sizes: list[int], dtype: torch.dtype
) -> tuple[int, int]:
    """The span to serve: --layers, else --num-layers (or as many as fit --max-memory, else the device's free
    memory) where the swarm is weakest (peer/placement.py). ``sizes``: each layer's weight bytes."""
    total = ckpt.num_layers
    if config.layers is not None:
        return parse_layers(config.layers, total)
    if config.num_layers is not None:
        if not 1 <= config.num_layers <= total:
            raise SpanError(f"--num-layers {config.num_layers} is outside 1..{total}")
        n = config.num_layers
    else:
        n = span_size(config, ckpt, sizes, dtype)
    records = await discovery.read(ckpt.model_key) if discovery is not None else []
    start, end = choose_span(total, n, records, throughput=own_throughput(config, ckpt, n))
    log.info("placement: layers %d:%d, where this peer raises the swarm's throughput most (%d serving peers; "
             "peer/placement.py)", start, end, sum(r.state in SERVING_STATES for r in records))
    return start, end


def own_throughput(config: PeerConfig, ckpt: Any, n: int) -> float:
    """This peer's tokens/s through ``n`` layers before it has loaded any: --throughput, else the figure this
    device, model and dtype had last time (peer/rates.py), else 0 (placement then goes by layer capacity)."""
    if config.throughput:
        return config.throughput
    per_layer = ThroughputCache().get(ThroughputCache.key(ckpt.model_key, config.device, config.dtype))
    return 1.0 / (per_layer * n) if per_layer else 0.0


def span_size(config: PeerConfig, ckpt: Any, sizes: list[int], dtype: torch.dtype) -> int:
    """How many layers fit: the budget (--max-memory, else FREE_SHARE of the device's free memory) over one
    layer's weights (the largest: MoE and dense layers differ) plus its KV reserve; said in the log."""
    if config.max_memory_gb is not None:
        budget, source = config.max_memory_gb * GB, "--max-memory"
    else:
        budget = FREE_SHARE * free_memory(config.device)
        source = f"{FREE_SHARE:.0%} of the memory free on {config.device}"
    kv = config.kv_reserve_tokens * kv_bytes_per_token(ckpt.config, dtype)
    n = layers_that_fit(budget, float(max(sizes) + kv), 0.0, ckpt.num_layers, what=source)
    log.info("span size: %d of %d layers fit in %s (%s) at %s per layer (%s of weights + %s of KV cache for %d "
             "tokens)", n, ckpt.num_layers, size_text(budget), source, size_text(max(sizes) + kv),
             size_text(max(sizes)), size_text(kv), config.kv_reserve_tokens)
    return n


def load_span(config: PeerConfig, ckpt: Any, start: int, end: int, dtype: torch.dtype) -> Any:
    """Read layers [start, end) (blocking: run it off the event loop) and tune its linears on a CPU."""
    from models.kernels import tune_linears
    from models.span import SpanModel

    span = SpanModel.load(ckpt, start, end, dtype=dtype, device=config.device, progress=config.progress)
    if config.tune_linears and span.device.type == "cpu":
        log.info("%s", tune_linears(span.base).describe())
    return span


def size_text(nbytes: float) -> str:
    return f"{nbytes / GB:.2f} GB" if nbytes >= GB / 10 else f"{nbytes / 2**20:.2f} MB"


def max_memory_bytes(config: PeerConfig) -> float | None:
    return config.max_memory_gb * GB if config.max_memory_gb is not None else None


def check_memory(
    config: PeerConfig, ckpt: Any, start: int, end: int, sizes: list[int], dtype: torch.dtype
) -> MemoryPlan:
    """Refuse a span whose weights and KV reserve exceed --max-memory or the device's free memory, before
    a single weight is read."""
    plan = span_plan(sizes, start, end, kv_bytes_per_token(ckpt.config, dtype), config.kv_reserve_tokens)
    check_fits(plan, max_memory_bytes=max_memory_bytes(config), free_bytes=free_memory(config.device),
               device=config.device)
    log.info("memory: %s", plan.describe())
    return plan


def session_budget(config: PeerConfig, ckpt: Any, plan: MemoryPlan, dtype: torch.dtype) -> KVBudget:
    """What the span's sessions may take (KV caches and replay history), measured once the weights are in."""
    per_token = kv_bytes_per_token(ckpt.config, dtype) * (plan.end - plan.start)
    total = kv_budget_bytes(max_memory_bytes(config), free_memory(config.device), plan.weight_bytes,
                            config.kv_reserve_tokens, per_token)
    return KVBudget(total_bytes=total, kv_bytes_per_token=per_token,
                    history_bytes_per_token=int(ckpt.config.hidden_size) * element_size(dtype))


def default_dht_listen(listen: str) -> str:
    """The DHT node listens on the data port's host, on the next port when the data port is fixed (so a
    port forward of PORT and PORT+1 covers both), else on any free port."""
    host, port = parse_addr(listen)
    return format_addr(host, port + 1 if 0 < port < 65535 else 0)


async def run_peer(config: PeerConfig, *, ready: Any = None, moved: Any = None, version: str = "0") -> None:
    """Serve until SIGINT/SIGTERM. ``ready(server)`` is called once the peer is announced, ``moved(server)``
    after each move of its span (rebalancing).

    Everything a user can get wrong is checked before any weight is downloaded or read: the ports (the data
    port is bound here and held), the model name (config and index only), the span, and the memory.
    """
    from models.source import resolve_model
    from swarm.net.dht import HivemindDiscovery

    if config.threads:
        torch.set_num_threads(config.threads)
    dtype = torch_dtype(config.dtype)
    if config.device != "cpu" and config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {config.device}: no CUDA device is available on this machine")
    host, port = parse_addr(config.listen)
    dht_listen = config.dht_listen or default_dht_listen(config.listen)
    listener = bind_listener(host, port, "--listen")
    server: PeerServer | None = None
    try:
        check_port_free(*parse_addr(dht_listen), "DHT port (--dht-listen)")
        ckpt = resolve_model(config.model, cache_dir=config.cache_dir)
        if config.layers is not None:
            parse_layers(config.layers, ckpt.num_layers)  # fail before joining the DHT
        identity = Identity.load_or_create(config.identity)
        discovery = await HivemindDiscovery.create(
            config.initial_peers, listen=dht_listen, upnp=config.upnp, signer=identity
        )
        try:
            sizes = layer_sizes(ckpt.config, dtype)  # the model built once on the meta device
            start, end = await choose_layers(config, ckpt, discovery, sizes, dtype)
            plan = check_memory(config, ckpt, start, end, sizes, dtype)
            log.info("model %s (%s, %d layers): serving layers %d:%d", ckpt.model_key, ckpt.display_name,
                     ckpt.num_layers, start, end)
            loop = asyncio.get_running_loop()
            span = await loop.run_in_executor(None, lambda: load_span(config, ckpt, start, end, dtype))
            kv_budget = session_budget(config, ckpt, plan, dtype)
            server = PeerServer(config=config, span=span, identity=identity, model_key=ckpt.model_key,
                                discovery=discovery, version=version, listener=listener,
                                num_layers=ckpt.num_layers, model_name=ckpt.display_name, kv_budget=kv_budget,
                                connect=Dialer(discovery.p2p, punch=config.hole_punching),
                                throughput_cache=ThroughputCache())
            await server.start()
            if config.metrics_port:
                serve_metrics(config.metrics_port, config.listen, server.metrics.registry)
            await serve_relayed(discovery.p2p, server.serve, server.gate, server.limits, punch=config.hole_punching)
            reach = await find_reach(discovery, config, server)
            server.addrs, server.reach = reach.ways, reach.kind
            log.info("%s", reach.summary)
            await announce_first(discovery, server, config)
            heartbeat = asyncio.ensure_future(server.heartbeat_forever())
            rebalance = None
            if config.layers is None and config.rebalance_every_s > 0:
                async def load(a: int, b: int) -> Any:
                    return await loop.run_in_executor(None, lambda: load_span(config, ckpt, a, b, dtype))
                rebalance = asyncio.ensure_future(server.rebalance_forever(load, random.Random(), moved))
            if ready is not None:
                ready(server)
            stop = asyncio.ensure_future(wait_for_signal())
            done, _ = await asyncio.wait({stop, *([rebalance] if rebalance else [])},
                                         return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if rebalance in done and not rebalance.cancelled() and rebalance.exception() is not None:
                raise ConfigError(f"the peer lost its span while moving it: {rebalance.exception()}")
            log.info("shutting down: draining %d sessions (at most %.0f s)", len(server.sessions),
                     config.drain_timeout_s)
            heartbeat.cancel()
            if rebalance is not None:
                rebalance.cancel()
            await server.drain(config.drain_timeout_s)
        finally:
            if server is not None:
                await server.stop()
            await discovery.shutdown()
    finally:
        listener.close()


async def find_reach(discovery: Any, config: PeerConfig, server: PeerServer) -> Reachability:
    """What this peer publishes: the relays among its initial peers connect back to its data port, and a peer
    none of them reached serves through them (``swarm/net/ways.py: choose_ways``)."""
    answers = await check_reach(discovery.p2p, config.initial_peers, server.bound_port) if config.initial_peers else []
    relays = [maddr for maddr, reach in answers if reach is not None]
    observed = [(reach.addr, reach.reachable) for _, reach in answers if reach is not None]
    return choose_ways(server.addrs, announce=config.announce_addr, relays=relays, observed=observed,
                       target=discovery.p2p_id, max_ways=MAX_ADDRS)


async def announce_first(discovery: Any, server: PeerServer, config: PeerConfig, attempts: int = 6) -> None:
    """The first announcement, retried with back-off: right after peers died, the DHT nodes nearest the key
    can be the dead ones, and a store can fail until the routing tables have moved on."""
    for attempt in range(attempts):
        try:
            await discovery.announce(server.record(), ttl=config.ttl_s)
            return
        except TransportError as e:
            if attempt == attempts - 1:
                raise
            delay = min(0.5 * 2**attempt, 4.0)
            log.warning("announce failed (%s); retrying in %.1f s", e, delay)
            await asyncio.sleep(delay)


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: fall back to KeyboardInterrupt for Ctrl+C
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    await stop.wait()


def print_moved(server: PeerServer) -> None:
    print(f"peer moved: {server.addr} layers {server.span.start}:{server.span.end} "
          f"throughput {server.throughput:.1f} tok/s", flush=True)


def print_ready(server: PeerServer) -> None:
    print(
        f"peer ready: {server.addr} layers {server.span.start}:{server.span.end} "
        f"peer_id {server.identity.peer_id} throughput {server.throughput:.1f} tok/s",
        flush=True,
    )
    sys.stdout.flush()
