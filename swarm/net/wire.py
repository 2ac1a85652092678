"""The molink wire codec: how a message becomes bytes on a TCP stream and back.

A frame is a fixed 12-byte prefix, a msgpack header and a raw body::

    +-------+------------+----------+----------------------+-------------------+
    | MLK1  | header_len | body_len | header (msgpack map) | body (raw bytes)  |
    +-------+------------+----------+----------------------+-------------------+
      4 B     u32 BE       u32 BE

The header is a map with string keys and always a string ``"type"``; the body carries tensor bytes
untouched, so activations are never copied through msgpack. Both lengths are checked against
``Limits`` *before* anything past the prefix is read, so a peer can never make us allocate more
than the limit. Nothing from the network is ever unpickled or passed to ``torch.load``: a tensor is
rebuilt from a small whitelist of dtypes, a checked shape and its raw bytes.

**Codecs.** A tensor's meta may name a ``codec`` its body is encoded with; ``dtype`` is then the dtype the
receiver gets back. ``raw`` (no codec: the bytes of ``dtype``) is exact; ``float16`` and ``bfloat16`` halve
float32's bytes; ``int8`` sends a bit over a quarter of them: per block of 32 values of a row (the last
dimension, one token's hidden state; the whole row when its length is no multiple of 32) a float32 scale (the
block's largest magnitude / 127) and the values rounded to int8, so a value is off by at most half its block's
scale. Blocks, not whole rows: a real model's hidden states have a few huge channels, and one scale per row
flattened every other channel of that row (``benchmarks/codecs.py``: SmolLM2's logits off by up to 13.5% of
the largest with row scales, 5.7% with blocks). An unknown codec is refused (``bad_dtype``); who may be sent which codec is the session's
business (``routing/session.py``: only codecs a peer listed in its Pong).
"""

from __future__ import annotations

import asyncio
import math
import struct
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack
import torch

from swarm.net.errors import Code, FrameTooLargeError, ProtocolError, TransportError

MAGIC = b"MLK1"
PREFIX = struct.Struct(">4sII")  # magic, header_len, body_len

MAX_DIMS = 8  # activations are [B, T, H]; a few more dims leave room for codecs, not for abuse

_WIRE_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_DTYPE_NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in _WIRE_DTYPES.items()}
RAW = "raw"
CODECS = (RAW, "float16", "bfloat16", "int8")  # what this version encodes and decodes
INT8_BLOCK = 32

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """What one connection, and a server's connections together, may cost."""

    max_header: int = 64 * 1024  # bytes
    max_body: int = 256 * 1024 * 1024  # bytes
    # once a frame's prefix is in, the rest must arrive within frame_deadline_s plus its size at min_rate:
    # a sender that stalls mid-frame (holding a buffer the size it declared) is cut off
    frame_deadline_s: float = 30.0
    min_rate: float = 1_000_000.0  # bytes/s (a 256 MiB body: 30 s + 268 s)
    max_connections: int = 1024  # inbound connections a server holds at once
    max_per_host: int = 64  # of them from one source address

    def frame_deadline(self, size: int) -> float:
        """Seconds the header and body of a frame of ``size`` bytes may take to arrive."""
        return self.frame_deadline_s + size / self.min_rate


@dataclass(frozen=True)
class Frame:
    """One decoded message: a header map (always with a str ``"type"``) and a raw body."""

    header: dict[str, Any]
    body: bytes = b""
    size: int = field(default=0, compare=False)  # bytes it took on the wire (prefix, header, body) when read


def encode_frame(header: dict[str, Any], body: bytes | memoryview = b"") -> list[bytes | memoryview]:
    """Buffers to write in order for one frame; the body is passed through without a copy."""
    if not isinstance(header.get("type"), str):
        raise ProtocolError('a frame header needs a str "type"', code=Code.BAD_MESSAGE)
    raw_header = msgpack.packb(header, use_bin_type=True)
    body_len = body.nbytes if isinstance(body, memoryview) else len(body)
    prefix = PREFIX.pack(MAGIC, len(raw_header), body_len)
    if body_len == 0:
        return [prefix + raw_header]
    return [prefix + raw_header, body]


