"""Ministral 3 (the text model of Mistral's third generation): the Llama layout, with YaRN rope and a
position-dependent query scaling (``llama_4_scaling_beta``) that the layers compute from the positions they are
given, so spans need nothing beyond the global positions every span already gets."""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

MINISTRAL3 = register(
    Adapter(
        model_types=("ministral3",),
        build_base=base_class("Ministral3Model"),
        notes="Llama layout; YaRN rope and position-scaled queries inside the layers, from global positions",
    )
)
