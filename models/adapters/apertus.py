"""Apertus (Swiss AI): Llama layout with q/k norms and an ungated xIELU MLP whose activation has its own weights.

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

APERTUS = register(
    Adapter(
        model_types=("apertus",),
        build_base=base_class("ApertusModel"),
        notes="Llama layout; q/k norms, ungated xIELU MLP with learned activation parameters",
    )
)
