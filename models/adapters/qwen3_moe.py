"""Qwen3-MoE: Qwen3 attention (q/k norms) with MoE MLPs chosen by global layer index, as Qwen2-MoE."""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register
from models.adapters.qwen2_moe import localize_sparse_layers

QWEN3_MOE = register(
    Adapter(
        model_types=("qwen3_moe",),
        build_base=base_class("Qwen3MoeModel"),
        localize=localize_sparse_layers,
        notes="MoE layers chosen by global index (mlp_only_layers, decoder_sparse_step): localized per span; "
        "experts fused on load",
    )
)
