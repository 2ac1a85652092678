"""DeepSeek-V3 / R1 (and V2, dots.llm1, GLM-4.5 MoE): multi-head latent attention, and MoE layers after the first ``first_k_dense_replace``.

Whether a layer is dense depends on its *global* index (``i < first_k_dense_replace``); a span numbers
its layers from 0, so ``localize`` moves the boundary into the span's local numbering. The compressed
latent KV cache and the grouped top-k routing live inside transformers' layers; per-expert tensors on disk
are fused on load by transformers' weight converters.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from models.adapters.base import Adapter, base_class, local_prefix, register


def localize_dense_prefix(config: PretrainedConfig, sliced: PretrainedConfig, start: int, end: int) -> None:
    """Global layers < first_k_dense_replace are dense: as local indices, the first max(0, k - start)."""
    sliced.first_k_dense_replace = local_prefix(config.first_k_dense_replace, start, end)


DEEPSEEK_V3 = register(
    Adapter(
        model_types=("deepseek_v3", "sarvam_mla"),  # Sarvam-M: DeepSeek-V3's model under its own type
        build_base=base_class("DeepseekV3Model"),
        localize=localize_dense_prefix,
        notes="first_k_dense_replace (global index) localized per span; MLA attention; experts fused on load",
    )
)

# Other families that choose dense or MoE layers by the same global rule.
for _model_type, _base, _notes in (
    ("deepseek_v2", "DeepseekV2Model", "MLA attention"),
    ("dots1", "Dots1Model", "shared experts, q/k norms"),
    ("glm4_moe", "Glm4MoeModel", "shared experts, partial rotary"),
):
    register(
        Adapter(
            model_types=(_model_type,),
            build_base=base_class(_base),
            localize=localize_dense_prefix,
            notes=f"first_k_dense_replace (global index) localized per span; {_notes}; experts fused on load",
        )
    )

# Sarvam-MoE: GLM-4.5 MoE's model with Bailing-style checkpoint names (fused query_key_value, renamed on load).
SARVAM_MOE = register(
    Adapter(
        model_types=("sarvam_moe",),
        build_base=base_class("Glm4MoeModel"),
        localize=localize_dense_prefix,
        renamed_keys=(("model.word_embeddings.weight", "embed_tokens.weight"),),
        notes="first_k_dense_replace (global index) localized per span; checkpoint's word_embeddings and fused "
        "qkv renamed and split on load",
    )
)
