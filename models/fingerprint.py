"""The model key: a short digest of a checkpoint's content, so peers holding the same weights meet in the DHT.

Peers and clients find each other under the model key, so it must be the same for the same checkpoint on
every machine, whatever folder or file name it is stored under or however it was reached (a local folder,
a GGUF file converted here, a hub repo id), and different for different weights even when the config is the
same (fine-tunes share their base's config; tests build many random checkpoints from one config).

The key is ``<model_type>-<16 hex>``: the first 16 hex of a sha256 over, each part tagged and length-framed,

1. the canonical config.json (sorted keys, compact) without the keys that depend on the saving tool;
2. the canonical weight map: the index's ``weight_map`` (tensor -> shard file) for a sharded checkpoint,
   else the sorted tensor names of the single file;
3. the parsed safetensors header of the *anchor shard* (the first shard file name in sorted order, or
   ``model.safetensors``): tensor -> dtype, shape, data_offsets, without ``__metadata__``;
4. 16 blocks of 4096 bytes at evenly spaced offsets across that shard's data section (all of it, in
   blocks, when it is smaller than 64 KiB).

So computing a key costs one header read plus 64 KiB, whatever the model's size, and works through HTTP
range requests as well as on a local file. The price: a change confined to bytes outside the sampled
blocks (or to other shards than the anchor) leaves the key unchanged.

The parts and the digest are pure functions; reading goes through a ``RangeReader`` (a local file here,
HTTP ranges in models/source.py), so the same code frames both.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm.errors import ConfigError

SINGLE_NAME = "model.safetensors"
VOLATILE_KEYS = ("_name_or_path", "transformers_version", "dtype", "torch_dtype")
BLOCKS = 16
BLOCK_SIZE = 4096
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
HEX_LEN = 16
_FORMAT = b"molink-key-v1"

# Half-open byte ranges [start, end) of one file -> their bytes, in order.
RangeReader = Callable[[Sequence[tuple[int, int]]], list[bytes]]


@dataclass(frozen=True)
class AnchorSample:
    """What the key reads of the anchor shard: its header (tensor -> dtype, shape, data_offsets) and blocks."""

    header: dict[str, Any]
    blocks: tuple[bytes, ...]


def canonical_config(raw: Mapping[str, Any]) -> bytes:
    """config.json as compact JSON with sorted keys, without keys that vary with the tool that saved it."""
    kept = {key: value for key, value in raw.items() if key not in VOLATILE_KEYS}
    return json.dumps(kept, sort_keys=True, separators=(",", ":")).encode()


def canonical_weight_map(weight_map: Mapping[str, str] | None, tensor_names: Iterable[str]) -> bytes:
    """The index's tensor -> shard map when sharded (``weight_map`` not None), else the sorted tensor names."""
    if weight_map is not None:
        body: Any = {"weight_map": dict(sorted(weight_map.items()))}
    else:
        body = {"tensors": sorted(tensor_names)}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def canonical_header(header: Mapping[str, Any]) -> bytes:
    """A parsed safetensors header (``__metadata__`` already dropped) as compact JSON with sorted keys."""
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def anchor_shard(weight_map: Mapping[str, str] | None) -> str:
    """The shard the key samples: the first shard file name in sorted order, or model.safetensors."""
    if not weight_map:
        return SINGLE_NAME
    return min(weight_map.values())


def header_length(prefix: bytes, filename: str) -> int:
    """The header length a safetensors file declares in its first 8 bytes (little-endian u64)."""
    if len(prefix) != 8:
        raise ConfigError(f"safetensors file {filename} is too short to hold a header ({len(prefix)} bytes)")
    (length,) = struct.unpack("<Q", prefix)
    if length == 0:
        raise ConfigError(f"safetensors file {filename} declares an empty header")
    if length > MAX_HEADER_BYTES:
        raise ConfigError(
            f"safetensors file {filename} declares a header of {length} bytes (over {MAX_HEADER_BYTES}): "
            "the file is corrupt or not safetensors"
        )
    return length


