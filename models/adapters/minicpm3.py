"""MiniCPM3: latent attention in the Llama layout, with three depth- and width-dependent scales.

- ``scale_emb`` multiplies the embeddings inside the embedding module itself, which only the client runs.
- Each layer scales its residual branches by ``scale_depth / sqrt(num_hidden_layers)`` of the *whole* model;
  a span's config counts only its own layers, so ``prepare_span`` sets the whole model's figure on every layer
  (``localize`` carries it in the span's config).
- MiniCPM3ForCausalLM divides the final hidden state by ``hidden_size / dim_model_base`` (``logits_scaling``)
  before the LM head: the client's ``final`` step, after the norm.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import PretrainedConfig

from models.adapters.base import Adapter, base_class, register


def localize(config: PretrainedConfig, sliced: PretrainedConfig, start: int, end: int) -> None:
    sliced.molink_residual_scale = config.scale_depth / math.sqrt(config.num_hidden_layers)


def whole_model_residual_scale(base: nn.Module, start: int) -> None:
    for layer in base.layers:
        layer.residual_scale = base.config.molink_residual_scale


def scaled_final(base: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return base.norm(hidden) / base.config.logits_scaling


MINICPM3 = register(
    Adapter(
        model_types=("minicpm3",),
        build_base=base_class("MiniCPM3Model"),
        localize=localize,
        prepare_span=whole_model_residual_scale,
        final=scaled_final,
        notes="residual scale from the whole model's depth set on span layers; final hidden divided by "
        "logits_scaling on the client; embedding scale inside the client's embedding; latent attention",
    )
)
