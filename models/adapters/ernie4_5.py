"""ERNIE 4.5 (dense): the Llama layout with optional biases.

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

ERNIE4_5 = register(
    Adapter(
        model_types=("ernie4_5",),
        build_base=base_class("Ernie4_5Model"),
        notes="Llama layout; optional linear biases",
    )
)
