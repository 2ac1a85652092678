"""Weak links: time to first token and decode ms/token through a 3-peer chain whose every hop crosses an emulated
home link (``python -m swarm.linkem``), with molink's protocol and with the same code in a naive mode, beside the
floor those links allow.

Bootstrap and 3 peers on 127.0.0.1; in front of each peer a link emulator, which the peer publishes with
``--announce-addr``, so the client's connections and every push between peers cross an emulated link (both
ways). For each link setting (one-way delay, rate; also "none": the emulator with nothing set, to measure
compute), a fresh client measures, in alternation (median of --repeats):

- ``ttft_512`` / ``ttft_2048``: time to the first token of a 512- and a 2,048-token prompt;
- ``decode_ms``: greedy ms per token over 16 tokens after a 16-token prompt;

in two modes: ``molink`` (today's defaults: a long prefill flows through the route as a pipeline of chunks
sized from the measured links, ``routing/prefill.py``, and the last hop returns only the last position) and
``naive`` (the same code with ``ClientConfig(prefill_chunk_tokens=0, trim_results=False)``: the prompt crosses
each link whole and every position comes back); ``float16`` and ``int8``, the defaults with hidden states
encoded on every link (``ClientConfig.wire_codec``; the defaults send them raw, exact); and ``auto``, each
link's codec chosen from its measured bandwidth (``routing/codecs.py``). None speculates: benchmarks/speculative.py
measures decoding with a draft over the same chains.

The floor of a prefill is max(transfer, compute) + path latency: the prompt's fp32 hidden states crossing the
slowest link once (a perfect pipeline), the compute measured at "none", and one delay per link (4: client, 2
pushes, back). The floor of decode is its "none" time plus the 4 delays. Prints one JSON object and writes
benchmarks/results/weak_links-<date>.json with the machine's facts.

    .venv/bin/python benchmarks/weak_links.py [--sizes tiny h512] [--repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import DEFAULT_MODELS_DIR, models_root, publish  # noqa: E402
from benchmarks.decode import SIZES, VOCAB, TimingStreamer  # noqa: E402

MODELS = {"tiny": SIZES["tiny"],
          "h512": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=1376)}
LINKS = {"none": (0.0, 0.0), "100mbit-25ms": (25.0, 100.0), "20mbit-50ms": (50.0, 20.0)}  # (delay ms, Mbit/s)
SPANS = ["0:3", "3:6", "6:8"]
MODES = {"molink": {}, "auto": {"wire_codec": "auto"}, "float16": {"wire_codec": "float16"},
         "int8": {"wire_codec": "int8"}, "naive": {"trim_results": False, "prefill_chunk_tokens": 0}}
DECODE_TOKENS = 16
ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def make_model(size: str, root: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    path = root / f"weak-{size}"
    if not (path / "config.json").exists():
        torch.manual_seed(0)
        LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, max_position_embeddings=4096, **MODELS[size])).save_pretrained(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompt(n: int) -> torch.Tensor:
    return torch.randint(3, VOCAB, (1, n), generator=torch.Generator().manual_seed(n))


def measure(model, repeats: int) -> dict[str, float]:
    def first_token_s(ids: torch.Tensor) -> float:
        clock = TimingStreamer()
        model.generate(ids, max_new_tokens=1, do_sample=False, streamer=clock)
        return clock.token_times[0] - clock.start

    def decode_ms() -> float:
        clock = TimingStreamer()
        model.generate(prompt(16), max_new_tokens=DECODE_TOKENS + 1, do_sample=False, streamer=clock)
        return (clock.token_times[-1] - clock.token_times[0]) / DECODE_TOKENS * 1e3

    model.generate(prompt(16), max_new_tokens=2, do_sample=False)  # warm-up: links, proofs, first timings
    runs: dict[str, list[float]] = {"ttft_512": [], "ttft_2048": [], "decode_ms": []}
    for _ in range(repeats):
        runs["ttft_512"].append(first_token_s(prompt(512)))
        runs["ttft_2048"].append(first_token_s(prompt(2048)))
        runs["decode_ms"].append(decode_ms())
    return {k: round(statistics.median(v), 4) for k, v in runs.items()}


def measured_links(model: Any) -> dict[str, Any]:
    """The links' bandwidth as molink measured it (swarm/net/probe.py): the client's to each peer, and each
    peer's to the peers it pushes to (from their records)."""
    client = model.client
    records = client.run(client.records())
    names = {r.peer_id: f"{r.start}:{r.end}" for r in records}
    return {"client_to": {names.get(r.peer_id, a): round(b * 8 / 1e6, 1) for a, b in client.bandwidths().items()
                          for r in records if r.addrs[0] == a},
            "peer_edges": {f"{names[r.peer_id]}->{names.get(p, p[:8])}": v for r in records
                           for p, v in r.mbits.items()}}


