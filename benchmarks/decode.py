"""Decode benchmark: local transformers vs a molink swarm (bootstrap + 2 peers on loopback).

Two generated Llama sizes (the same shapes as the Petals baseline the benchmarks are compared with):
tiny (hidden 256 x 8 layers) and medium (hidden 1024 x 16 layers). For each: time to first token of a
16-token prompt, greedy decode tokens/s over 64 tokens, the swarm's per-token overhead over local, and the
time of a 512-token prompt's prefill + first token. Each figure is the median of --repeats runs,
local and swarm alternating. Prints one JSON object and writes it to
benchmarks/results/decode-<date>.json with the machine's facts. Compare ratios within one run only.

    .venv/bin/python benchmarks/decode.py [--sizes tiny medium] [--repeats 3]
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
from swarm.demo import TimingStreamer  # noqa: E402

SIZES = {
    "tiny": dict(hidden_size=256, num_hidden_layers=8, num_attention_heads=4, intermediate_size=688),
    "medium": dict(hidden_size=1024, num_hidden_layers=16, num_attention_heads=16, intermediate_size=2816),
}
VOCAB = 32000


def make_model(size: str, root: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    path = root / size
    if (path / "config.json").exists():
        return path
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, max_position_embeddings=2048, **SIZES[size])
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def prompts() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(3, VOCAB, (1, 16), generator=gen), torch.randint(3, VOCAB, (1, 512), generator=gen)


def ttft(generate, ids: torch.Tensor) -> float:
    clock = TimingStreamer()
    generate(ids, 1, clock)
    return clock.token_times[0] - clock.start


def decode(generate, ids: torch.Tensor, n: int = 64) -> tuple[float, list[int]]:
    """Greedy tokens/s over n tokens after the first, and the tokens."""
    clock = TimingStreamer()
    out = generate(ids, n + 1, clock)
    return n / (clock.token_times[-1] - clock.token_times[0]), out[0, ids.shape[1]:].tolist()


def bench_size(size: str, root: Path, repeats: int) -> dict[str, object]:
    """Local and swarm measured in alternation (local, swarm, local, swarm, ...) so drift hits both alike."""
    from transformers import AutoModelForCausalLM

    from routing.config import ClientConfig
    from swarm import AutoDistributedModelForCausalLM
    from swarm.launch import LocalSwarm

    path = make_model(size, root)
    short, long = prompts()
    layers = SIZES[size]["num_hidden_layers"]
    local = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)

    def local_generate(ids, n, streamer):
        return local.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                              streamer=streamer)

    spans = [f"0:{layers // 2}", f"{layers // 2}:{layers}"]
    with LocalSwarm(str(path), spans, peer_args=["--threads", "1"], env={"HF_HUB_OFFLINE": "1"}) as swarm:
        with AutoDistributedModelForCausalLM.from_pretrained(
            str(path), initial_peers=[swarm.address], config=ClientConfig(route_wait_s=60)
        ) as model:
            def swarm_generate(ids, n, streamer):
                return model.generate(ids, max_new_tokens=n, do_sample=False, streamer=streamer)

            systems = {"local": local_generate, "swarm": swarm_generate}
            figs: dict[str, dict[str, list]] = {k: {"ttft_s": [], "decode_tok_s": [], "prefill_512_s": []}
                                                for k in systems}
            tokens = {}
            for gen in systems.values():
                gen(short, 2, None)  # warm-up: connections, allocator
            for _ in range(repeats):
                for name, gen in systems.items():
                    figs[name]["ttft_s"].append(ttft(gen, short))
                    tok_s, tokens[name] = decode(gen, short)
                    figs[name]["decode_tok_s"].append(tok_s)
                    figs[name]["prefill_512_s"].append(ttft(gen, long))
        ready = swarm.ready_s
    med = {name: {k: statistics.median(v) for k, v in f.items()} for name, f in figs.items()}
    overhead_ms = 1000 * (1 / med["swarm"]["decode_tok_s"] - 1 / med["local"]["decode_tok_s"])
    return {
        "size": size, **SIZES[size], "swarm_ready_s": round(ready, 2), "repeats": repeats,
        "local": {k: round(v, 4) for k, v in med["local"].items()},
        "swarm": {k: round(v, 4) for k, v in med["swarm"].items()},
        "decode_overhead_ms_per_token": round(overhead_ms, 2),
        "decode_ratio_swarm_over_local": round(med["local"]["decode_tok_s"] / med["swarm"]["decode_tok_s"], 3),
        "greedy_tokens_match": tokens["swarm"] == tokens["local"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["tiny", "medium"], choices=list(SIZES))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--models-dir", default=DEFAULT_MODELS_DIR)
    p.add_argument("--threads", type=int, default=1, help="torch threads for the local reference (peers use 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root = models_root(args.models_dir)
    publish("decode", {"peers": 2, "link": "loopback",
                       "results": [bench_size(size, root, args.repeats) for size in args.sizes]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
