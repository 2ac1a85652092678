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
from contextlib import contextmanager
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from safetensors import safe_open
from torch import nn
from tqdm.auto import tqdm

from models.source import INDEX_NAME, SINGLE_NAME, Checkpoint
from swarm.errors import ConfigError


@contextmanager
def on_meta() -> Iterator[None]:
    """Build modules without allocating their weights."""
    with torch.device("meta"):
        yield


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
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise ConfigError(f"tensors not loaded from the checkpoint: {left[:5]}")


def module_bytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (shared tensors counted once)."""
    seen: dict[int, int] = {}
    for t in [*module.parameters(), *module.buffers()]:
        seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())
