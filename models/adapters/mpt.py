"""MPT (MosaicML): keys ``transformer.{wte,blocks.{i},norm_f}``; ALiBi attention biases built inside each block
from the config (nothing positional before layer 0), and an LM head tied to ``wte``."""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

MPT = register(
    Adapter(
        model_types=("mpt",),
        build_base=base_class("MptModel"),
        base_prefix="transformer.",
        embed_attr="wte",
        norm_attr="norm_f",
        layers_attr="blocks",
        notes="keys transformer.wte / blocks.{i} / norm_f; ALiBi biases built by each span's base model from the config",
    )
)
