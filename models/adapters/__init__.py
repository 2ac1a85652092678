"""Architecture adapters: ``get_adapter(config)`` picks the one for ``config.model_type``.

Each family module registers itself on import; importing it here is what makes a family supported.
"""

from models.adapters import (  # noqa: F401  (each registers its model types)
    apertus,
    arcee,
    cohere,
    cohere2,
    ernie4_5,
    exaone4,
    falcon,
    gemma,
    glm,
    glm4,
    gpt_neox,
    granite,
    helium,
    hunyuan_v1_dense,
    llama,
    ministral,
    nemotron,
    olmo,
    olmo2,
    olmo3,
    phi,
    phi3,
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
