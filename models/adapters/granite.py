"""Granite (IBM): the Llama layout plus four scalar multipliers.

- ``embedding_multiplier`` scales the embeddings inside GraniteModel.forward, before layer 0: the client's
  ``embed`` applies it once, and spans set their copy to 1.0 (multiplying by 1.0 is exact).
- ``residual_multiplier`` and ``attention_multiplier`` live inside the decoder layers: nothing to do.
- ``logits_scaling`` divides the LM head's output in GraniteForCausalLM: the client's ``logits`` hook.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig

from models.adapters.base import Adapter, base_class, register


def multiplied_embed(base: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return base.embed_tokens(input_ids) * base.embedding_multiplier  # [B, T] -> [B, T, H]


def no_input_scaling(base: nn.Module, start: int) -> None:
    base.embedding_multiplier = 1.0


def scaled_logits(config: PretrainedConfig, logits: torch.Tensor) -> torch.Tensor:
    return logits / config.logits_scaling


GRANITE = register(
    Adapter(
        model_types=("granite",),
        build_base=base_class("GraniteModel"),
        embed=multiplied_embed,
        prepare_span=no_input_scaling,
        logits=scaled_logits,
        notes="embedding_multiplier on the client only (spans set it to 1.0); logits divided by logits_scaling",
    )
)
