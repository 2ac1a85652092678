"""AFMoE (Arcee Trinity): the Llama layout with MoE layers after the first ``num_dense_layers`` and an optional
muP input scale.

- Whether a layer is dense depends on its global index (``i < num_dense_layers``): localized per span.
- With ``mup_enabled`` the base model multiplies the embeddings by sqrt(hidden_size) before layer 0: the
  client's ``embed`` does it once, and span configs turn it off.
- Sliding/full attention comes per layer in ``layer_types``, which slice_config cuts per span.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig

from models.adapters.base import Adapter, base_class, local_prefix, register


def mup_embed(base: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[B, T] ids -> [B, T, H] embeddings, scaled as AfmoeModel.forward scales them when muP is on."""
    hidden = base.embed_tokens(input_ids)
    if base.config.mup_enabled:
        hidden = hidden * (base.config.hidden_size**0.5)
    return hidden


def localize(config: PretrainedConfig, sliced: PretrainedConfig, start: int, end: int) -> None:
    """Global layers < num_dense_layers are dense; the client already applied the muP input scale."""
    sliced.num_dense_layers = local_prefix(config.num_dense_layers, start, end)
    sliced.mup_enabled = False


AFMOE = register(
    Adapter(
        model_types=("afmoe",),
        build_base=base_class("AfmoeModel"),
        embed=mup_embed,
        localize=localize,
        notes="num_dense_layers (global index) localized per span; muP input scale on the client only; "
        "layer_types sliced per span",
    )
)
