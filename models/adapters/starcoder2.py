"""StarCoder2: Llama layout with LayerNorm (weight + bias), biased projections and a plain GELU MLP (c_fc/c_proj).

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

STARCODER2 = register(
    Adapter(
        model_types=("starcoder2",),
        build_base=base_class("Starcoder2Model"),
        notes="Llama layout; LayerNorm with bias, c_fc/c_proj MLP, optional sliding window",
    )
)
