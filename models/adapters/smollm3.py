"""SmolLM3: Llama layout where some layers skip rotary (``no_rope_layers``, a per-layer list that slice_config cuts per span).

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

SMOLLM3 = register(
    Adapter(
        model_types=("smollm3",),
        build_base=base_class("SmolLM3Model"),
        notes="Llama layout; per-layer no_rope_layers (and layer_types) sliced per span",
    )
)
