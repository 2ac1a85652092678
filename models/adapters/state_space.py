"""State-space models and attention hybrids: per-layer recurrent state in the span's session cache.

transformers keeps a Mamba layer's conv and SSM states (and a linear-attention layer's recurrent state) as
a layer of the DynamicCache built from the config, so a span's cache holds exactly its own layers' states.
Such layers keep no keys and no length, and a span may hold no attention layer at all: these spans get
their length from models/adapters/token_count.py. Failover rebuilds a state by replaying the session's
inputs in one step (the chunked scan instead of the per-token recurrence: equal up to float rounding).

- Mamba, Mamba-2 and Falcon-Mamba: keys ``backbone.{embeddings,layers.{i},norm_f}``; no attention anywhere.
- Qwen3.5, OLMo-Hybrid, Lara, Kimi-Linear, Bailing-Hybrid: gated DeltaNet (or KDA / Lightning) layers and
  attention chosen per layer by ``layer_types``, which slice_config cuts per span.
- Bamba: Mamba-2 layers, attention where ``attn_layer_indices`` (global indices, localized per span) says.
- Granite-4 (granitemoehybrid): Bamba-like layers with Granite's multipliers.
- Jamba: Mamba and attention layers, dense and MoE MLPs, by period and offset of the global index.
- Nemotron-H: Mamba-2, attention, MLP and MoE blocks, one per layer, by ``layers_block_type``.
- Falcon-H1: attention and Mamba-2 in parallel in every layer; embedding and LM-head multipliers on the client.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from transformers import PretrainedConfig

from models.adapters.base import Adapter, base_class, register
from models.adapters.granite import multiplied_embed, no_input_scaling, scaled_logits
from models.adapters.token_count import MiniMaxCountingCache, install_token_count, new_token_counting_cache

_COUNTED = Adapter(
    model_types=(),
    build_base=base_class("MambaModel"),
    prepare_span=install_token_count,
    new_cache=new_token_counting_cache,
)
_TOKEN_COUNT = "a token-counting cache gives spans without attention their length"

for _model_type, _base, _what in (
    ("mamba", "MambaModel", "Mamba (selective SSM) layers only"),
    ("falcon_mamba", "FalconMambaModel", "Mamba layers with RMS-normalized B, C and dt"),
):
    register(
        replace(
            _COUNTED,
            model_types=(_model_type,),
            build_base=base_class(_base),
            base_prefix="backbone.",
            embed_attr="embeddings",
            norm_attr="norm_f",
            mask_free=True,
            notes=f"keys backbone.embeddings / layers.{{i}} / norm_f; {_what}; conv and SSM states in the span's "
            f"cache; {_TOKEN_COUNT}",
        )
    )

for _model_type, _base, _what in (
    ("qwen3_5_text", "Qwen3_5TextModel", "gated DeltaNet/attention hybrid"),
    ("qwen3_5_moe_text", "Qwen3_5MoeTextModel", "gated DeltaNet/attention hybrid with MoE layers"),
    ("olmo_hybrid", "OlmoHybridModel", "gated DeltaNet/attention hybrid"),
    ("lara_mini", "LaraMiniModel", "linear/sliding/full attention hybrid with MoE layers"),
    ("kimi_linear", "KimiLinearModel", "Kimi delta attention/MLA hybrid; dense/sparse MLPs by mlp_layer_types"),
):
    register(
        replace(
            _COUNTED,
            model_types=(_model_type,),
            build_base=base_class(_base),
            notes=f"{_what} by layer_types, sliced per span; {_TOKEN_COUNT}",
        )
    )


def localize_bailing(config: PretrainedConfig, sliced: PretrainedConfig, start: int, end: int) -> None:
    """Spans hold no multi-token-prediction layers (they are not run to generate)."""
    sliced.num_mtp_layers = 0


register(
    replace(
        _COUNTED,
        model_types=("bailing_hybrid",),
        build_base=base_class("BailingHybridModel"),
        localize=localize_bailing,
        renamed_keys=(("model.word_embeddings.weight", "embed_tokens.weight"),),
        notes=f"Lightning linear attention/MLA hybrid by layer_types and dense/sparse MLPs by mlp_layer_types, "
        f"sliced per span; multi-token-prediction layers left out; {_TOKEN_COUNT}",
    )
)


def localize_attention_indices(config: PretrainedConfig, sliced: PretrainedConfig, start: int, end: int) -> None:
    """``attn_layer_indices`` (global) as the span's local indices."""
    sliced.attn_layer_indices = [i - start for i in config.attn_layer_indices or [] if start <= i < end]


