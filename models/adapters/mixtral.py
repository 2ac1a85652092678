"""Mixtral: the Mistral layout with a sparse mixture-of-experts MLP in every layer.

Checkpoints store each expert's w1/w2/w3 under ``block_sparse_moe.experts.{e}``; transformers fuses them
into ``mlp.experts.gate_up_proj`` / ``down_proj`` on load, and spans load through that same conversion
(models/checkpoint.fill_converted). Routing (top-k of the gate's softmax) runs inside the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

MIXTRAL = register(
    Adapter(
        model_types=("mixtral",),
        build_base=base_class("MixtralModel"),
        notes="MoE in every layer; per-expert w1/w2/w3 on disk fused on load by transformers' weight converters",
    )
)
