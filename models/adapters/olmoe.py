"""OLMoE: the OLMo 2 style attention (q/k norms) with a MoE MLP in every layer; experts fused on load."""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

OLMOE = register(
    Adapter(
        model_types=("olmoe",),
        build_base=base_class("OlmoeModel"),
        notes="MoE in every layer; per-expert tensors on disk fused on load by transformers' weight converters",
    )
)
