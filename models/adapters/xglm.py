"""XGLM and BioGPT: fairseq-style decoders with scaled embeddings and position embeddings offset by 2.

Both scale the token embeddings inside their embedding module (which only the client runs) and add position
embeddings before layer 0: sinusoidal ones computed on demand (XGLM) or a learned table (BioGPT, a hard
limit of ``max_position_embeddings``). The client adds them once, from the tokens' absolute positions, and
spans add zeros instead (``NoPositions``). The final norm is ``layer_norm``; BioGPT's LM head is
``output_projection``.
"""

from __future__ import annotations

import torch
from torch import nn

from models.adapters.base import Adapter, NoPositions, base_class, register


def xglm_embed(base: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    start = int(positions[0, 0])  # the table grows to cover start + T positions
    return base.embed_tokens(input_ids) + base.embed_positions(positions, start).to(base.embed_tokens.weight.device)


def biogpt_embed(base: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return base.embed_tokens(input_ids) + base.embed_positions(None, 0, position_ids=positions)


def no_positions(base: nn.Module, start: int) -> None:
    base.embed_positions = NoPositions(next(base.parameters()).dtype)


XGLM = register(
    Adapter(
        model_types=("xglm",),
        build_base=base_class("XGLMModel"),
        norm_attr="layer_norm",
        embed=xglm_embed,
        prepare_span=no_positions,
        notes="scaled embedding and sinusoidal positions (offset 2) added on the client, zeros on spans; final "
        "norm is layer_norm",
    )
)

BIOGPT = register(
    Adapter(
        model_types=("biogpt",),
        build_base=base_class("BioGptModel"),
        base_prefix="biogpt.",
        norm_attr="layer_norm",
        head_key="output_projection.weight",
        learned_positions=True,
        embed=biogpt_embed,
        prepare_span=no_positions,
        notes="keys biogpt.* and output_projection; scaled embedding and learned positions (offset 2) added on "
        "the client, zeros on spans; final norm is layer_norm",
    )
)
