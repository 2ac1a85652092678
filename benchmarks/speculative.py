"""Speculative decoding over weak links: decode ms/token through a 3-peer chain whose every hop crosses an
emulated home link, plain and with each kind of draft (routing/speculative.py), beside the aim.

The chain is benchmarks/weak_links.py's (bootstrap + 3 peers on 127.0.0.1, a ``python -m swarm.linkem`` in
front of each, published with --announce-addr). For each model and link setting a fresh client decodes
``--tokens`` greedy tokens after each prompt (median of --repeats) in these modes:

- ``plain``: no draft;
- ``lookup``: ``prompt_lookup_num_tokens=8``, no model: guesses that the text repeats itself;
- ``early_exit``: the model's own first layers on the client (``EarlyExitDraft``; generated models only: on
  SmolLM2 its guesses agree with none of the model's, see routing/speculative.py);
- ``perfect``: a local copy of the whole model as the draft. Every guess is right, so this is the protocol's
  ceiling at this draft cost, not a setting anyone would run.

Every mode's tokens are checked equal to ``plain``'s (``same_tokens``). The aim is the issue's: below the sum of
span compute and one-way latencies, taken as plain decoding with no emulated delay ("none") plus the 4 one-way
delays of a token's path (client, 2 pushes, back). Prompts: random ids for the generated Llama models; for
SmolLM2-135M-Instruct a question and a request to repeat a sentence, each in its chat template. The client's
drafts share the machine's cores with the 3 peers. Prints one JSON object and writes
benchmarks/results/speculative-<date>.json with the machine's facts.

    .venv/bin/python benchmarks/speculative.py [--models tiny h512 smollm2] [--repeats 2] [--tokens 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import DEFAULT_MODELS_DIR, models_root, publish  # noqa: E402
from benchmarks.weak_links import LINKS, SPANS, emulated, emulated_chain, make_model, prompt  # noqa: E402
from swarm.demo import TimingStreamer, chat_ids  # noqa: E402

SMOLLM2_SPANS = ["0:10", "10:20", "20:30"]
CHAT_PROMPTS = {"question": "Name the planets of the solar system in order, one per line.",
                "repeat": "Repeat this sentence exactly: The quick brown fox jumps over the lazy dog by the river."}
EARLY_EXIT_LAYERS = 2
LOOKUP_TOKENS = 8


def prompts(name: str, path: Path) -> dict[str, torch.Tensor]:
    if name != "smollm2":
        return {"random16": prompt(16)}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    return {key: chat_ids(tokenizer, text) for key, text in CHAT_PROMPTS.items()}


def decode(model: Any, ids: torch.Tensor, tokens: int, **kw: Any) -> tuple[float, list[int]]:
    """ms per token after the first (which the prefill gives) over the tokens generated (an answer may end
    before ``tokens``), and the new tokens."""
    clock = TimingStreamer()
    out = model.generate(ids, max_new_tokens=tokens, do_sample=False, streamer=clock, **kw)
    after_first = max(len(clock.token_times) - 1, 1)
    return (clock.token_times[-1] - clock.token_times[0]) / after_first * 1e3, out[0, ids.shape[1]:].tolist()


def modes(name: str, model: Any, local: Any) -> dict[str, dict[str, Any]]:
    from routing.speculative import EarlyExitDraft, HFDraft

    found: dict[str, dict[str, Any]] = {"plain": {}, "lookup": {"prompt_lookup_num_tokens": LOOKUP_TOKENS}}
    if name != "smollm2":
        found["early_exit"] = {"assistant_model": EarlyExitDraft.load(model, layers=EARLY_EXIT_LAYERS)}
    found["perfect"] = {"assistant_model": HFDraft(local)}
    return found


def bench(name: str, root: Path, repeats: int, tokens: int) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from models.source import resolve_model
    from routing.config import ClientConfig
    from swarm import AutoDistributedModelForCausalLM

    path = Path(resolve_model("smollm2-135m").path) if name == "smollm2" else make_model(name, root)
    spans = SMOLLM2_SPANS if name == "smollm2" else SPANS
    local = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    inputs = prompts(name, path)
    results: dict[str, Any] = {}
    with emulated_chain(path, spans) as (swarm, ports):
        for link, (delay_ms, rate_mbit) in LINKS.items():
            with emulated(swarm, ports, link, delay_ms, rate_mbit), AutoDistributedModelForCausalLM.from_pretrained(
                    str(path), initial_peers=[swarm.address],
                    config=ClientConfig(route_wait_s=120, request_timeout_s=120)) as model:
                model.generate(prompt(8), max_new_tokens=2, do_sample=False)  # warm-up: links, proofs
                per_link: dict[str, Any] = {}
                for key, ids in inputs.items():
                    row: dict[str, Any] = {}
                    plain_tokens: list[int] | None = None
                    for mode, kw in modes(name, model, local).items():
                        times, same = [], True
                        for _ in range(repeats):
                            ms, new = decode(model, ids, tokens, **kw)
                            times.append(ms)
                            plain_tokens = plain_tokens if plain_tokens is not None else new
                            same &= new == plain_tokens
                        draft = kw.get("assistant_model")
                        row[mode] = {"decode_ms": round(statistics.median(times), 2), "same_tokens": same,
                                     "new_tokens": len(plain_tokens or [])}
                        if draft is not None and draft.proposed:
                            row[mode]["accepted"] = round(draft.accepted / draft.proposed, 3)
                            row[mode]["drafts_per_round"] = round(draft.proposed / draft.rounds, 2)
                        print(f"{name} {link} {key} {mode}: {row[mode]}", file=sys.stderr, flush=True)
                    per_link[key] = row
                results[link] = per_link
    for link, (delay_ms, _) in LINKS.items():
        if link == "none":
            continue
        for key, row in results[link].items():
            aim = round(results["none"][key]["plain"]["decode_ms"] + 4 * delay_ms, 2)
            row["aim_ms"] = aim
            row["over_aim"] = {mode: round(row[mode]["decode_ms"] / aim, 3) for mode in row
                               if isinstance(row[mode], dict) and "decode_ms" in row[mode]}
    return {"spans": spans, "prompts": {k: v.shape[1] for k, v in inputs.items()}, "links": results}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=["tiny", "h512", "smollm2"], default=["tiny", "h512", "smollm2"])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--models-dir", default=DEFAULT_MODELS_DIR)
    args = p.parse_args()
    root = models_root(args.models_dir)
    fields = {name: bench(name, root, args.repeats, args.tokens) for name in args.models}
    publish("speculative", {"repeats": args.repeats, "tokens": args.tokens, "lookup_tokens": LOOKUP_TOKENS,
                            "early_exit_layers": EARLY_EXIT_LAYERS,
                            "link_settings": {k: {"delay_ms": d, "rate_mbit": r} for k, (d, r) in LINKS.items()},
                            **fields})
    return 0


if __name__ == "__main__":
    sys.exit(main())
