"""FlexOlmo: OLMo-2-style layers (norms after attention and MLP, q/k norms) with a mixture-of-experts MLP in
every layer; the Llama key layout, experts fused on load by transformers' own converters."""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

FLEX_OLMO = register(
    Adapter(
        model_types=("flex_olmo",),
        build_base=base_class("FlexOlmoModel"),
        notes="Llama key layout; OLMo-2 post-norms and an MoE MLP in every layer",
    )
)
