"""OLMo 3: OLMo 2's layers with sliding/full attention per layer (``layer_types``, sliced per span) and a rotary table per attention kind.

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

OLMO3 = register(
    Adapter(
        model_types=("olmo3",),
        build_base=base_class("Olmo3Model"),
        notes="OLMo 2 layers; layer_types sliced per span, one rotary table per attention kind",
    )
)
