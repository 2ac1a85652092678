"""OLMo: Llama layout with non-parametric LayerNorms and optional qkv clipping (inside layers).

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

OLMO = register(
    Adapter(
        model_types=("olmo",),
        build_base=base_class("OlmoModel"),
        notes="Llama layout; parameter-free LayerNorm, qkv clipping inside layers",
    )
)
