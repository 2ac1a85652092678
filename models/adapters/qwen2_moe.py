"""Qwen1.5-MoE / Qwen2-MoE: MoE MLPs (with a gated shared expert) on the layers the config picks.

A layer is sparse unless its *global* index is in ``mlp_only_layers`` or fails ``(i + 1) %
decoder_sparse_step == 0``. A span numbers its layers 0..n-1, so ``localize_sparse_layers`` re-expresses
the rule for the span: every layer that is dense in the full model goes into the span's
``mlp_only_layers`` (local indices) and the step becomes 1. Per-expert tensors on disk are fused on load
by transformers' weight converters (models/checkpoint.fill_converted).
"""

from __future__ import annotations

from transformers import PretrainedConfig

from models.adapters.base import Adapter, base_class, register


def localize_sparse_layers(config: PretrainedConfig, sliced: PretrainedConfig, start: int, end: int) -> None:
    """Dense layers of [start, end) as local indices in ``mlp_only_layers``; ``decoder_sparse_step`` = 1."""
    dense_only = set(config.mlp_only_layers or [])
    step = int(config.decoder_sparse_step)
    sparse = [i not in dense_only and config.num_experts > 0 and (i + 1) % step == 0 for i in range(start, end)]
    sliced.mlp_only_layers = [local for local, is_sparse in enumerate(sparse) if not is_sparse]
    sliced.decoder_sparse_step = 1


QWEN2_MOE = register(
    Adapter(
        model_types=("qwen2_moe",),
        build_base=base_class("Qwen2MoeModel"),
        localize=localize_sparse_layers,
        notes="MoE layers chosen by global index (mlp_only_layers, decoder_sparse_step): localized per span; "
        "shared expert; experts fused on load",
    )
)
