"""Cohere (Command-R): parallel attention + MLP on one LayerNorm, and logits multiplied by ``logit_scale``.

The layers are transformers' own; CohereForCausalLM multiplies the LM head's output by
``config.logit_scale``, which the client's ``logits`` hook repeats. Cohere2 (Command-R7B / A) adds
sliding-window layers given per layer in ``layer_types``, which slice_config cuts per span.
"""

from __future__ import annotations

import torch
from transformers import PretrainedConfig

from models.adapters.base import Adapter, base_class, register


def scale_logits(config: PretrainedConfig, logits: torch.Tensor) -> torch.Tensor:
    return logits * config.logit_scale


COHERE = register(
    Adapter(
        model_types=("cohere",),
        build_base=base_class("CohereModel"),
        logits=scale_logits,
        notes="parallel attention/MLP inside layers; logits multiplied by logit_scale on the client",
    )
)
