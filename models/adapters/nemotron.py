"""Nemotron: Llama layout with LayerNorm1P (weight + bias, zero-centred) and a squared-ReLU MLP without gate.

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

NEMOTRON = register(
    Adapter(
        model_types=("nemotron",),
        build_base=base_class("NemotronModel"),
        notes="Llama layout; LayerNorm1P with bias, partial rotary, up/down MLP",
    )
)