@contextlib.contextmanager
def emulated_chain(path: Path, spans: list[str], dtype: str | None = None) -> Iterator[tuple[Any, list[tuple[int, int]]]]:
    """Bootstrap and one peer per span on 127.0.0.1, each announcing an emulator port in front of its own:
    yields (the LocalSwarm, [(data port, emulator port)]); ``emulated`` puts emulators on those ports."""
    from swarm.launch import LocalSwarm

    ports = [(free_port(), free_port()) for _ in spans]  # (data port, emulator port) per peer
    args = ["--threads", "1", *(["--dtype", dtype] if dtype else [])]
    with LocalSwarm(str(path), [], peer_args=args, env=ENV) as swarm:
        for i, (span, (data, link)) in enumerate(zip(spans, ports, strict=True)):
            swarm.start_peer(span, name=f"peer{i}", wait=False, extra=[
                "--listen", f"127.0.0.1:{data}", "--announce-addr", f"127.0.0.1:{link}",
                # any free DHT port: the default (the data port + 1) may be another port picked here
                "--dht-listen", "127.0.0.1:0"])
        for peer in swarm.peers:
            peer.wait_line("peer ready:", 300)
        yield swarm, ports


@contextlib.contextmanager
def emulated(swarm: Any, ports: list[tuple[int, int]], name: str, delay_ms: float, rate_mbit: float) -> Iterator[None]:
    """Link emulators (``python -m swarm.linkem``) of this delay and rate in front of every peer of ``swarm``."""
    from swarm.launch import start_process

    emulators = [start_process([sys.executable, "-m", "swarm.linkem", "--listen", f"127.0.0.1:{link}",
                                "--target", f"127.0.0.1:{data}", "--delay-ms", str(delay_ms),
                                "--rate-mbit", str(rate_mbit), "--log-level", "WARNING"],
                               f"linkem-{name}-{i}", swarm.log_dir, ENV)
                 for i, (data, link) in enumerate(ports)]
    try:
        for proc in emulators:
            proc.wait_line("linkem ready:", 60)
        yield
    finally:
        for proc in emulators:
            proc.stop()


def bench(size: str, root: Path, repeats: int) -> dict[str, object]:
    from routing.config import ClientConfig
    from swarm import AutoDistributedModelForCausalLM

    path = make_model(size, root)
    hidden = MODELS[size]["hidden_size"]
    results: dict[str, dict[str, dict[str, float]]] = {}
    with emulated_chain(path, SPANS) as (swarm, ports):
        for name, (delay_ms, rate_mbit) in LINKS.items():
            with emulated(swarm, ports, name, delay_ms, rate_mbit):
                for mode, overrides in MODES.items():
                    with AutoDistributedModelForCausalLM.from_pretrained(
                            str(path), initial_peers=[swarm.address],
                            config=ClientConfig(route_wait_s=120, request_timeout_s=120, **overrides)) as model:
                        results.setdefault(name, {})[mode] = measure(model, repeats)
                        if mode == "molink":
                            results[name]["measured_mbit"] = measured_links(model)
                    print(f"{size} {name} {mode}: {results[name][mode]}", file=sys.stderr, flush=True)
    none = results["none"]["molink"]
    for name, (delay_ms, rate_mbit) in LINKS.items():
        if name == "none":
            continue
        path_s = 4 * delay_ms / 1e3
        floor = {}
        for tokens in (512, 2048):
            transfer = tokens * hidden * 4 * 8 / (rate_mbit * 1e6)
            floor[f"ttft_{tokens}"] = round(max(transfer, none[f"ttft_{tokens}"]) + path_s, 4)
        floor["decode_ms"] = round(none["decode_ms"] + path_s * 1e3, 2)
        results[name]["floor"] = floor
        results[name]["molink_over_floor"] = {k: round(results[name]["molink"][k] / v, 3) for k, v in floor.items()}
        results[name]["naive_over_molink"] = {k: round(results[name]["naive"][k] / results[name]["molink"][k], 3)
                                              for k in floor}
        for mode in ("float16", "auto"):
            results[name][f"{mode}_over_floor"] = {k: round(results[name][mode][k] / v, 3) for k, v in floor.items()}
    return {"hidden_size": hidden, "layers": MODELS[size]["num_hidden_layers"], "spans": SPANS, "links": results}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", choices=sorted(MODELS), default=["tiny", "h512"])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--models-dir", default=DEFAULT_MODELS_DIR)
    args = p.parse_args()
    root = models_root(args.models_dir)
    fields = {size: bench(size, root, args.repeats) for size in args.sizes}
    publish("weak_links", {"repeats": args.repeats, "decode_tokens": DECODE_TOKENS,
                           "link_settings": {k: {"delay_ms": d, "rate_mbit": r} for k, (d, r) in LINKS.items()},
                           **fields})
    return 0


if __name__ == "__main__":
    sys.exit(main())
