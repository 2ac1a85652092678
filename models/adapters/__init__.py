"""Architecture adapters: ``get_adapter(config)`` picks the one for ``config.model_type``.

Each family module registers itself on import; importing it here is what makes a family supported.
"""

from models.adapters import (  # noqa: F401  (each registers its model types)
    apertus,
    arcee,
    bitnet,
    bloom,
    cohere,
    cohere2,
    deepseek_v3,
    ernie4_5,
    exaone4,
    falcon,
    flex_olmo,
    gemma,
    glm,
    glm4,
    gpt2,
    gpt_bigcode,
    gpt_neox,
    gpt_oss,
    gptj,
    granite,
    granitemoe,
    helium,
    hunyuan_v1_dense,
    lfm2,
    llama,
    ministral,
    ministral3,
    mixtral,
    nemotron,
    olmo,
    olmo2,
    olmo3,
    olmoe,
    opt,
    phi,
    phi3,
    qwen2_moe,
    qwen3_moe,
    qwen3_next,
    seed_oss,
    smollm3,
    stablelm,
    starcoder2,
)
from models.adapters.base import (
    Adapter,
    get_adapter,
    register,
    registered_adapters,
    supported_model_types,
)

__all__ = ["Adapter", "get_adapter", "register", "registered_adapters", "supported_model_types"]
