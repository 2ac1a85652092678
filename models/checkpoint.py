"""Read just the tensors a module needs from a safetensors checkpoint, and put them into it.

Modules are built on the meta device (no memory), then filled with ``load_state_dict(assign=True)`` from
tensors read one by one with ``safe_open``. The shard index decides which files are opened at all, and a
hub checkpoint downloads only those shards, so a peer's memory, disk and network follow its span, not
the whole model.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from safetensors import safe_open
from torch import nn
from tqdm.auto import tqdm

from models.source import INDEX_NAME, SINGLE_NAME, Checkpoint
from swarm.errors import ConfigError, UnsupportedModelError


@contextmanager
def on_meta() -> Iterator[None]:
    """Build modules without allocating their weights."""
    with torch.device("meta"):
        yield


def check_float_weights(ckpt: Checkpoint) -> None:
    """UnsupportedModelError for a quantized checkpoint (FP8 DeepSeek-V3, MXFP4 gpt-oss, GPTQ, AWQ, ...):
    spans read tensors as floats, and a quantized tensor read that way would be silently wrong."""
    quant = getattr(ckpt.config, "quantization_config", None)
    if quant:
        method = quant.get("quant_method", "?") if isinstance(quant, dict) else getattr(quant, "quant_method", "?")
        raise UnsupportedModelError(
            f"checkpoint {ckpt.model_key} is quantized ({method}); molink serves float weights only: "
            "use a float16/bfloat16 copy of the model (and --dtype to choose the precision)"
        )


def weight_map(ckpt: Checkpoint) -> dict[str, str] | None:
    """Tensor name -> shard file from the index; None for a single-file checkpoint."""
    index = ckpt.path / INDEX_NAME
    if not index.is_file():
        return None
    return dict(json.loads(index.read_text())["weight_map"])


def shard_path(ckpt: Checkpoint, filename: str) -> Path:
    """The local path of one shard, downloading it first for a hub checkpoint."""
    local = ckpt.path / filename
    if local.is_file() or ckpt.repo_id is None:
        return local
    return Path(hf_hub_download(ckpt.repo_id, filename))


def has_tensor(ckpt: Checkpoint, name: str) -> bool:
    """Whether the checkpoint holds ``name`` (reads the index, or a single file's header only)."""
    mapping = weight_map(ckpt)
    if mapping is not None:
        return name in mapping
    with safe_open(str(shard_path(ckpt, SINGLE_NAME)), framework="pt", device="cpu") as f:
        return name in set(f.keys())


def _group_by_shard(ckpt: Checkpoint, names: list[str]) -> dict[str, list[str]]:
    """Which shard holds each wanted tensor; ConfigError names tensors the index lacks."""
    mapping = weight_map(ckpt)
    if mapping is None:
        return {SINGLE_NAME: list(names)}
    missing = [n for n in names if n not in mapping]
    if missing:
        more = "..." if len(missing) > 3 else ""
        raise ConfigError(f"checkpoint {ckpt.path} has no tensors {missing[:3]}{more}")
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        groups[mapping[name]].append(name)
    return dict(groups)


def read_tensors(
    ckpt: Checkpoint,
    names: list[str],
    *,
    dtype: torch.dtype,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str = "loading weights",
) -> dict[str, torch.Tensor]:
    """The named checkpoint tensors, floating ones cast to ``dtype``, on ``device``, opening only the shards that hold them."""
    out: dict[str, torch.Tensor] = {}
    with tqdm(total=len(names), desc=desc, unit="tensor", disable=not progress) as bar:
        for filename, wanted in sorted(_group_by_shard(ckpt, names).items()):
            path = shard_path(ckpt, filename)
            with safe_open(str(path), framework="pt", device="cpu") as f:
                present = set(f.keys())
                for name in wanted:
                    if name not in present:
                        raise ConfigError(f"checkpoint file {path} has no tensor {name}")
                    tensor = f.get_tensor(name)
                    cast = dtype if tensor.is_floating_point() else tensor.dtype
                    out[name] = tensor.to(device=device, dtype=cast)
                    bar.update(1)
    return out


def fill_module(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Assign ``state`` (module-local names) into a meta-built module; every tensor must end up real."""
    module.load_state_dict(dict(state), strict=True, assign=True)
    _check_all_loaded(module)


def _init_meta_buffers(module: nn.Module) -> None:
    """Compute the non-persistent buffers a meta build left empty and no checkpoint holds (causal-mask tables,
    muP vectors), as from_pretrained does: the model's own ``_init_weights`` on each module holding one and on
    the modules above it (some models fill their layers' buffers from the top). Every loaded tensor is marked
    initialized first, so transformers' init functions leave it as read. A float buffer that no init filled
    stays NaN and is reported by ``_check_all_loaded``."""
    holders = {name: m for name, m in module.named_modules() if any(b.is_meta for b in m.buffers(recurse=False))}
    init = getattr(module, "_init_weights", None)
    if not holders or init is None:
        return
    loaded = [t for t in [*module.parameters(), *module.buffers()] if not t.is_meta]
    if not loaded:
        return
    device = loaded[0].device
    for tensor in loaded:
        tensor._is_hf_initialized = True
    filled: list[tuple[str, torch.Tensor]] = []
    for prefix, holder in holders.items():
        for name, buffer in list(holder.named_buffers(recurse=False)):
            if buffer.is_meta:
                fresh = torch.full_like(buffer, float("nan") if buffer.is_floating_point() else 0, device=device)
                holder.register_buffer(name, fresh, persistent=name not in holder._non_persistent_buffers_set)
                filled.append((f"{prefix}.{name}".lstrip("."), fresh))
    # the holders and every module above one ("a.b.c" -> "", "a", "a.b", "a.b.c")
    above = {".".join(name.split(".")[:depth]) for name in holders for depth in range(name.count(".") + 2)}
    with torch.no_grad():
        for name, sub in module.named_modules():  # top down
            if name in above:
                init(sub)
    unfilled = [name for name, tensor in filled if tensor.is_floating_point() and bool(tensor.isnan().any())]
    if unfilled:
        raise ConfigError(f"buffers no checkpoint holds and the model's init does not compute: {unfilled[:5]}")


def _check_all_loaded(module: nn.Module) -> None:
    """Compute the buffers no checkpoint holds, then ConfigError naming parameters or buffers still on the meta
    device (never filled)."""
    _init_meta_buffers(module)
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise ConfigError(f"tensors not loaded from the checkpoint: {left[:5]}")


def module_bytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (shared tensors counted once)."""
    seen: dict[int, int] = {}
    for t in [*module.parameters(), *module.buffers()]:
        seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


def checkpoint_names(ckpt: Checkpoint) -> list[str]:
    """Every tensor name the checkpoint holds (from the index, or a single file's header)."""
    mapping = weight_map(ckpt)
    if mapping is not None:
        return list(mapping)
    with safe_open(str(shard_path(ckpt, SINGLE_NAME)), framework="pt", device="cpu") as f:
        return list(f.keys())


def has_conversions(module: nn.Module) -> bool:
    """Whether transformers converts this model's checkpoint tensors on load (e.g. fusing MoE experts)."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    model_type = getattr(getattr(module, "config", None), "model_type", None)
    return bool(get_checkpoint_conversion_mapping(type(module).__name__) or get_checkpoint_conversion_mapping(model_type))


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Modules built inside get ``dtype`` parameters, as from_pretrained builds them."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def fill_converted(
    module: nn.Module,
    ckpt: Checkpoint,
    names: Mapping[str, str],
    *,
    dtype: torch.dtype,
    device: str | torch.device = "cpu",
) -> None:
    """Load a meta-built transformers model through transformers' own weight conversion.

    ``names`` maps checkpoint tensor names to the module-local names they have on disk (before
    conversion: per-expert MoE tensors, old key spellings). transformers renames and fuses them exactly
    as from_pretrained would (``convert_and_load_state_dict_in_model`` with the model's conversion
    mapping); tensors are handed over as lazy safetensors slices, so only those that end up in the module
    are read, and nothing is written to disk. ``module`` must have been built with ``dtype`` as the
    default dtype (``default_dtype``). ConfigError when anything is missing, left over or fails to convert.
    """
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import convert_and_load_state_dict_in_model
    from transformers.modeling_utils import LoadStateDictConfig

    load_config = LoadStateDictConfig(
        dtype=dtype, device_map={"": str(device)}, weight_mapping=get_model_conversion_mapping(module)
    )
    with ExitStack() as files:
        state: dict[str, object] = {}
        for filename, wanted in sorted(_group_by_shard(ckpt, list(names)).items()):
            f = files.enter_context(safe_open(str(shard_path(ckpt, filename)), framework="pt", device="cpu"))
            for name in wanted:
                state[names[name]] = f.get_slice(name)  # read only if the module takes it
        info, _ = convert_and_load_state_dict_in_model(module, state, load_config)
    problems = {
        "missing": sorted(info.missing_keys),
        "unexpected": sorted(info.unexpected_keys),
        "wrong shape": sorted(str(k) for k in info.mismatched_keys),
        "failed to convert": sorted(info.conversion_errors),
    }
    problems = {what: keys for what, keys in problems.items() if keys}
    if problems:
        detail = "; ".join(f"{what}: {keys[:3]}" for what, keys in problems.items())
        raise ConfigError(f"checkpoint {ckpt.path} does not fit {type(module).__name__}: {detail}")
    _check_all_loaded(module)
