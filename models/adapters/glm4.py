"""GLM-4: Llama layout with a fused gate_up_proj and post-attention/post-MLP norms inside layers.

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

GLM4 = register(
    Adapter(
        model_types=("glm4",),
        build_base=base_class("Glm4Model"),
        notes="Llama layout; fused gate_up_proj, extra post-norms inside layers, partial rotary",
    )
)
