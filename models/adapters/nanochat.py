"""nanochat: the Llama key layout with one parameter-free RMSNorm used twice and softcapped logits.

NanoChatModel runs ``norm`` right after the embedding and again after the last layer. Spans replace ``norm``
with Identity (as every family's final norm), so the client's ``embed`` applies it once after the lookup and
its final step applies it once before the head; then the logits are softcapped as NanoChatForCausalLM does.
"""

from __future__ import annotations

import torch
from torch import nn

from models.adapters.base import Adapter, base_class, register
from models.adapters.gemma import softcap_logits


def normed_embed(base: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return base.norm(base.embed_tokens(input_ids))  # [B, T] -> [B, T, H]


NANOCHAT = register(
    Adapter(
        model_types=("nanochat",),
        build_base=base_class("NanoChatModel"),
        embed=normed_embed,
        logits=softcap_logits,
        notes="the norm after the embedding runs on the client (spans' norm is Identity); logits softcapped on "
        "the client",
    )
)
