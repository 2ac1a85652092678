"""Phi-3: Llama layout with fused qkv_proj and gate_up_proj.

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

PHI3 = register(
    Adapter(
        model_types=("phi3",),
        build_base=base_class("Phi3Model"),
        notes="Llama layout; fused qkv_proj and gate_up_proj",
    )
)
