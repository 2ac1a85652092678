"""What the wire codecs do to a model's output: greedy agreement and logit error against exact fp32.

A session's hidden states cross the network at every span boundary; a codec (swarm/net/wire.py) encodes them
there. This runs each model locally with the hidden states at two span boundaries (a 3-peer chain: after 1/3
and 2/3 of the layers) and the final output (the last hop's result) sent through ``tensor_to_wire`` and
``tensor_from_wire`` with the codec, as the wire does, and compares with the same model untouched:

- ``max_logit_error``: the largest |logit difference| over a 64-token prompt (teacher forcing), and the same
  relative to the largest |logit|;
- ``greedy_same``: of 8 prompts, how many give the same 32 greedy tokens; ``tokens_before_divergence``: the
  mean count of equal tokens before the first difference.

Models: the tiny random test checkpoints (llama, mistral, qwen2, qwen3) and the embedded SmolLM2-135M-Instruct,
a real model (random tiny models have nearly flat logits, so a small error flips their argmax more easily).
Prints one JSON object and writes benchmarks/results/codecs-<date>.json with the machine's facts.

    .venv/bin/python benchmarks/codecs.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import publish  # noqa: E402

CODECS = ["float16", "bfloat16", "int8"]
PROMPTS, PROMPT_LEN, NEW = 8, 64, 32


def wire_hooks(model, codec: str | None) -> list:
    """Forward hooks that round-trip the hidden states through ``codec`` where a chain of 3 peers would send them."""
    from swarm.net.wire import tensor_from_wire, tensor_to_wire

    if codec is None:
        return []

    def through(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        meta, body = tensor_to_wire(hidden, codec)
        sent = tensor_from_wire(meta, bytes(body))
        return (sent, *output[1:]) if isinstance(output, tuple) else sent

    layers = model.model.layers
    n = len(layers)
    cuts = sorted({max(0, n // 3 - 1), max(0, 2 * n // 3 - 1)})
    hooks = [layers[i].register_forward_hook(through) for i in cuts]
    hooks.append(model.model.layers[n - 1].register_forward_hook(through))  # the last hop's result to the client
    return hooks


def measure(model, vocab: int, codec: str) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, vocab, (1, PROMPT_LEN), generator=gen) for _ in range(PROMPTS)]
    with torch.no_grad():
        exact_logits = model(prompts[0]).logits
        hooks = wire_hooks(model, codec)
        try:
            coded_logits = model(prompts[0]).logits
        finally:
            for h in hooks:
                h.remove()
        err = float((coded_logits - exact_logits).abs().max())
        same, before = 0, []
        for ids in prompts:
            kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=NEW, do_sample=False)
            exact = model.generate(ids, **kwargs)[0, PROMPT_LEN:]
            hooks = wire_hooks(model, codec)
            try:
                coded = model.generate(ids, **kwargs)[0, PROMPT_LEN:]
            finally:
                for h in hooks:
                    h.remove()
            equal = (exact == coded).tolist()
            same += all(equal)
            before.append(equal.index(False) if False in equal else len(equal))
    return {"max_logit_error": round(err, 5), "relative_logit_error": round(err / float(exact_logits.abs().max()), 6),
            "greedy_same": f"{same}/{PROMPTS}", "tokens_before_divergence": round(sum(before) / len(before), 2)}


def models(root: Path) -> dict[str, Path]:
    from tests.conftest_models import ARCHS, make_tiny_checkpoint

    found = {f"tiny-{arch}": make_tiny_checkpoint(root, arch, num_layers=6) for arch in ARCHS}
    try:
        from models.source import resolve_model

        found["smollm2-135m-instruct"] = resolve_model("smollm2-135m").path
    except Exception as e:  # noqa: BLE001 - the embedded model is optional here
        print(f"the embedded model is not available: {e}", file=sys.stderr)
    return found


def main() -> int:
    from transformers import AutoModelForCausalLM

    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in models(Path(tmp)).items():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
            results[name] = {codec: measure(model, model.config.vocab_size, codec) for codec in CODECS}
            print(name, results[name], file=sys.stderr, flush=True)
    publish("codecs", {"prompts": PROMPTS, "prompt_tokens": PROMPT_LEN, "new_tokens": NEW,
                       "where": "hidden states at 2 span boundaries of a 3-peer chain and the last hop's result",
                       "models": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
