"""molink: serve large language models on a swarm of consumer machines.

Public API::

    from swarm import AutoDistributedModelForCausalLM   # AutoDistributedModel is the same class
    model = AutoDistributedModelForCausalLM.from_pretrained(MODEL, initial_peers=[ADDR])
    out = model.generate(input_ids, max_new_tokens=32, do_sample=False)

The model classes are imported on first use, so ``import swarm.errors`` stays light (no torch).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "AutoDistributedModel",
    "AutoDistributedModelForCausalLM",
    "ClientConfig",
    "InferenceSession",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in ("AutoDistributedModel", "AutoDistributedModelForCausalLM"):
        from routing.model import AutoDistributedModelForCausalLM

        return AutoDistributedModelForCausalLM
    if name == "ClientConfig":
        from routing.config import ClientConfig

        return ClientConfig
    if name == "InferenceSession":
        from routing.session import InferenceSession

        return InferenceSession
    raise AttributeError(f"module 'swarm' has no attribute {name!r}")
