"""Helium (Kyutai): the Llama layout under another name.

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

HELIUM = register(
    Adapter(
        model_types=("helium",),
        build_base=base_class("HeliumModel"),
        notes="Llama layout, nothing else",
    )
)
