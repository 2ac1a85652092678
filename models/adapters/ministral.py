"""Ministral: Mistral's layers with sliding/full attention per layer (``layer_types``, sliced per span).

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

MINISTRAL = register(
    Adapter(
        model_types=("ministral",),
        build_base=base_class("MinistralModel"),
        notes="Mistral layout; layer_types sliced per span",
    )
)
