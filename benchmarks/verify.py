"""What output spot checks cost: decode tokens/s with ``verify_fraction`` 0, 0.02 (the default) and 0.1.

A swarm on loopback of 4 peers, 2 replicas of each half of a generated Llama (the decode benchmark's sizes),
so every check finds another peer to compare with. For each fraction: greedy tokens/s over 64 tokens after
a 16-token prompt (median of --repeats runs, fractions alternating), whether the tokens equal the unchecked
run's, and what the checks did (count, positions recomputed, seconds). Prints one JSON object and writes it
to benchmarks/results/verify-<date>.json with the machine's facts. Compare ratios within one run only.

    .venv/bin/python benchmarks/verify.py [--size tiny] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import DEFAULT_MODELS_DIR, models_root, publish  # noqa: E402
from benchmarks.decode import SIZES, decode, make_model, prompts  # noqa: E402

FRACTIONS = (0.0, 0.02, 0.1)


def bench(size: str, root: Path, repeats: int) -> dict[str, object]:
    from routing.config import ClientConfig
    from swarm import AutoDistributedModelForCausalLM
    from swarm.launch import LocalSwarm

    path = make_model(size, root)
    short, _ = prompts()
    half = SIZES[size]["num_hidden_layers"] // 2
    spans = [f"0:{half}", f"0:{half}", f"{half}:{2 * half}", f"{half}:{2 * half}"]
    with LocalSwarm(str(path), spans, peer_args=["--threads", "1"], env={"HF_HUB_OFFLINE": "1"}) as swarm:
        models = {f: AutoDistributedModelForCausalLM.from_pretrained(
            str(path), initial_peers=[swarm.address], config=ClientConfig(route_wait_s=60, verify_fraction=f))
            for f in FRACTIONS}
        try:
            def generate(model):
                return lambda ids, n, streamer: model.generate(ids, max_new_tokens=n, do_sample=False,
                                                               streamer=streamer)

            for model in models.values():
                generate(model)(short, 2, None)  # warm-up: connections, proofs and timings of the peers
            speeds: dict[float, list[float]] = {f: [] for f in FRACTIONS}
            tokens: dict[float, list[int]] = {}
            for _ in range(repeats):
                for f, model in models.items():
                    tok_s, tokens[f] = decode(generate(model), short)
                    speeds[f].append(tok_s)
            audits = {f: model.client.audits for f, model in models.items()}
        finally:
            for model in models.values():
                model.close()
    base = statistics.median(speeds[0.0])
    return {
        "size": size, **SIZES[size], "peers": spans, "repeats": repeats,
        "runs": [{"verify_fraction": f, "decode_tok_s": round(statistics.median(speeds[f]), 3),
                  "slowdown": round(base / statistics.median(speeds[f]), 3),
                  "tokens_match_unchecked": tokens[f] == tokens[0.0],
                  "checks": audits[f].checks, "passed": audits[f].passed, "caught": len(audits[f].caught),
                  "positions_recomputed": audits[f].positions, "check_seconds": round(audits[f].seconds, 3)}
                 for f in FRACTIONS],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="tiny", choices=list(SIZES))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models-dir", default=DEFAULT_MODELS_DIR)
    args = p.parse_args()
    torch.set_num_threads(1)
    publish("verify", {"link": "loopback", "results": [bench(args.size, models_root(args.models_dir), args.repeats)]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
