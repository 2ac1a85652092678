"""GLM (GLM-4-9B, first version): Llama layout with a fused gate_up_proj, q/k/v biases and partial rotary.

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

GLM = register(
    Adapter(
        model_types=("glm",),
        build_base=base_class("GlmModel"),
        notes="Llama layout; fused gate_up_proj, partial rotary",
    )
)
