"""Turn a model name into a local checkpoint: alias, local directory, GGUF file or Hugging Face repo id.

Only the small files are fetched here (config.json, and the shard index when there is one); span loading
(models/checkpoint.py) later downloads just the shards that hold its layers. ``model_key`` is the name
peers and clients agree on in the DHT: it comes from the checkpoint's content (models/fingerprint.py), so it
is the same for the same weights on any machine, under any folder or file name, and reached by any route
(a hub repo reads the few bytes the key needs through HTTP range requests, or from the local hub cache).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import get_session, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.constants import ENDPOINT as HF_ENDPOINT
from huggingface_hub.constants import HF_HUB_DOWNLOAD_TIMEOUT
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status
from transformers import AutoConfig, PretrainedConfig

from models.aliases import ALIASES, resolve_target, suggest_aliases
from models.fingerprint import (
    RangeReader,
    anchor_shard,
    canonical_config,
    canonical_weight_map,
    file_reader,
    load_json_object,
    load_weight_map,
    model_key,
    sample_anchor,
)
from swarm.errors import ModelNotFoundError, UnsupportedModelError

CONFIG_NAME = "config.json"
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

NO_HUB_ADVICE = "use a local folder or a .gguf file"
_RANGE_WORKERS = 8  # parallel range requests for the sampled blocks
_MAX_IGNORED_RANGE = 8 * 1024 * 1024  # a server that ignores Range is read up to this many bytes, no further


@dataclass(frozen=True)
class Checkpoint:
    """A loadable checkpoint: a directory with config.json and safetensors (or their hub index)."""

    path: Path  # config.json, *.safetensors, model.safetensors.index.json when sharded
    config: PretrainedConfig
    model_key: str  # what peers and clients agree on: the DHT key, ``<model_type>-<content digest>``
    display_name: str  # what to show in logs and listings: the alias typed, else repo id, folder name or GGUF stem
    repo_id: str | None = None  # set when it came from the hub: shards are downloaded on demand

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)


def content_key(
    config: PretrainedConfig, config_path: Path, index_path: Path | None, reader_for: Callable[[str], RangeReader]
) -> str:
    """The model key of a checkpoint from its config.json, its shard index (None: a single file) and a reader
    of its anchor shard (``reader_for(filename)``); see models/fingerprint.py for what is hashed."""
    weights = load_weight_map(index_path) if index_path is not None else None
    anchor = anchor_shard(weights)
    sample = sample_anchor(reader_for(anchor), anchor)
    return model_key(
        str(config.model_type),
        canonical_config(load_json_object(config_path)),
        canonical_weight_map(weights, sample.header),
        sample,
    )


def local_checkpoint(path: Path, *, display_name: str | None = None) -> Checkpoint:
    """A checkpoint from a directory holding config.json and safetensors; the key comes from its content.

    ``display_name`` defaults to the directory's name. ModelNotFoundError when the anchor shard is missing
    (no safetensors weights); ConfigError naming the file for a malformed safetensors header or index.
    """
    path = Path(path).resolve()
    index = path / INDEX_NAME

    def reader_for(filename: str) -> RangeReader:
        shard = path / filename
        if not shard.is_file():
            raise ModelNotFoundError(
                f"checkpoint folder {path} has no {filename}: molink loads safetensors checkpoints "
                f"({SINGLE_NAME}, or shards listed in {INDEX_NAME})"
            )
        return file_reader(shard)

    config = load_config(path)
    key = content_key(config, path / CONFIG_NAME, index if index.is_file() else None, reader_for)
    return Checkpoint(path=path, config=config, model_key=key, display_name=display_name or path.name)


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


def read_hub_ranges(repo_id: str, filename: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """Bytes [start, end) of a file in a hub repo (main revision), one HTTP Range request per range.

    Uses huggingface_hub's URL helper, headers (token) and session; a range past the end of the file comes
    back short. Hub errors are raised as the hub's HfHubHTTPError; transport failures as ConnectionError
    (both OSError, which resolve_model reports as the hub being unreachable or refusing).
    """
    url = hf_hub_url(repo_id, filename)
    headers = {**build_hf_headers(), "Accept-Encoding": "identity"}

    def one(byte_range: tuple[int, int]) -> bytes:
        start, end = byte_range
        if end <= start:
            return b""
        try:
            with get_session().stream(
                "GET",
                url,
                headers={**headers, "Range": f"bytes={start}-{end - 1}"},
                timeout=HF_HUB_DOWNLOAD_TIMEOUT,
                follow_redirects=True,
            ) as response:
                if response.status_code == 416:  # the range starts past the end of the file
                    return b""
                hf_raise_for_status(response)
                ignored = response.status_code != 206  # the server sends the file from byte 0
                if ignored and end > _MAX_IGNORED_RANGE:
                    raise ConnectionError(f"the hub ignored a Range request for {repo_id}/{filename}")
                want = end if ignored else end - start
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) >= want:
                        break
                return bytes(data[start:end] if ignored else data[:want])
        except OSError:
            raise
        except Exception as exc:  # the session's own transport errors (httpx): not OSError
            raise ConnectionError(f"cannot read {repo_id}/{filename} from the hub: {exc}") from exc

    if len(ranges) <= 1:
        return [one(r) for r in ranges]
    with ThreadPoolExecutor(max_workers=min(_RANGE_WORKERS, len(ranges))) as pool:
        return list(pool.map(one, ranges))


def _hub_reader(repo_id: str, offline: bool) -> Callable[[str], RangeReader]:
    """Reads a hub file from the local hub cache when it is there, else through HTTP ranges (never offline)."""

    def reader_for(filename: str) -> RangeReader:
        cached = try_to_load_from_cache(repo_id, filename)
        if isinstance(cached, str):
            return file_reader(Path(cached))
        if offline:
            raise ModelNotFoundError(
                f"cannot load model {repo_id!r}: offline, a hub model needs its files cached, and the local hub "
                f"cache lacks its {filename} (the model key reads a few bytes of it): {NO_HUB_ADVICE}"
            )
        return lambda ranges: read_hub_ranges(repo_id, filename, ranges)

    return reader_for


def hub_checkpoint(repo_id: str, *, offline: bool, display_name: str | None = None) -> Checkpoint:
    """config.json (and the shard index, if any) of a hub repo, keyed by content like a local folder.

    The key reads the anchor shard's header and sampled blocks from the local hub cache, or (online) through
    HTTP range requests: the shard itself is not downloaded. Raises the hub's own errors, and
    ModelNotFoundError when offline and the anchor shard is not cached.
    """
    config_path = Path(hf_hub_download(repo_id, CONFIG_NAME, local_files_only=offline))
    index_path: Path | None = None
    try:
        index_path = Path(hf_hub_download(repo_id, INDEX_NAME, local_files_only=offline))
    except EntryNotFoundError:  # a single-file checkpoint has no index (remote or not cached: both fine)
        pass
    config = load_config(config_path.parent)
    key = content_key(config, config_path, index_path, _hub_reader(repo_id, offline))
    return Checkpoint(
        path=config_path.parent, config=config, model_key=key, display_name=display_name or repo_id, repo_id=repo_id
    )


def _why_not_on_hub(exc: BaseException, offline: bool) -> str:
    """Why the hub did not give a checkpoint, in words (the exception class comes after, for reports)."""
    if isinstance(exc, HFValidationError):
        return "not a hub repo id either (nothing here has that path)"
    if offline or isinstance(exc, (LocalEntryNotFoundError, ConnectionError, TimeoutError)):
        return f"the hub cannot be reached from here: {NO_HUB_ADVICE} (the local hub cache has no such repo)"
    if isinstance(exc, GatedRepoError):
        return "the hub repo is gated: accept its terms on the hub and log in (hf auth login)"
    if isinstance(exc, RepositoryNotFoundError):
        return "the hub has no such repo (or it is private: log in with hf auth login)"
    if isinstance(exc, HfHubHTTPError):
        return "the hub refused it"
    return "the hub could not be reached or has no such repo"


def load_config(folder: Path) -> PretrainedConfig:
    """A checkpoint's config, never running code that came with it (``trust_remote_code=False``): a model
    type transformers knows is read with its own class whatever the config's ``auto_map`` says; one that only
    a checkpoint's own Python code defines is an UnsupportedModelError."""
    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except ValueError as exc:
        if "trust_remote_code" not in str(exc) and "auto_map" not in str(exc):
            raise
        raise UnsupportedModelError(
            f"{folder}: this model's code ships with the checkpoint (config.json auto_map), and molink never runs "
            "code from a checkpoint; use a model type transformers itself supports") from exc