BAMBA = register(
    replace(
        _COUNTED,
        model_types=("bamba",),
        build_base=base_class("BambaModel"),
        norm_attr="final_layernorm",
        localize=localize_attention_indices,
        notes=f"Mamba-2/attention hybrid; attn_layer_indices (global) localized per span; final norm is "
        f"final_layernorm; {_TOKEN_COUNT}",
    )
)


def _granite_hybrid_span(base, start: int) -> None:  # noqa: ANN001 - a transformers base model
    no_input_scaling(base, start)
    install_token_count(base, start)


GRANITEMOEHYBRID = register(
    replace(
        _COUNTED,
        model_types=("granitemoehybrid",),
        build_base=base_class("GraniteMoeHybridModel"),
        embed=multiplied_embed,
        prepare_span=_granite_hybrid_span,
        logits=scaled_logits,
        notes=f"Granite 4: Mamba-2/attention hybrid by layer_types, MoE layers; Granite multipliers (embedding on "
        f"the client only, logits scaling); {_TOKEN_COUNT}",
    )
)


def falcon_h1_embed(base: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """FalconH1Model multiplies looked-up embeddings (never given ones) by ``embedding_multiplier``."""
    return base.embed_tokens(input_ids) * base.embedding_multiplier  # [B, T] -> [B, T, H]


def falcon_h1_logits(config: PretrainedConfig, logits: torch.Tensor) -> torch.Tensor:
    return logits * config.lm_head_multiplier


FALCON_H1 = register(
    replace(
        _COUNTED,
        model_types=("falcon_h1",),
        build_base=base_class("FalconH1Model"),
        norm_attr="final_layernorm",
        embed=falcon_h1_embed,
        logits=falcon_h1_logits,
        notes="attention and Mamba-2 side by side in every layer, muP multipliers inside layers; embedding and "
        f"LM-head multipliers on the client; {_TOKEN_COUNT}",
    )
)

register(
    replace(
        _COUNTED,
        model_types=("mamba2",),
        build_base=base_class("Mamba2Model"),
        base_prefix="backbone.",
        embed_attr="embeddings",
        norm_attr="norm_f",
        notes=f"keys backbone.embeddings / layers.{{i}} / norm_f; Mamba-2 (SSD) layers only; {_TOKEN_COUNT}",
    )
)


def localize_jamba(config: PretrainedConfig, sliced: PretrainedConfig, start: int, end: int) -> None:
    """Jamba picks attention and MoE layers by ``i % period == offset`` over global indices: shift the offsets."""
    sliced.attn_layer_offset = (int(config.attn_layer_offset) - start) % int(config.attn_layer_period)
    sliced.expert_layer_offset = (int(config.expert_layer_offset) - start) % int(config.expert_layer_period)


JAMBA = register(
    replace(
        _COUNTED,
        model_types=("jamba",),
        build_base=base_class("JambaModel"),
        norm_attr="final_layernorm",
        localize=localize_jamba,
        notes="Mamba/attention hybrid with MoE layers, both chosen by period and offset of the global index "
        f"(offsets shifted per span); final norm is final_layernorm; {_TOKEN_COUNT}",
    )
)

NEMOTRON_H = register(
    replace(
        _COUNTED,
        model_types=("nemotron_h",),
        build_base=base_class("NemotronHModel"),
        base_prefix="backbone.",
        embed_attr="embeddings",
        norm_attr="norm_f",
        notes="keys backbone.embeddings / layers.{i} / norm_f; Mamba-2, attention, MLP and MoE blocks by "
        f"layers_block_type, sliced per span; {_TOKEN_COUNT}",
    )
)

MINIMAX = register(
    replace(
        _COUNTED,
        model_types=("minimax",),
        build_base=base_class("MiniMaxModel"),
        new_cache=MiniMaxCountingCache,
        notes="lightning (linear) attention/full attention hybrid by layer_types, MoE in every layer; MiniMax's "
        "own cache with a token count",
    )
)
