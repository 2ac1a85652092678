"""DBRX (Databricks): keys ``transformer.{wte,blocks.{i},norm_f}``; fused qkv with clipping, 16 experts per
layer fused on load, all inside transformers' blocks."""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

DBRX = register(
    Adapter(
        model_types=("dbrx",),
        build_base=base_class("DbrxModel"),
        base_prefix="transformer.",
        embed_attr="wte",
        norm_attr="norm_f",
        layers_attr="blocks",
        notes="keys transformer.wte / blocks.{i} / norm_f; MoE in every block",
    )
)
