"""Architecture adapters over Hugging Face transformers: name -> checkpoint -> span of layers or client ends.

A peer calls ``resolve_model`` then ``SpanModel.load(ckpt, start, end)``; a client ``ClientHead.load(ckpt)``.
Only the tensors a part needs are read. This package imports no networking (DESIGN.md section 3).
"""

from models.aliases import ALIASES, resolve_alias
from models.config_slice import slice_config
from models.source import Checkpoint, resolve_model
from models.span import ClientHead, SpanModel

__all__ = [
    "ALIASES",
    "Checkpoint",
    "ClientHead",
    "SpanModel",
    "resolve_alias",
    "resolve_model",
    "slice_config",
]
