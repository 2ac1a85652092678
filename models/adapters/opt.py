"""OPT: the decoder sits at ``model.decoder``; learned positions with an offset of 2; optional projections.

OPTDecoder adds ``embed_positions`` (OPT's learned table, indexed position + 2) and, for models whose
``word_embed_proj_dim`` differs from ``hidden_size`` (opt-350m), projects embeddings in before layer 0
and out after the final norm, which only pre-norm models have (``do_layer_norm_before``). The client runs
all of those; spans add zeros for positions and have neither projection nor final norm.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig
from transformers.models.opt.modeling_opt import OPTDecoder

from models.adapters.base import Adapter, NoPositions, register


def _build_decoder(config: PretrainedConfig) -> nn.Module:
    return OPTDecoder(config)


def _embed(base: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    hidden = base.embed_tokens(input_ids)  # [B, T, word_embed_proj_dim]
    if base.project_in is not None:
        hidden = base.project_in(hidden)  # [B, T, H]
    return hidden + base.embed_positions(None, position_ids=positions)


def _final(base: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    if base.final_layer_norm is not None:
        hidden = base.final_layer_norm(hidden)
    if base.project_out is not None:
        hidden = base.project_out(hidden)  # [B, T, word_embed_proj_dim]
    return hidden


def _prepare_span(base: nn.Module, start: int) -> None:
    base.embed_positions = NoPositions(next(base.parameters()).dtype)
    base.project_in = None
    base.project_out = None


OPT = register(
    Adapter(
        model_types=("opt",),
        build_base=_build_decoder,
        base_prefix="model.decoder.",
        norm_attr="final_layer_norm",
        learned_positions=True,
        embed=_embed,
        final=_final,
        prepare_span=_prepare_span,
        notes="decoder at model.decoder; learned positions (offset 2) and project_in on the client; "
        "optional final norm and project_out on the client",
    )
)
