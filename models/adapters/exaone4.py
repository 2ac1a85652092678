"""EXAONE 4: Llama layout with q/k norms and per-layer sliding/full attention (layer_types, sliced per span).

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

EXAONE4 = register(
    Adapter(
        model_types=("exaone4",),
        build_base=base_class("Exaone4Model"),
        notes="Llama layout; per-layer layer_types sliced per span, q/k norms",
    )
)