def decode_prefix(prefix: bytes, limits: Limits) -> tuple[int, int]:
    """(header_len, body_len) of a 12-byte prefix, refused when the magic is wrong or a part is over the limit."""
    if len(prefix) != PREFIX.size:
        raise ProtocolError(f"frame prefix must be {PREFIX.size} bytes, got {len(prefix)}", code=Code.BAD_PREFIX)
    magic, header_len, body_len = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}: not a molink stream", code=Code.BAD_MAGIC)
    if header_len > limits.max_header:
        raise FrameTooLargeError(
            f"frame header of {header_len} bytes is over the limit of {limits.max_header}"
        )
    if body_len > limits.max_body:
        raise FrameTooLargeError(f"frame body of {body_len} bytes is over the limit of {limits.max_body}")
    return header_len, body_len


def decode_header(raw: bytes) -> dict[str, Any]:
    """The header map of a frame; ProtocolError unless it is a msgpack map with str keys and a str "type"."""
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        # ValueError covers msgpack's UnpackValueError and invalid UTF-8 in str fields
        raise ProtocolError(f"frame header is not valid msgpack: {exc}", code=Code.BAD_HEADER) from exc
    if not isinstance(header, dict):
        raise ProtocolError(f"frame header must be a map, got {type(header).__name__}", code=Code.BAD_HEADER)
    if not all(isinstance(key, str) for key in header):
        raise ProtocolError("frame header keys must be strings", code=Code.BAD_HEADER)
    if not isinstance(header.get("type"), str):
        raise ProtocolError('frame header lacks a str "type"', code=Code.BAD_HEADER)
    return header


async def _read_exactly(reader: asyncio.StreamReader, n: int, what: str) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as exc:
        raise TransportError(f"connection closed in the middle of a frame {what}") from exc


async def read_frame(reader: asyncio.StreamReader, limits: Limits) -> Frame | None:
    """The next frame on the stream; None on a clean EOF before a frame, TransportError on EOF inside one."""
    try:
        prefix = await reader.readexactly(PREFIX.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise TransportError("connection closed in the middle of a frame prefix") from exc
    header_len, body_len = decode_prefix(prefix, limits)
    deadline = limits.frame_deadline(header_len + body_len)
    try:
        async with asyncio.timeout(deadline):
            raw_header = await _read_exactly(reader, header_len, "header")
            body = await _read_exactly(reader, body_len, "body") if body_len else b""
    except TimeoutError:
        raise TransportError(f"a frame of {header_len + body_len} bytes did not arrive within {deadline:.0f} s "
                             "of its prefix") from None
    return Frame(header=decode_header(raw_header), body=body, size=PREFIX.size + header_len + body_len)


def tensor_to_wire(t: torch.Tensor, codec: str = RAW) -> tuple[dict[str, Any], memoryview | bytes]:
    """(meta, bytes) of a float32/float16/bfloat16 tensor, in C order, without numpy; ``codec`` (``CODECS``)
    encodes the body, and the meta says so (``raw``: the tensor's own bytes, no codec named)."""
    name = _DTYPE_NAMES.get(t.dtype)
    if name is None:
        raise ProtocolError(f"dtype {t.dtype} cannot travel on the wire", code=Code.BAD_DTYPE)
    check_codec(codec)
    t = t.detach().to("cpu")
    meta: dict[str, Any] = {"dtype": name, "shape": list(t.shape)}
    if codec in (RAW, name) or t.numel() == 0:
        return meta, _raw_bytes(t)
    meta["codec"] = codec
    if codec == "int8":
        rows = t.float().reshape(-1, int8_block(t.shape[-1]))
        scales = rows.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny) / 127
        values = torch.round(rows / scales).clamp(-127, 127).to(torch.int8)
        return meta, bytes(_raw_bytes(scales)) + bytes(_raw_bytes(values))
    return meta, _raw_bytes(t.to(_WIRE_DTYPES[codec]))


def check_codec(codec: Any, code: Code = Code.BAD_DTYPE) -> None:
    """ProtocolError (with ``code``) unless ``codec`` is one of ``CODECS``."""
    if not isinstance(codec, str) or codec not in CODECS:
        raise ProtocolError(f"codec {codec!r:.40} is not one of {', '.join(CODECS)}", code=code)


