"""EXAONE 3 / 3.5 (LG AI Research): Llama's model under checkpoint names of its own.

The checkpoint keeps ``transformer.wte``, ``transformer.h.{i}.attn.attention.*``, ``ln_1``/``ln_2``,
``mlp.c_fc_0``/``c_fc_1``/``c_proj`` and ``transformer.ln_f``; transformers loads it into a LlamaModel by
renaming. Inside a layer the renamings are transformers' own (applied on load to the span's layers); the
embedding and final norm, which transformers renames by whole-model keys, are named here.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

EXAONE = register(
    Adapter(
        model_types=("exaone",),
        build_base=base_class("LlamaModel"),
        checkpoint_layers="transformer.h.",
        renamed_keys=(("transformer.wte.weight", "embed_tokens.weight"), ("transformer.ln_f.weight", "norm.weight")),
        notes="Llama's model; checkpoint keys transformer.wte / h.{i} (attn.attention, ln_1/ln_2, c_fc_0/c_fc_1) / "
        "ln_f renamed on load",
    )
)
