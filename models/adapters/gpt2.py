"""GPT-2: learned absolute position embeddings, keys ``transformer.{wte,wpe,h.{i},ln_f}``.

GPT2Model adds ``wpe(position_ids)`` to the token embeddings before layer 0. The client does that once
(``embed``, with the absolute positions of the tokens it sends) and spans swap their ``wpe`` for zeros.
With ``scale_attn_by_inverse_layer_idx`` each attention divides its scores by (layer index + 1), fixed
at construction from the *local* index; ``prepare_span`` recomputes it from the global one.
GPT-Neo has the same keys and positions, with local (windowed)
and global attention chosen per layer.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from models.adapters.base import Adapter, NoPositions, base_class, register


def learned_positions_embed(base: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Token plus position embeddings: [B, T] ids and [B, T] positions -> [B, T, H]."""
    return base.wte(input_ids) + base.wpe(positions)


def no_positions(base: nn.Module, start: int) -> None:
    """Spans add zeros instead of position embeddings (the client added them)."""
    base.wpe = NoPositions(next(base.parameters()).dtype)


def global_layer_scaling(base: nn.Module, start: int) -> None:
    """Spans drop ``wpe``; with scale_attn_by_inverse_layer_idx, local layer j scales by 1 / (start + j + 1)."""
    no_positions(base, start)
    if not base.config.scale_attn_by_inverse_layer_idx:
        return
    for local, block in enumerate(base.h):
        attn = block.attn
        scaling = attn.head_dim**-0.5 if attn.scale_attn_weights else 1.0
        attn.scaling = scaling / float(start + local + 1)


GPT2 = register(
    Adapter(
        model_types=("gpt2",),
        build_base=base_class("GPT2Model"),
        base_prefix="transformer.",
        embed_attr="wte",
        norm_attr="ln_f",
        layers_attr="h",
        learned_positions=True,
        embed=learned_positions_embed,
        prepare_span=global_layer_scaling,
        notes="learned positions (wpe) added on the client, zeros on spans; scale_attn_by_inverse_layer_idx "
        "recomputed from the global index",
    )
)

GPT_NEO = register(
    replace(
        GPT2,
        model_types=("gpt_neo",),
        build_base=base_class("GPTNeoModel"),
        prepare_span=no_positions,
        notes="GPT-2 keys and learned positions (client adds them, spans add zeros); local/global attention by "
        "attention_layers, sliced per span, masks rebuilt from the config",
    )
)
