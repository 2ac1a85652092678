"""Turn a model name into a local checkpoint: alias, local directory, GGUF file or Hugging Face repo id.

Only the small files are fetched here (config.json, and the shard index when there is one); span loading
(models/checkpoint.py) later downloads just the shards that hold its layers. ``model_key`` is the name
peers and clients agree on in the DHT, so it must come out the same for the same weights on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import hf_hub_download
from huggingface_hub.constants import ENDPOINT as HF_ENDPOINT
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError
from transformers import AutoConfig, PretrainedConfig

from models.aliases import resolve_alias
from swarm.errors import ModelNotFoundError

CONFIG_NAME = "config.json"
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

# Keys that vary with the tool that saved a checkpoint, not with the weights it describes.
_VOLATILE_KEYS = ("_name_or_path", "transformers_version", "dtype", "torch_dtype")


@dataclass(frozen=True)
class Checkpoint:
    """A loadable checkpoint: a directory with config.json and safetensors (or their hub index)."""

    path: Path  # config.json, *.safetensors, model.safetensors.index.json when sharded
    config: PretrainedConfig
    model_key: str  # what peers and clients agree on: the DHT key
    repo_id: str | None = None  # set when it came from the hub: shards are downloaded on demand

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)


def config_digest(config_path: Path) -> str:
    """8 hex of sha256 over config.json's canonical JSON, without keys that depend on who saved it."""
    raw = json.loads(Path(config_path).read_text())
    for key in _VOLATILE_KEYS:
        raw.pop(key, None)
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def local_checkpoint(path: Path, *, name: str | None = None) -> Checkpoint:
    """A checkpoint from a directory holding config.json; its key is ``<name or dir name>-<config digest>``."""
    path = Path(path).resolve()
    key = f"{name or path.name}-{config_digest(path / CONFIG_NAME)}"
    return Checkpoint(path=path, config=AutoConfig.from_pretrained(path), model_key=key)


def _hub_offline(offline: bool | None) -> bool:
    """An explicit choice wins; else HF_HUB_OFFLINE, else whether the hub's name resolves at all.

    An unreachable hub counts as offline, so a repo already in the local hub cache still loads.
    """
    if offline is not None:
        return offline
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, at import.
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return not _hub_resolvable()


def _hub_resolvable() -> bool:
    """Whether the hub's host name resolves: without DNS, the hub client would retry for half a minute."""
    host = urlparse(HF_ENDPOINT).hostname or ""
    try:
        socket.getaddrinfo(host, 443)
    except OSError:  # socket.gaierror: no DNS, no network
        return False
    return True


def hub_checkpoint(repo_id: str, *, offline: bool) -> Checkpoint:
    """config.json (and the shard index, if any) of a hub repo; raises the hub's own errors."""
    config_path = Path(hf_hub_download(repo_id, CONFIG_NAME, local_files_only=offline))
    try:
        hf_hub_download(repo_id, INDEX_NAME, local_files_only=offline)
    except EntryNotFoundError:  # a single-file checkpoint has no index (remote or not cached: both fine)
        pass
    config = AutoConfig.from_pretrained(config_path.parent)
    return Checkpoint(path=config_path.parent, config=config, model_key=repo_id, repo_id=repo_id)


def resolve_model(name: str, *, cache_dir: Path | None = None, offline: bool | None = None) -> Checkpoint:
    """The checkpoint ``name`` stands for, trying alias, local directory, GGUF file, then the hub.

    ``cache_dir`` is where converted GGUF checkpoints live (default ~/.cache/molink/models). ``offline``
    None honours HF_HUB_OFFLINE and treats a hub whose name does not resolve as offline; offline, repos
    are looked up in the local hub cache only.
    """
    target = resolve_alias(name)
    path = Path(target).expanduser()
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        return local_checkpoint(path)
    if path.suffix.lower() == ".gguf" and path.is_file():
        from models.gguf import convert_gguf  # deferred: conversion pulls in the gguf package

        converted = convert_gguf(path, cache_dir=cache_dir)
        return local_checkpoint(converted, name=path.stem)
    offline = _hub_offline(offline)
    try:
        return hub_checkpoint(target, offline=offline)
    # Validation: not a repo id at all. HTTP: no such repo, gated, or the hub refused. OSError covers the
    # offline/no-cache case (LocalEntryNotFoundError) and connection failures.
    except (HFValidationError, HfHubHTTPError, EntryNotFoundError, OSError) as exc:
        why = "the hub could not be reached or has no such repo"
        if offline:
            why = "the hub cannot be reached (offline) and its local cache has no such repo"
        if target != name:
            raise ModelNotFoundError(
                f"cannot load model {name!r}: it is an alias of {target!r}, and {why} ({type(exc).__name__})"
            ) from exc
        raise ModelNotFoundError(
            f"cannot load model {name!r}: not an alias, not a local directory with config.json, "
            f"not a .gguf file, and {why} ({type(exc).__name__})"
        ) from exc
