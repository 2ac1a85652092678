"""Architecture adapters: ``get_adapter(config)`` picks the one for ``config.model_type``.

Each family module registers itself on import; importing it here is what makes a family supported.
"""

from models.adapters import llama  # noqa: F401  (registers llama, mistral, qwen2, qwen3)
from models.adapters.base import Adapter, get_adapter, register, supported_model_types

__all__ = ["Adapter", "get_adapter", "register", "supported_model_types"]
