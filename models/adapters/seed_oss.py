"""Seed-OSS: the Llama layout with attention biases.

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

SEED_OSS = register(
    Adapter(
        model_types=("seed_oss",),
        build_base=base_class("SeedOssModel"),
        notes="Llama layout; q/k/v biases",
    )
)