def int8_block(width: int) -> int:
    """Values per int8 scale in a row of ``width``: 32, or the whole row when 32 does not divide it."""
    return INT8_BLOCK if width % INT8_BLOCK == 0 else width


def _raw_bytes(t: torch.Tensor) -> memoryview | bytes:
    flat = t.contiguous().reshape(-1)
    if flat.numel() == 0:
        return b""
    # view(torch.uint8) reinterprets any dtype as bytes, bfloat16 included (numpy has no bfloat16)
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")


def tensor_from_wire(meta: Any, body: bytes, *, max_elements: int | None = None) -> torch.Tensor:
    """A fresh writable tensor from wire meta and bytes, refused unless dtype, codec, shape and values check
    out; an encoded body comes back decoded, in ``meta["dtype"]``."""
    if not isinstance(meta, dict):
        raise ProtocolError("tensor meta must be a map", code=Code.BAD_MESSAGE)
    name = meta.get("dtype")
    if not isinstance(name, str) or name not in _WIRE_DTYPES:
        raise ProtocolError(f"tensor dtype {name!r} is not one of {sorted(_WIRE_DTYPES)}", code=Code.BAD_DTYPE)
    dtype = _WIRE_DTYPES[name]
    codec = meta.get("codec", RAW)
    check_codec(codec)
    shape = meta.get("shape")
    if (
        not isinstance(shape, list)
        or not 0 < len(shape) <= MAX_DIMS
        or not all(type(dim) is int and dim > 0 for dim in shape)
    ):
        raise ProtocolError(f"tensor shape {shape!r} must be 1..{MAX_DIMS} positive ints", code=Code.BAD_SHAPE)
    numel = math.prod(shape)
    if max_elements is not None and numel > max_elements:
        raise ProtocolError(
            f"tensor of {numel} elements is over the limit of {max_elements}", code=Code.BAD_SHAPE
        )
    rows = numel // int8_block(shape[-1])
    if codec == "int8":
        need = rows * 4 + numel
    else:
        need = numel * (dtype if codec == RAW else _WIRE_DTYPES[codec]).itemsize
    if need != len(body):
        raise ProtocolError(
            f"tensor shape {shape} of {name} ({codec}) needs {need} bytes, body has {len(body)}",
            code=Code.BAD_SHAPE,
        )
    # bytearray copy: the result owns writable memory that outlives the frame buffer
    raw = torch.frombuffer(bytearray(body), dtype=torch.uint8)
    if codec == RAW:
        tensor = raw.view(dtype).reshape(shape)
    elif codec == "int8":
        scales = raw[: rows * 4].view(torch.float32).reshape(rows, 1)
        if not bool(torch.isfinite(scales).all()):
            raise ProtocolError("tensor holds NaN or Inf", code=Code.NON_FINITE)
        tensor = (raw[rows * 4:].view(torch.int8).reshape(rows, -1).float() * scales).reshape(shape).to(dtype)
    else:
        tensor = raw.view(_WIRE_DTYPES[codec]).reshape(shape).to(dtype)
    if not bool(torch.isfinite(tensor).all()):
        raise ProtocolError("tensor holds NaN or Inf", code=Code.NON_FINITE)
    return tensor


def header_field(
    header: dict[str, Any], name: str, typ: type[T] | tuple[type, ...], *, optional: bool = False
) -> Any:
    """``header[name]`` checked to be of ``typ``; None when absent and ``optional``; ProtocolError otherwise.

    ``bool`` is not accepted where ``int`` is asked for (msgpack keeps them apart, so should we).
    """
    if name not in header or (optional and header[name] is None):
        if optional:
            return None
        raise ProtocolError(f"message {header.get('type')!r} lacks field {name!r}", code=Code.BAD_MESSAGE)
    value = header[name]
    types = typ if isinstance(typ, tuple) else (typ,)
    is_bool_for_int = isinstance(value, bool) and bool not in types and int in types
    if not isinstance(value, types) or is_bool_for_int:
        expected = " or ".join(t.__name__ for t in types)
        raise ProtocolError(
            f"field {name!r} of message {header.get('type')!r} must be {expected}, got {type(value).__name__}",
            code=Code.BAD_MESSAGE,
        )
    return value
