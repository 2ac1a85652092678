"""Arcee (AFM): Llama layout with an up/down MLP (ReLU squared, no gate).

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

ARCEE = register(
    Adapter(
        model_types=("arcee",),
        build_base=base_class("ArceeModel"),
        notes="Llama layout; ungated up/down MLP",
    )
)
