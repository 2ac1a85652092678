"""Hunyuan dense (v1): Llama layout with q/k norms applied after rotary.

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

HUNYUAN_V1_DENSE = register(
    Adapter(
        model_types=("hunyuan_v1_dense",),
        build_base=base_class("HunYuanDenseV1Model"),
        notes="Llama layout; q/k norms inside attention",
    )
)
