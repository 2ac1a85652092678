"""Qwen3-MoE: Qwen3 attention (q/k norms) with MoE MLPs chosen by global layer index, as Qwen2-MoE.

The Qwen2-MoE adapter with another base class (models/adapters/qwen2_moe.py).
"""

from __future__ import annotations

from dataclasses import replace

from models.adapters.base import base_class, register
from models.adapters.qwen2_moe import QWEN2_MOE

QWEN3_MOE = register(
    replace(
        QWEN2_MOE,
        model_types=("qwen3_moe",),
        build_base=base_class("Qwen3MoeModel"),
        notes="MoE layers chosen by global index (mlp_only_layers, decoder_sparse_step): localized per span; "
        "experts fused on load",
    )
)
FLINT = register(
    replace(
        QWEN2_MOE,
        model_types=("flint",),
        build_base=base_class("FlintModel"),
        notes="dense layers by global index (mlp_only_layers, decoder_sparse_step) localized per span; ungated "
        "shared expert; layer_types sliced per span",
    )
)
