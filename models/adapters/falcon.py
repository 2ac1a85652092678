"""Falcon: decoder layers under ``transformer.h``, embedding ``word_embeddings``, final norm ``ln_f``.

Only the names differ from the Llama layout (``layers_attr="h"``); multi-query / grouped attention, the
parallel attention + MLP block and the new decoder architecture all live inside transformers' layers.
ALiBi variants (Falcon-RW) build their bias from the full attention mask each span receives.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

FALCON = register(
    Adapter(
        model_types=("falcon",),
        build_base=base_class("FalconModel"),
        base_prefix="transformer.",
        embed_attr="word_embeddings",
        norm_attr="ln_f",
        layers_attr="h",
        notes="keys transformer.word_embeddings / h.{i} / ln_f (layers_attr='h'); parallel attention in layers",
    )
)
