"""Mixture-of-experts spans: loaded through transformers' weight conversion, only their own layers.

Checkpoints on disk hold one tensor per expert (``experts.{e}.w1`` ...); the model fuses them
(``experts.gate_up_proj``). Exactness of every MoE family is in test_zoo_local; these check what that
cannot see: which files a span opens, which layers come out sparse, and the error for a broken checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.source import resolve_model
from models.span import ClientHead, SpanModel
from swarm.errors import ConfigError, UnsupportedModelError
from tests.conftest_models import make_zoo_checkpoint, spy_safe_open


def _has_experts(layer: torch.nn.Module) -> bool:
    return any(name.endswith("experts.gate_up_proj") for name, _ in layer.named_parameters())


def test_moe_span_opens_only_its_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Layers [2, 4) of a sharded Mixtral open only the shards holding layers 2 and 3, and come out fused."""
    path = make_zoo_checkpoint(tmp_path, "mixtral", shards=5)
    weight_map = json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]
    assert any(".block_sparse_moe.experts.3.w1.weight" in key for key in weight_map)  # per-expert on disk
    opened = spy_safe_open(monkeypatch)
    span = SpanModel.load(resolve_model(str(path)), 2, 4, progress=False)
    wanted = {file for key, file in weight_map.items() if key.startswith(("model.layers.2.", "model.layers.3."))}
    assert set(opened) - {"model.safetensors"} == wanted
    assert wanted < set(weight_map.values())
    fused = span.base.layers[1].mlp.experts.gate_up_proj  # [experts, 2 * intermediate, hidden]
    assert fused.shape == (4, 2 * 128, 64)


@pytest.mark.parametrize(
    ("row", "start", "end", "sparse"),
    [
        ("qwen2_moe", 1, 3, [True, False]),  # sparse where (i + 1) % 2 == 0 and i != 4: global 1 and 3
        ("qwen2_moe", 3, 5, [True, False]),
        ("qwen3_moe", 1, 4, [True, False, True]),  # mlp_only_layers=[0, 2], global
        ("deepseek_v3", 1, 3, [False, True]),  # first_k_dense_replace=2, global
        ("deepseek_v3", 3, 5, [True, True]),
    ],
)
def test_moe_layers_follow_global_indices(tmp_path: Path, row: str, start: int, end: int, sparse: list[bool]) -> None:
    """Which layers of a span are MoE is decided by their global index, not their place in the span."""
    span = SpanModel.load(resolve_model(str(make_zoo_checkpoint(tmp_path, row))), start, end, progress=False)
    assert [_has_experts(layer) for layer in span.base.layers] == sparse


def test_moe_checkpoint_missing_an_expert_is_a_clear_error(tmp_path: Path) -> None:
    """A checkpoint without one expert's tensor fails to load with ConfigError, not a half-filled model."""
    path = make_zoo_checkpoint(tmp_path, "mixtral")
    tensors = load_file(path / "model.safetensors")
    del tensors["model.layers.1.block_sparse_moe.experts.2.w3.weight"]
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    ckpt = resolve_model(str(path))
    SpanModel.load(ckpt, 2, 5, progress=False)  # other layers are unaffected
    with pytest.raises(ConfigError, match="layers.0.mlp.experts"):
        SpanModel.load(ckpt, 1, 3, progress=False)


def test_quantized_checkpoint_is_refused(tmp_path: Path) -> None:
    """An FP8 release (as DeepSeek-V3 ships) is refused with the reason, not read as garbage floats."""
    path = make_zoo_checkpoint(tmp_path, "deepseek_v3")
    config = json.loads((path / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [128, 128]}
    (path / "config.json").write_text(json.dumps(config))
    ckpt = resolve_model(str(path))
    with pytest.raises(UnsupportedModelError, match="quantized \\(fp8\\).*float16/bfloat16 copy"):
        SpanModel.load(ckpt, 0, 2, progress=False)
    with pytest.raises(UnsupportedModelError, match="quantized"):
        ClientHead.load(ckpt)


def test_placement_sizes_layers_by_the_largest_one(tmp_path: Path) -> None:
    """A peer plans memory with the largest layer's bytes: DeepSeek's MoE layers, not its dense first ones."""
    from peer.memory import layer_sizes

    ckpt = resolve_model(str(make_zoo_checkpoint(tmp_path, "deepseek_v3")))
    span = SpanModel.load(ckpt, 0, 5, progress=False)
    sizes = [sum(p.numel() * p.element_size() for p in layer.parameters()) for layer in span.base.layers]
    assert sizes[0] < sizes[-1]  # dense layer 0, MoE layer 4
    assert layer_sizes(ckpt.config, torch.float32) == sizes  # placement takes max() of these
    assert max(layer_sizes(ckpt.config, torch.float32)) == max(sizes)
    assert max(layer_sizes(ckpt.config, torch.bfloat16)) == max(sizes) // 2
