"""Concurrency benchmark: aggregate decode throughput of 1, 4, 8, 16 clients through one molink swarm.

The generated medium Llama (hidden 1024 x 16 layers, the Petals baseline's shape) on a bootstrap and 2 peers
on loopback (layers 0:8 and 8:16, one torch thread each). For each number of clients N, N threads call
generate() at once on one model object: a 16-token prompt (random ids, seeded) and 64 greedy new tokens each.
Reported per N: aggregate decode tokens/s (N x 64 over the time from the first client's first token to the
last client's last token), each client's p50/p95 time per token, and whether every output equals that
prompt's solo output. With --petals, the same run also runs the Petals baseline's own benchmark script
(where a checkout keeps it beside the project; medium size, PETALS_CONCURRENCY=N) on the same checkpoint
shape and reports the ratios; the swarms run one after the other, never at once. Prints one JSON object and writes
benchmarks/results/concurrency-<date>.json with the machine's facts. Compare ratios within one run only.

    .venv/bin/python benchmarks/concurrency.py [--clients 1 4 8 16] [--petals]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import DEFAULT_MODELS_DIR, models_root, publish  # noqa: E402
from benchmarks.decode import VOCAB, make_model  # noqa: E402
from swarm.demo import TimingStreamer  # noqa: E402

PETALS = ROOT.parent / "shared" / "baselines" / "petals"
NEW_TOKENS = 64


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_clients(model, prompts: list[torch.Tensor]) -> dict[str, object]:
    """All prompts generated at once, one thread each; timing per client from its streamer."""
    streamers = [TimingStreamer() for _ in prompts]
    outputs: list[list[int] | None] = [None] * len(prompts)
    errors: list[BaseException] = []
    start = threading.Barrier(len(prompts))

    def client(i: int) -> None:
        try:
            start.wait()
            streamers[i].start = time.perf_counter()
            out = model.generate(prompts[i], max_new_tokens=NEW_TOKENS + 1, do_sample=False, streamer=streamers[i])
            outputs[i] = out[0, prompts[i].shape[1]:].tolist()
        except BaseException as e:  # noqa: BLE001 - reported in the result, the other clients go on
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]!r}")
    first = min(s.token_times[0] for s in streamers)
    last = max(s.token_times[-1] for s in streamers)
    gaps = [[b - a for a, b in zip(s.token_times, s.token_times[1:], strict=False)] for s in streamers]
    return {
        "aggregate_decode_tok_s": round(len(prompts) * NEW_TOKENS / (last - first), 2),
        "per_client_p50_ms": [round(1000 * statistics.median(g), 1) for g in gaps],
        "per_client_p95_ms": [round(1000 * percentile(g, 0.95), 1) for g in gaps],
        "ttft_s": [round(s.token_times[0] - s.start, 3) for s in streamers],
        "outputs": outputs,
    }


def bench_molink(path: Path, counts: list[int], peer_args: list[str]) -> dict[str, object]:
    from routing.config import ClientConfig
    from swarm import AutoDistributedModelForCausalLM
    from swarm.launch import LocalSwarm

    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, VOCAB, (1, 16), generator=gen) for _ in range(max(counts))]
    results: dict[str, object] = {}
    swarm = LocalSwarm(str(path), ["0:8", "8:16"], peer_args=["--threads", "1", *peer_args], env={"HF_HUB_OFFLINE": "1"})
    with swarm, AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[swarm.address], config=ClientConfig(route_wait_s=60)
    ) as model:
        model.generate(prompts[0], max_new_tokens=2, do_sample=False)  # warm-up: connections, allocator
        solo = run_clients(model, prompts[:1])["outputs"][0]
        solos = {0: solo}
        for n in counts:
            got = run_clients(model, prompts[:n])
            for i in range(n):  # each prompt's solo output, computed once
                if i not in solos:
                    solos[i] = run_clients(model, prompts[i:i + 1])["outputs"][0]
            got["outputs_match_solo"] = all(got["outputs"][i] == solos[i] for i in range(n))
            del got["outputs"]
            results[str(n)] = got
            print(f"molink {n} client(s): {got['aggregate_decode_tok_s']} tok/s", file=sys.stderr, flush=True)
    return results


def bench_petals(counts: list[int]) -> dict[str, object]:
    """Petals' own bench.sh, once per N (it runs its own swarm, in a private network namespace as root)."""
    subprocess.run(["bash", str(PETALS / "install.sh")], check=True, stdout=subprocess.DEVNULL)
    results: dict[str, object] = {}
    for n in counts:
        proc = subprocess.run(["bash", str(PETALS / "bench.sh"), "medium"], capture_output=True, text=True,
                              env={**os.environ, "PETALS_CONCURRENCY": str(n)}, timeout=1800)
        line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
        figures = json.loads(line)
        results[str(n)] = {"aggregate_decode_tok_s": figures.get("concurrent", {}).get("aggregate_decode_tok_s"),
                           "decode_tok_s": figures.get("decode_tok_s"), "error": figures.get("error")}
        print(f"petals {n} client(s): {results[str(n)]}", file=sys.stderr, flush=True)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", nargs="+", type=int, default=[1, 4, 8, 16])
    p.add_argument("--petals", action="store_true", help="also run the Petals baseline (where its scripts are kept beside the project)")
    p.add_argument("--models-dir", default=DEFAULT_MODELS_DIR)
    p.add_argument("--peer-arg", action="append", default=[], metavar="FLAG",
                   help="one more flag for both peers (repeatable), e.g. --peer-arg=--no-tune-linears")
    args = p.parse_args()
    root = models_root(args.models_dir)
    path = make_model("medium", root)
    molink = bench_molink(path, args.clients, args.peer_arg)
    fields: dict[str, object] = {"model": "medium", "peers": 2, "peer_args": args.peer_arg, "link": "loopback", "new_tokens": NEW_TOKENS,
                                 "molink": molink}
    one = molink[str(args.clients[0])]["aggregate_decode_tok_s"]
    fields["molink_over_own_first"] = {n: round(r["aggregate_decode_tok_s"] / one, 2) for n, r in molink.items()}
    if args.petals:
        petals = bench_petals(args.clients)
        fields["petals"] = petals
        fields["molink_over_petals"] = {
            n: round(molink[n]["aggregate_decode_tok_s"] / petals[n]["aggregate_decode_tok_s"], 2)
            for n in molink if petals.get(n, {}).get("aggregate_decode_tok_s")}
    publish("concurrency", fields)
    return 0


if __name__ == "__main__":
    sys.exit(main())
