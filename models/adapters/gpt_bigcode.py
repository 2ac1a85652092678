"""GPT-BigCode (StarCoder, SantaCoder): GPT-2's layout and learned positions, with multi-query attention.

Same keys and the same treatment of ``wpe`` as GPT-2 (models/adapters/gpt2.py); multi-query attention and
the fp32 softmax live inside transformers' layers, and no attention setting depends on the layer index.
"""

from __future__ import annotations

import torch
from torch import nn

from models.adapters.base import Adapter, base_class, register
from models.adapters.gpt2 import learned_positions_embed, no_positions


def _causal_buffer(base: nn.Module, device: torch.device | str) -> None:
    """The non-persistent ``bias`` buffer (a causal mask table) as GPTBigCodeModel.__init__ builds it."""
    size = int(base.config.max_position_embeddings)
    base.bias = torch.tril(torch.ones((size, size), dtype=torch.bool, device=device))

GPT_BIGCODE = register(
    Adapter(
        model_types=("gpt_bigcode",),
        build_base=base_class("GPTBigCodeModel"),
        base_prefix="transformer.",
        embed_attr="wte",
        norm_attr="ln_f",
        layers_attr="h",
        learned_positions=True,
        embed=learned_positions_embed,
        prepare_span=no_positions,
        init_buffers=_causal_buffer,
        notes="GPT-2 layout: learned positions on the client, zeros on spans; multi-query attention in layers",
    )
)
