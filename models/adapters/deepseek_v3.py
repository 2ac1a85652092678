"""DeepSeek-V3 / R1: multi-head latent attention, and MoE layers after the first ``first_k_dense_replace``.

Whether a layer is dense depends on its *global* index (``i < first_k_dense_replace``); a span numbers
its layers from 0, so ``localize`` moves the boundary into the span's local numbering. The compressed
latent KV cache and the grouped top-k routing live inside transformers' layers; per-expert tensors on disk
are fused on load by transformers' weight converters.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from models.adapters.base import Adapter, base_class, register


def localize_dense_prefix(config: PretrainedConfig, sliced: PretrainedConfig, start: int, end: int) -> None:
    """Global layers < first_k_dense_replace are dense: as local indices, the first max(0, k - start)."""
    sliced.first_k_dense_replace = min(max(int(config.first_k_dense_replace) - start, 0), end - start)


DEEPSEEK_V3 = register(
    Adapter(
        model_types=("deepseek_v3",),
        build_base=base_class("DeepseekV3Model"),
        localize=localize_dense_prefix,
        notes="first_k_dense_replace (global index) localized per span; MLA attention; experts fused on load",
    )
)