def resolve_model(name: str, *, cache_dir: Path | None = None, offline: bool | None = None) -> Checkpoint:
    """The checkpoint ``name`` stands for, trying alias, local directory, GGUF file, then the hub.

    An alias whose model ships in an installed package (models/embedded.py: ``smollm2-135m``) always means
    that package's GGUF file. ``cache_dir`` is where converted GGUF checkpoints live (default
    ~/.cache/molink/models). ``offline`` None honours HF_HUB_OFFLINE and treats a hub whose name does not
    resolve as offline; offline, repos are looked up in the local hub cache only. ModelNotFoundError says
    what was tried, why the hub did not help, and the nearest aliases for a name that is none.
    """
    alias = name.strip().lower() if name.strip().lower() in ALIASES else None
    target = resolve_target(name)
    path = Path(target).expanduser()
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        return local_checkpoint(path, display_name=alias)
    if path.suffix.lower() == ".gguf" and path.is_file():
        from models.gguf import convert_gguf  # deferred: conversion pulls in the gguf package

        converted = convert_gguf(path, cache_dir=cache_dir)
        return local_checkpoint(converted, display_name=alias or path.stem)
    offline = _hub_offline(offline)
    try:
        return hub_checkpoint(target, offline=offline, display_name=alias)
    # Validation: not a repo id at all. HTTP: no such repo, gated, or the hub refused. OSError covers the
    # offline/no-cache case (LocalEntryNotFoundError) and connection failures.
    except (HFValidationError, HfHubHTTPError, EntryNotFoundError, OSError) as exc:
        why = f"{_why_not_on_hub(exc, offline)} ({type(exc).__name__})"
        if alias is not None:
            raise ModelNotFoundError(f"cannot load model {name!r}: it is an alias of {target!r}, and {why}") from exc
        message = (
            f"cannot load model {name!r}: not an alias, not a local directory with config.json, "
            f"not a .gguf file, and {why}"
        )
        close = suggest_aliases(name)
        if close:
            listed = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
            message += f"; did you mean {listed}?"
        raise ModelNotFoundError(message) from exc
