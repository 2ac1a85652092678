"""The five largest MoE families load span by span: real configurations, no weights.

For each model the test builds the published configuration on the meta device (no memory), writes the
checkpoint layout a real release has (config.json and a safetensors index naming every tensor as transformers
saves it: experts one by one, old spellings, one shard per layer) and plans four uneven peers' spans and the
client's ends with ``planned_reads`` / ``planned_client_reads``, the functions ``SpanModel.load`` and
``ClientHead.load`` read by. Every tensor of the checkpoint must go to exactly one of them, each span must get
all its module's tensors once converted as transformers converts them, and each span opens only the shards
of its own layers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
from transformers.conversion_mapping import get_model_conversion_mapping
from transformers.core_model_loading import (
    WeightConverter,
    WeightRenaming,
    rename_source_key,
    revert_weight_conversion,
)

from models.source import resolve_model
from models.span import planned_client_reads, planned_reads

pytestmark = pytest.mark.zoo

# name -> (config class, overrides of transformers' defaults, parameters in billions within 2%)
LARGE = {
    "GLM-5": ("GlmMoeDsaConfig", {}, 744),  # transformers' defaults are this release's sizes
    "DeepSeek-V3.2": ("DeepseekV32Config", {}, 672),
    "MiniMax-Text-01": (
        "MiniMaxConfig",
        dict(hidden_size=6144, num_hidden_layers=80, num_local_experts=32, intermediate_size=9216,
             num_attention_heads=64, num_key_value_heads=8, head_dim=128, vocab_size=200064),
        452,
    ),
    "Llama-4-Maverick": ("Llama4TextConfig", dict(num_local_experts=128, interleave_moe_layer_step=2,
                                                 intermediate_size_mlp=16384), 401),
    "GLM-4.5": (
        "Glm4MoeConfig",
        dict(hidden_size=5120, num_hidden_layers=92, n_routed_experts=160, moe_intermediate_size=1536,
             intermediate_size=12288, num_attention_heads=96, num_key_value_heads=8, head_dim=128,
             first_k_dense_replace=3, vocab_size=151552),
        353,
    ),
}


def _release_layout(config: transformers.PretrainedConfig, path: Path) -> tuple[dict[str, str], float, list]:
    """Write config.json and the index of the checkpoint transformers would save for ``config``; return its
    weight map (tensor -> shard: one shard per layer, one for everything else), its size in billions and the
    base model's load-time conversion mapping."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    state = model.state_dict()
    billions = sum(t.numel() for t in state.values()) / 1e9
    names = sorted(revert_weight_conversion(model, dict(state)))  # as on disk: e.g. experts one by one
    layers = int(config.num_hidden_layers)

    def shard(name: str) -> str:
        parts = name.split(".")
        index = next((int(p) for a, p in zip(parts, parts[1:], strict=False) if a == "layers" and p.isdigit()), None)
        return f"model-{index + 1:05d}-of-{layers:05d}.safetensors" if index is not None else "model-ends.safetensors"

    weight_map = {name: shard(name) for name in names}
    config.save_pretrained(path)
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_parameters": int(billions * 1e9)}, "weight_map": weight_map})
    )
    for file in set(weight_map.values()):
        save_file({}, str(path / file), metadata={"format": "pt"})  # present, as after a download: no data needed
    return weight_map, billions, get_model_conversion_mapping(model.model)


def _converted(mapping: list, local_names: list[str]) -> set[str]:
    """Module names transformers' load-time conversion (``mapping``) gives ``local_names``: experts fused, renames."""
    renamings = [m for m in mapping if isinstance(m, WeightRenaming)]
    converters = [m for m in mapping if isinstance(m, WeightConverter)]
    return {rename_source_key(name, renamings, converters)[0] for name in local_names}


@pytest.mark.parametrize("release", sorted(LARGE))
def test_a_large_moe_checkpoint_maps_every_tensor_to_exactly_one_peer(release: str, tmp_path: Path) -> None:
    config_cls, overrides, billions = LARGE[release]
    config = getattr(transformers, config_cls)(**overrides)
    weight_map, counted, mapping = _release_layout(config, tmp_path)
    assert abs(counted - billions) / billions < 0.02, counted
    ckpt = resolve_model(str(tmp_path))
    layers = ckpt.num_layers
    bounds = [0, layers // 5, layers // 2, layers - 7, layers]  # four uneven peers

    owners: dict[str, list[str]] = {name: [] for name in weight_map}
    for name in planned_client_reads(ckpt):
        owners[name].append("client")
    for a, b in zip(bounds, bounds[1:], strict=False):
        plan = planned_reads(ckpt, a, b)
        for name in plan.reads:
            owners[name].append(f"{a}:{b}")
        # the span's module gets every tensor it holds, once transformers has renamed and fused what it read
        got = _converted(mapping, list(plan.reads.values()))
        assert got == set(plan.tensors), f"{a}:{b}: missing {sorted(set(plan.tensors) - got)[:3]}, " \
                                         f"extra {sorted(got - set(plan.tensors))[:3]}"
        shards = {weight_map[name] for name in plan.reads}
        assert shards == {f"model-{i + 1:05d}-of-{layers:05d}.safetensors" for i in range(a, b)}
    wrong = {name: who for name, who in owners.items() if len(who) != 1}
    assert not wrong, f"{len(wrong)} tensors not read exactly once, e.g. {dict(list(wrong.items())[:3])}"
