"""Gemma, Gemma 2, Gemma 3 (text), VaultGemma: embeddings scaled by sqrt(hidden), final logit softcapping.

The sqrt(hidden_size) scaling sits inside transformers' ``Gemma*TextScaledWordEmbedding`` (in the
embedding's dtype, as the original models round it), so it runs once, in the client's embedding, and spans
(which have no embedding) never see it. Gemma 2, 3 and VaultGemma softcap the LM head's output in *ForCausalLM,
``tanh(logits / cap) * cap`` with ``final_logit_softcapping``: the client's ``logits`` hook. Their
sliding/full layers come from ``layer_types``, which slice_config cuts per span; Gemma 3's rotary module
holds one frequency table per layer type present in the span's sliced config.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig

from models.adapters.base import Adapter, base_class, register


def softcap_logits(config: PretrainedConfig, logits: torch.Tensor) -> torch.Tensor:
    cap = getattr(config, "final_logit_softcapping", None)
    if cap is None:
        return logits
    return torch.tanh(logits / cap) * cap


def embed_scale(base: nn.Module, device: torch.device | str) -> None:
    """Fill the scaled embedding's non-persistent ``embed_scale`` buffer as its __init__ does (client only)."""
    embedding = base.embed_tokens
    if embedding is not None:  # spans have no embedding
        embedding.embed_scale = torch.tensor(embedding.scalar_embed_scale, device=device)


GEMMA = register(
    Adapter(
        model_types=("gemma",),
        init_buffers=embed_scale,
        build_base=base_class("GemmaModel"),
        notes="sqrt(hidden) scaling lives in the client's embedding (scaled embedding module); (1 + w) RMSNorm",
    )
)
GEMMA2 = register(
    Adapter(
        model_types=("gemma2",),
        init_buffers=embed_scale,
        build_base=base_class("Gemma2Model"),
        logits=softcap_logits,
        notes="scaled embedding on the client; layer_types sliced per span; final logit softcapping on the client",
    )
)
GEMMA3_TEXT = register(
    Adapter(
        model_types=("gemma3_text",),
        init_buffers=embed_scale,
        build_base=base_class("Gemma3TextModel"),
        logits=softcap_logits,
        notes="scaled embedding on the client; layer_types and per-type rotary sliced per span; final logit softcapping",
    )
)
VAULTGEMMA = register(
    Adapter(
        model_types=("vaultgemma",),
        build_base=base_class("VaultGemmaModel"),
        init_buffers=embed_scale,
        logits=softcap_logits,
        notes="Gemma 2 recipe: scaled embedding on the client; layer_types sliced per span; final logit softcapping",
    )
)


def gemma4_refuse(config: PretrainedConfig) -> str | None:
    """Gemma 4 variants whose layers need more than the hidden state cannot be split into spans."""
    if getattr(config, "hidden_size_per_layer_input", 0):
        return ("its layers take per-layer inputs computed from the token ids (hidden_size_per_layer_input > 0), "
                "which a span never sees: only hidden states cross the wire")
    if getattr(config, "num_kv_shared_layers", 0):
        return ("its last num_kv_shared_layers layers read the keys and values of earlier layers, which may sit in "
                "another peer's cache")
    return None


GEMMA4_TEXT = register(
    Adapter(
        model_types=("gemma4_text",),
        init_buffers=embed_scale,
        build_base=base_class("Gemma4TextModel"),
        logits=softcap_logits,
        refuse=gemma4_refuse,
        notes="scaled embedding on the client; layer_types (and per-type head sizes) sliced per span; final logit "
        "softcapping; variants with per-layer token inputs or shared KV layers refused",
    )
)
