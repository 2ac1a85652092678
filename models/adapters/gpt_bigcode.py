"""GPT-BigCode (StarCoder, SantaCoder): GPT-2's layout and learned positions, with multi-query attention.

The GPT-2 adapter with another base class (models/adapters/gpt2.py): same keys, same treatment of ``wpe``;
multi-query attention and the fp32 softmax live inside transformers' layers, and no attention setting
depends on the layer index, so spans only drop their positions.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from models.adapters.base import base_class, register
from models.adapters.gpt2 import GPT2, no_positions


def _causal_buffer(base: nn.Module, device: torch.device | str) -> None:
    """The non-persistent ``bias`` buffer (a causal mask table) as GPTBigCodeModel.__init__ builds it."""
    size = int(base.config.max_position_embeddings)
    base.bias = torch.tril(torch.ones((size, size), dtype=torch.bool, device=device))


GPT_BIGCODE = register(
    replace(
        GPT2,
        model_types=("gpt_bigcode",),
        build_base=base_class("GPTBigCodeModel"),
        prepare_span=no_positions,
        init_buffers=_causal_buffer,
        notes="GPT-2 layout: learned positions on the client, zeros on spans; multi-query attention in layers",
    )
)