def parse_header(raw: bytes, filename: str) -> dict[str, Any]:
    """The header's tensors (name -> dtype, shape, data_offsets), checked, without ``__metadata__``."""
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"safetensors file {filename} has a header that is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ConfigError(f"safetensors file {filename} has a header that is not a JSON object")
    parsed.pop("__metadata__", None)
    header: dict[str, Any] = {}
    for name, entry in parsed.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("dtype"), str)
            and _ints(entry.get("shape"))
            and _ints(entry.get("data_offsets"))
            and len(entry["data_offsets"]) == 2
            and 0 <= entry["data_offsets"][0] <= entry["data_offsets"][1]
        ):
            raise ConfigError(f"safetensors file {filename} has a malformed header entry for {name!r}")
        header[name] = {"dtype": entry["dtype"], "shape": entry["shape"], "data_offsets": entry["data_offsets"]}
    return header


def _ints(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


def data_length(header: Mapping[str, Any]) -> int:
    """Bytes of the data section the header describes (the end of its last tensor)."""
    return max((entry["data_offsets"][1] for entry in header.values()), default=0)


def sample_ranges(data_len: int, *, blocks: int = BLOCKS, block_size: int = BLOCK_SIZE) -> list[tuple[int, int]]:
    """``blocks`` ranges of ``block_size`` bytes evenly spread over [0, data_len), the first at 0 and the last
    ending at data_len; when the data is no larger than all blocks together, the whole data in blocks."""
    if data_len <= blocks * block_size:
        return [(start, min(start + block_size, data_len)) for start in range(0, data_len, block_size)]
    span = data_len - block_size
    starts = [round(i * span / (blocks - 1)) for i in range(blocks)]
    return [(start, start + block_size) for start in starts]


def sample_anchor(read: RangeReader, filename: str) -> AnchorSample:
    """Read the anchor shard's header and sampled blocks through ``read``; ConfigError names ``filename``
    when the header is malformed or the file ends before the data its header describes."""
    (prefix,) = read([(0, 8)])
    length = header_length(prefix, filename)
    (raw,) = read([(8, 8 + length)])
    if len(raw) != length:
        raise ConfigError(
            f"safetensors file {filename} declares a header of {length} bytes but holds only {len(raw)} after it"
        )
    header = parse_header(raw, filename)
    base = 8 + length
    ranges = sample_ranges(data_length(header))
    blocks = read([(base + start, base + end) for start, end in ranges]) if ranges else []
    for (start, end), got in zip(ranges, blocks, strict=True):
        if len(got) != end - start:
            raise ConfigError(f"safetensors file {filename} is truncated: its data ends before byte {base + end}")
    return AnchorSample(header=header, blocks=tuple(blocks))


def file_reader(path: Path) -> RangeReader:
    """A RangeReader over a local file (short reads past its end, never an exception)."""

    def read(ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        out: list[bytes] = []
        with open(path, "rb") as f:
            for start, end in ranges:
                f.seek(start)
                out.append(f.read(end - start))
        return out

    return read


def content_digest(config: bytes, weight_map: bytes, anchor: AnchorSample) -> str:
    """The first 16 hex of sha256 over the tagged, length-framed parts (format version first)."""
    digest = hashlib.sha256()
    parts: list[tuple[bytes, bytes]] = [
        (b"format", _FORMAT),
        (b"config", config),
        (b"weights", weight_map),
        (b"header", canonical_header(anchor.header)),
        *((b"block", block) for block in anchor.blocks),
    ]
    for tag, body in parts:
        digest.update(tag + struct.pack(">Q", len(body)) + body)
    return digest.hexdigest()[:HEX_LEN]


def model_key(model_type: str, config: bytes, weight_map: bytes, anchor: AnchorSample) -> str:
    """``<model_type>-<16 hex of the content digest>``: the DHT key of a checkpoint."""
    return f"{model_type}-{content_digest(config, weight_map, anchor)}"


def load_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding an object (config.json, the shard index); ConfigError naming the file otherwise."""
    try:
        raw = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return raw


def load_weight_map(path: Path) -> dict[str, str]:
    """The ``weight_map`` of a model.safetensors.index.json; ConfigError naming the file when it is malformed."""
    raw = load_json_object(path)
    mapping = raw.get("weight_map")
    if not isinstance(mapping, dict) or not mapping or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise ConfigError(f"{path} has no weight_map of tensor names to shard files")
    return mapping
