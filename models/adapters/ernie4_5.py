"""ERNIE 4.5: the Llama layout with optional biases, and its MoE model (sparse layers by global index).

Nothing before layer 0 but the embedding lookup, nothing after the final norm but the LM head, so the
default Adapter fields hold; transformers' own base-model class runs the layers.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from models.adapters.base import Adapter, base_class, register
from swarm.errors import UnsupportedModelError

ERNIE4_5 = register(
    Adapter(
        model_types=("ernie4_5",),
        build_base=base_class("Ernie4_5Model"),
        notes="Llama layout; optional linear biases",
    )
)


def localize_moe_range(config: PretrainedConfig, sliced: PretrainedConfig, start: int, end: int) -> None:
    """ERNIE-4.5-MoE's sparse layers, chosen by global index (``moe_layer_start_index`` ..
    ``moe_layer_end_index``, every ``moe_layer_interval``-th), as the span's local indices."""
    interval = int(config.moe_layer_interval)
    first, last = int(config.moe_layer_start_index), int(config.moe_layer_end_index)
    sparse = [j for j in range(end - start) if (start + j + 1) % interval == 0 and first <= start + j <= last]
    if not sparse:
        sliced.moe_layer_start_index, sliced.moe_layer_end_index, sliced.moe_layer_interval = end - start, end, 1
    elif sparse == list(range(sparse[0], sparse[-1] + 1)):
        sliced.moe_layer_start_index, sliced.moe_layer_end_index, sliced.moe_layer_interval = sparse[0], sparse[-1], 1
    elif start % interval == 0:
        sliced.moe_layer_start_index, sliced.moe_layer_end_index = sparse[0], sparse[-1]
    else:
        raise UnsupportedModelError(
            f"layers [{start}, {end}): with moe_layer_interval={interval}, an ERNIE-4.5-MoE span must start at a "
            f"multiple of {interval}"
        )


ERNIE4_5_MOE = register(
    Adapter(
        model_types=("ernie4_5_moe",),
        build_base=base_class("Ernie4_5_MoeModel"),
        localize=localize_moe_range,
        notes="MoE layers by global index (moe_layer_start_index/end_index/interval) localized per span; shared "
        "experts; experts fused on load",
    )
)
