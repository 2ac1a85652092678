"""OLMo 2: Llama layout with post-norms and q/k norms over the whole projection (inside layers).

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

OLMO2 = register(
    Adapter(
        model_types=("olmo2",),
        build_base=base_class("Olmo2Model"),
        notes="Llama layout; post-attention/post-MLP norms and full-width q/k norms inside layers",
    )
)
