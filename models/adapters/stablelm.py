"""StableLM: Llama layout with LayerNorm (weight + bias), partial rotary and optional parallel residual, all inside layers.

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

STABLELM = register(
    Adapter(
        model_types=("stablelm",),
        build_base=base_class("StableLmModel"),
        notes="Llama layout; LayerNorm with bias, partial rotary",
    )
)
