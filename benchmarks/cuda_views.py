"""Sub-span views and span sizing on a CUDA device (run where a GPU is; the test suite checks the same on CPU).

For every row of the model zoo (tests/conftest_models.py: tiny random 5-layer checkpoints), in float32 and
bfloat16 on the GPU: one span of all 5 layers, ``check_views``, and greedy decoding through its views [0, 2),
[2, 3), [3, 5) against decoding through three separately loaded spans of the same layers; the tokens must be
equal, and the views must add no weight memory. Then: how many layers of a Llama-3-70B-shaped model in
bfloat16 a peer on this device takes by ``span_size``'s rule (90% of free memory over one layer's weights plus
16,384 tokens of KV cache), from the config alone. Prints JSON; with --out, writes it there too.

    python benchmarks/cuda_views.py [--device cuda] [--rows llama mistral ...] [--out result.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.source import resolve_model  # noqa: E402
from models.span import ClientHead, SpanModel  # noqa: E402
from peer.main import FREE_SHARE  # noqa: E402
from peer.memory import kv_bytes_per_token, layer_sizes  # noqa: E402
from peer.placement import layers_that_fit  # noqa: E402
from tests.conftest_models import ZOO, make_zoo_checkpoint  # noqa: E402

BOUNDS = [0, 2, 3, 5]
STEPS = 8


def greedy(head: ClientHead, spans: list, ids: torch.Tensor, device: str) -> list[int]:
    caches = [s.new_cache() for s in spans]
    out, current = ids.to(device), ids.to(device)
    for _ in range(STEPS):
        hidden = head.embed(current, out.shape[1] - current.shape[1])
        for span, cache in zip(spans, caches, strict=True):
            hidden = span.forward(hidden, cache)
        current = head.logits(hidden)[:, -1].argmax(-1, keepdim=True)
        out = torch.cat([out, current], dim=1)
    return out[0].tolist()


def row(name: str, device: str, dtype: torch.dtype, root: Path) -> dict:
    ckpt = resolve_model(str(make_zoo_checkpoint(root / name.replace("/", "_"), name)))
    head = ClientHead.load(ckpt, dtype=dtype, device=device)
    ids = torch.randint(3, ckpt.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(1))
    whole = SpanModel.load(ckpt, 0, BOUNDS[-1], dtype=dtype, device=device, progress=False)
    before = torch.cuda.memory_allocated() if device.startswith("cuda") else 0
    ok = whole.check_views()
    views = [whole.view(a, b) for a, b in zip(BOUNDS, BOUNDS[1:], strict=False)] if ok else []
    added = (torch.cuda.memory_allocated() - before) if device.startswith("cuda") else 0
    result = {"check_views": ok, "view_bytes_added": int(added)}
    if ok:
        separate = [SpanModel.load(ckpt, a, b, dtype=dtype, device=device, progress=False)
                    for a, b in zip(BOUNDS, BOUNDS[1:], strict=False)]
        result["tokens_equal"] = greedy(head, views, ids, device) == greedy(head, separate, ids, device)
    return result


def seventy_b(device: str) -> dict:
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                         num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192)
    sizes = layer_sizes(config, torch.bfloat16)
    kv = 16384 * kv_bytes_per_token(config, torch.bfloat16)
    free = float(torch.cuda.mem_get_info()[0]) if device.startswith("cuda") else 0.0
    per_layer = max(sizes) + kv
    budget = FREE_SHARE * free  # what a peer without --max-memory plans with (peer/main.py: span_size)
    fit = layers_that_fit(budget, per_layer, 0.0, config.num_hidden_layers) if budget >= per_layer else 0
    return {"free_gib": round(free / 2**30, 2), "weights_gib_per_layer": round(max(sizes) / 2**30, 3),
            "kv_gib_per_layer": round(kv / 2**30, 3), "layers_that_fit": fit}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--rows", nargs="+", default=sorted(ZOO))
    p.add_argument("--out")
    args = p.parse_args()
    began = time.perf_counter()
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.rows:
            for dtype in (torch.float32, torch.bfloat16):
                key = f"{name} {str(dtype).removeprefix('torch.')}"
                try:
                    rows[key] = row(name, args.device, dtype, Path(tmp))
                except Exception as e:  # noqa: BLE001 - one row's failure is reported, the rest go on
                    rows[key] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
                print(key, rows[key], file=sys.stderr, flush=True)
    views_ok = [k for k, r in rows.items() if r.get("check_views")]
    result = {
        "benchmark": "cuda_views", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"},
        "rows": rows, "with_views": len(views_ok),
        "views_equal_spans": sum(bool(rows[k].get("tokens_equal")) for k in views_ok),
        "errors": sorted(k for k, r in rows.items() if "error" in r),
        "llama_70b_bf16": seventy_b(args.device), "wall_s": round(time.perf_counter() - began, 1),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
