"""BLOOM: ALiBi attention and a LayerNorm on the embeddings, keys ``transformer.{word_embeddings,h.{i},ln_f}``.

BloomModel normalizes the word embeddings (``word_embeddings_layernorm``) before layer 0: the client does
it once and spans replace it with Identity. ALiBi biases are built inside each span from the attention
mask over all positions it has seen, exactly as the whole model builds them; no position embedding exists.
"""

from __future__ import annotations

import torch
from torch import nn

from models.adapters.base import Adapter, base_class, register


def _embed(base: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return base.word_embeddings_layernorm(base.word_embeddings(input_ids))  # [B, T] -> [B, T, H]


def _prepare_span(base: nn.Module, start: int) -> None:
    base.word_embeddings_layernorm = nn.Identity()


BLOOM = register(
    Adapter(
        model_types=("bloom",),
        build_base=base_class("BloomModel"),
        base_prefix="transformer.",
        embed_attr="word_embeddings",
        norm_attr="ln_f",
        layers_attr="h",
        embed=_embed,
        prepare_span=_prepare_span,
        notes="embedding LayerNorm on the client only (Identity on spans); ALiBi built per span from the full mask",
    )
)
