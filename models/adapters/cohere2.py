"""Cohere2 (Command-R7B, Command-A): Cohere's layers with sliding/full attention per layer (``layer_types``).

slice_config cuts ``layer_types`` per span, so each span's layers and KV cache keep their attention kind;
logits are multiplied by ``logit_scale`` as in Cohere.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register
from models.adapters.cohere import scale_logits

COHERE2 = register(
    Adapter(
        model_types=("cohere2",),
        build_base=base_class("Cohere2Model"),
        logits=scale_logits,
        notes="layer_types (sliding/full) sliced per span; logits multiplied by logit_scale on the client",
    )
)
COHERE2_MOE = register(
    Adapter(
        model_types=("cohere2_moe",),
        build_base=base_class("Cohere2MoeModel"),
        logits=scale_logits,
        notes="Cohere2 with MoE layers; layer_types sliced per span; logits multiplied by logit_scale on the client",
    )
)
