"""What NATs cost: decode tokens/s and time to first token through peers reached directly, by hole punches, and
through a relay, side by side.

The machines are network namespaces (tests/integration/natnet.py): a relay (a bootstrap with --relay) and two
public hosts on an "internet" bridge, and three homes behind cone NATs (two for peers, one for the client).
Three chains serve three copies of a generated Llama (the decode benchmark's tiny or medium size; the copies
differ in their weights, so they are three models and never mix): the *direct* chain on the public hosts; the
*punched* chain in the two NATed homes, where every edge (client to hop 1, hop 1 to hop 2, hop 2 back) becomes
a hole-punched TCP connection; the *relayed* chain in the same two homes, on other ports, with hole punching
off (its peers run --no-hole-punching, its client ``hole_punching=False``), so every edge of the same links
goes through the relay. All run at once and the client measures them in alternation (median of --repeats),
greedy, 64 tokens after a 16-token prompt; how each hop was reached is in the result. Needs root, iproute2 and
nftables. Prints one JSON object and writes it to benchmarks/results/nat-<date>.json with the machine's facts.

    .venv/bin/python benchmarks/nat.py [--size tiny] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import DEFAULT_MODELS_DIR, models_root, publish  # noqa: E402
from benchmarks.decode import SIZES, VOCAB, decode, prompts, ttft  # noqa: E402

CHAINS = {"direct": ("pub1", "pub2"), "punched": ("a", "b"), "relayed": ("a", "b")}
PORTS = {"direct": 31400, "punched": 31400, "relayed": 32400}  # a host's peers: this port, then +100
RELAY_PORT = 31337


def make_copy(size: str, root: Path, seed: int) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    path = root / f"{size}-seed{seed}"
    if not (path / "config.json").exists():
        torch.manual_seed(seed)
        LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, max_position_embeddings=2048, **SIZES[size])).save_pretrained(path)
    return path


def client(models: dict[str, str], relay: str, repeats: int) -> dict[str, object]:
    """Runs in the client's home: both chains in alternation."""
    from routing.config import ClientConfig
    from swarm import AutoDistributedModelForCausalLM

    short, _ = prompts()
    loaded = {name: AutoDistributedModelForCausalLM.from_pretrained(
        path, initial_peers=[relay], config=ClientConfig(route_wait_s=90, hole_punching=name != "relayed"))
        for name, path in models.items()}
    try:
        def generate(model):
            return lambda ids, n, streamer: model.generate(ids, max_new_tokens=n, do_sample=False, streamer=streamer)

        for model in loaded.values():
            generate(model)(short, 2, None)  # warm-up: connections, circuits, proofs and timings of the peers
        speeds: dict[str, list[float]] = {name: [] for name in loaded}
        firsts: dict[str, list[float]] = {name: [] for name in loaded}
        for _ in range(repeats):
            for name, model in loaded.items():
                firsts[name].append(ttft(generate(model), short))
                speeds[name].append(decode(generate(model), short)[0])
        routes = {name: [{"addr": h.addr, "how": (model.client.reached(h.addr) or ("closed",))[0]}
                         for h in model.last_route.hops] for name, model in loaded.items()}
    finally:
        for model in loaded.values():
            model.close()
    return {"speeds": speeds, "ttfts": firsts, "routes": routes}


def bench(size: str, root: Path, repeats: int) -> dict[str, object]:
    from swarm.launch import bootstrap_address, start_process
    from tests.integration.natnet import Internet

    models = {chain: make_copy(size, root, seed) for seed, chain in enumerate(CHAINS, start=1)}
    half = SIZES[size]["num_hidden_layers"] // 2
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    logs = root / "nat-logs"
    logs.mkdir(exist_ok=True)
    procs = []
    with Internet(["relay", "pub1", "pub2"], {"a": "cone", "b": "cone", "c": "cone"}) as net:
        try:
            relay_proc = start_process(net.wrap("relay", [sys.executable, "-m", "swarm.bootstrap", "--listen",
                                                          f"0.0.0.0:{RELAY_PORT}", "--relay"]), "relay", logs, env)
            procs.append(relay_proc)
            relay = bootstrap_address(relay_proc, 120)
            for chain, hosts in CHAINS.items():
                for i, host in enumerate(hosts):
                    procs.append(start_process(net.wrap(host, [
                        sys.executable, "-m", "swarm.peer", "--model", str(models[chain]), "--initial-peers", relay,
                        "--listen", f"0.0.0.0:{PORTS[chain] + 100 * i}", "--layers", f"{i * half}:{(i + 1) * half}",
                        "--threads", "1", "--no-progress", *(["--no-hole-punching"] if chain == "relayed" else [])]),
                        f"{chain}-{host}", logs, env))
            for proc in procs[1:]:
                proc.wait_line("peer ready:", 300)
            result = subprocess.run(net.wrap("c", [
                sys.executable, str(Path(__file__).resolve()), "--client", json.dumps({k: str(v) for k, v in models.items()}),
                "--relay", relay, "--repeats", str(repeats)]), capture_output=True, text=True, timeout=1200, cwd=ROOT,
                env={**os.environ, **env})
            if result.returncode != 0:
                raise RuntimeError(f"the client failed: {result.stderr[-3000:]}")
            measured = json.loads(result.stdout.strip().splitlines()[-1])
            circuits = relay_proc.log_path.read_text().count("circuit ")
            # how each chain's first peer reached the second (its push connection): a peer logs a punched or
            # relayed next hop when it connects, a direct one says nothing
            pushes = {chain: "relayed" if "reached relayed" in text else "punched" if "reached punched" in text
                      else "direct" for chain in CHAINS
                      for text in [(logs / f"{chain}-{CHAINS[chain][0]}.log").read_text()]}
        finally:
            for proc in procs:
                proc.stop()
    speed = {name: statistics.median(v) for name, v in measured["speeds"].items()}
    first = {name: statistics.median(v) for name, v in measured["ttfts"].items()}
    return {
        **{f"{chain}_tok_s": round(speed[chain], 2) for chain in CHAINS},
        "punched_slowdown": round(speed["direct"] / speed["punched"], 3),
        "relayed_slowdown": round(speed["direct"] / speed["relayed"], 3),
        **{f"{chain}_ttft_s": round(first[chain], 4) for chain in CHAINS},
        "speeds": measured["speeds"], "ttfts": measured["ttfts"], "routes": measured["routes"],
        "pushes": pushes, "relay_log_circuit_lines": circuits,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models-dir", default=DEFAULT_MODELS_DIR)
    p.add_argument("--client", default=None, help=argparse.SUPPRESS)  # the client's half, run inside its home
    p.add_argument("--relay", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        models_root(args.models_dir)  # quiet logs
        print(json.dumps(client(json.loads(args.client), args.relay, args.repeats)), flush=True)
        return 0
    from tests.integration.natnet import natnet_usable

    why = natnet_usable()
    if why is not None:
        print(f"cannot build the NATed machines here: {why}", file=sys.stderr)
        return 2
    root = models_root(args.models_dir)
    fields = bench(args.size, root, args.repeats)
    publish("nat", {"model": f"{args.size} llama, 2 peers per chain, client and NATed peers behind cone NATs", "size": args.size,
                    "repeats": args.repeats, "new_tokens": 64, **fields})
    return 0


if __name__ == "__main__":
    sys.exit(main())
