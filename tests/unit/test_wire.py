"""Unit tests of the frame codec and the tensor codec (swarm.net.wire); streams are fed bytes, no sockets."""

from __future__ import annotations

import asyncio
import struct

import msgpack
import pytest
import torch

from swarm.errors import FrameTooLargeError, ProtocolError, TransportError
from swarm.net.wire import (
    MAGIC,
    PREFIX,
    Frame,
    Limits,
    decode_header,
    decode_prefix,
    encode_frame,
    header_field,
    read_frame,
    tensor_from_wire,
    tensor_to_wire,
)


def frame_bytes(header: dict, body: bytes = b"") -> bytes:
    return b"".join(bytes(buf) for buf in encode_frame(header, body))


def reader_of(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def raw_frame(raw_header: bytes, body: bytes = b"", magic: bytes = MAGIC) -> bytes:
    return PREFIX.pack(magic, len(raw_header), len(body)) + raw_header + body


async def test_frames_round_trip_in_order_then_clean_eof():
    """Headers of every msgpack type and bodies (empty, bytes, memoryview) come back unchanged."""
    header = {
        "type": "step",
        "session": "abc",
        "step": 3,
        "pos": [0, 1],
        "x": 1.5,
        "ok": True,
        "b": b"\x00\xff",
    }
    body = bytes(range(256)) * 10
    data = (
        frame_bytes(header, body)
        + frame_bytes({"type": "ping"})
        + frame_bytes({"type": "m"}, memoryview(b"xyz"))
    )
    reader = reader_of(data)
    limits = Limits()
    assert await read_frame(reader, limits) == Frame(header=header, body=body)
    assert await read_frame(reader, limits) == Frame(header={"type": "ping"}, body=b"")
    assert await read_frame(reader, limits) == Frame(header={"type": "m"}, body=b"xyz")
    assert await read_frame(reader, limits) is None


@pytest.mark.parametrize("cut", ["prefix", "header", "body"])
async def test_eof_inside_a_frame_is_a_transport_error(cut):
    """A stream that ends mid-prefix, mid-header or mid-body raises TransportError, not None."""
    data = frame_bytes({"type": "step", "pad": "x" * 20}, b"b" * 100)
    header_len = len(data) - PREFIX.size - 100
    end = {"prefix": 5, "header": PREFIX.size + header_len // 2, "body": len(data) - 1}[cut]
    with pytest.raises(TransportError):
        await read_frame(reader_of(data[:end]), Limits())


async def test_oversized_parts_are_refused_before_they_are_read():
    """A header or body over the limit raises FrameTooLargeError from the prefix alone (stream left open)."""
    big_body = PREFIX.pack(MAGIC, 10, 1000)  # nothing after the prefix, and no EOF: reading on would hang
    with pytest.raises(FrameTooLargeError):
        await asyncio.wait_for(read_frame(reader_of(big_body, eof=False), Limits(max_body=999)), 1)
    big_header = PREFIX.pack(MAGIC, 65, 0)
    with pytest.raises(FrameTooLargeError) as info:
        await asyncio.wait_for(read_frame(reader_of(big_header, eof=False), Limits(max_header=64)), 1)
    assert info.value.code == "frame_too_large"


def test_decode_prefix_checks_magic_and_limits():
    """A wrong magic is a bad_magic ProtocolError; sizes at the limit pass."""
    assert decode_prefix(PREFIX.pack(MAGIC, 64, 1000), Limits(max_header=64, max_body=1000)) == (64, 1000)
    with pytest.raises(ProtocolError) as info:
        decode_prefix(PREFIX.pack(b"HTTP", 1, 1), Limits())
    assert info.value.code == "bad_magic"


async def test_bad_magic_on_a_stream():
    """A stream that is not molink (say, an HTTP request) is refused at once."""
    with pytest.raises(ProtocolError) as info:
        await read_frame(reader_of(b"GET / HTTP/1.1\r\n\r\n"), Limits())
    assert info.value.code == "bad_magic"


@pytest.mark.parametrize(
    "raw",
    [
        msgpack.packb([1, 2, 3]),
        msgpack.packb("type"),
        msgpack.packb({"kind": "step"}),
        msgpack.packb({"type": 5}),
        msgpack.packb({1: "x", "type": "step"}),
        b"\xc1",  # a byte msgpack never uses
        msgpack.packb({"type": "a"}) + b"\x00",  # trailing garbage
    ],
    ids=["list", "str", "no-type", "int-type", "int-key", "invalid", "trailing"],
)
async def test_headers_that_are_not_str_maps_with_type_are_refused(raw):
    """decode_header and read_frame refuse anything but a msgpack map with str keys and a str "type"."""
    with pytest.raises(ProtocolError):
        decode_header(raw)
    with pytest.raises(ProtocolError):
        await read_frame(reader_of(raw_frame(raw)), Limits())


def test_encode_frame_needs_a_type():
    """We never send a header the other side would refuse."""
    with pytest.raises(ProtocolError):
        encode_frame({"session": "x"})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_tensor_round_trip_of_each_dtype(dtype):
    """Values, dtype and shape survive; the result is writable and does not share the frame's memory."""
    t = torch.randn(2, 3, 5).to(dtype)
    meta, body = tensor_to_wire(t)
    assert meta == {"dtype": str(dtype).removeprefix("torch."), "shape": [2, 3, 5]}
    raw = bytes(body)
    back = tensor_from_wire(msgpack.unpackb(msgpack.packb(meta)), raw)
    assert back.dtype == dtype and back.shape == t.shape
    assert torch.equal(back, t)
    back.add_(1)  # writable, and the bytes it came from are untouched
    assert torch.equal(tensor_from_wire(meta, raw), t)


def test_tensor_to_wire_of_a_non_contiguous_tensor():
    """A transposed view is sent in its logical (C) order."""
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()
    meta, body = tensor_to_wire(t)
    assert torch.equal(tensor_from_wire(meta, bytes(body)), t)


@pytest.mark.parametrize("name", ["int64", "object", "float64", "uint8", "", None, 3])
def test_dtypes_outside_the_allowed_set_are_refused(name):
    with pytest.raises(ProtocolError) as info:
        tensor_from_wire({"dtype": name, "shape": [1]}, b"\x00" * 8)
    assert info.value.code == "bad_dtype"


def test_tensor_to_wire_refuses_other_dtypes():
    with pytest.raises(ProtocolError) as info:
        tensor_to_wire(torch.zeros(2, dtype=torch.int64))
    assert info.value.code == "bad_dtype"


@pytest.mark.parametrize(
    ("shape", "nbytes"),
    [
        ([2, 3], 20),  # body one element short
        ([2, 3], 28),  # body one element long
        ([], 4),  # no dims
        ([0, 3], 0),  # empty dimension
        ([-1, 6], 24),
        ([2.0, 3], 24),
        ([True, 6], 24),
        ("2,3", 24),
        ([1] * 9, 4),  # too many dims
        (None, 24),
    ],
)
def test_shape_must_match_the_body(shape, nbytes):
    with pytest.raises(ProtocolError) as info:
        tensor_from_wire({"dtype": "float32", "shape": shape}, b"\x00" * nbytes)
    assert info.value.code == "bad_shape"


def test_max_elements_bounds_the_tensor():
    meta, body = tensor_to_wire(torch.zeros(4, 4))
    assert tensor_from_wire(meta, bytes(body), max_elements=16).shape == (4, 4)
    with pytest.raises(ProtocolError) as info:
        tensor_from_wire(meta, bytes(body), max_elements=15)
    assert info.value.code == "bad_shape"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_non_finite_values_are_refused(bad, dtype):
    t = torch.ones(3, 4, dtype=dtype)
    t[1, 2] = bad
    meta, body = tensor_to_wire(t)
    with pytest.raises(ProtocolError) as info:
        tensor_from_wire(meta, bytes(body))
    assert info.value.code == "non_finite"


def test_tensor_meta_must_be_a_map():
    with pytest.raises(ProtocolError):
        tensor_from_wire([1, 2], b"")


def test_header_field_returns_typed_values_and_names_bad_fields():
    header = {"type": "step", "step": 4, "flag": True, "name": "s", "maybe": None}
    assert header_field(header, "step", int) == 4
    assert header_field(header, "name", (str, bytes)) == "s"
    assert header_field(header, "absent", int, optional=True) is None
    assert header_field(header, "maybe", int, optional=True) is None
    for name, typ in [("absent", int), ("name", int), ("flag", int), ("maybe", int)]:
        with pytest.raises(ProtocolError, match=name) as info:
            header_field(header, name, typ)
        assert info.value.code == "bad_message"


def test_prefix_layout_is_big_endian():
    """The prefix is pinned: magic, then two big-endian u32 lengths."""
    data = frame_bytes({"type": "t"}, b"abc")
    magic, header_len, body_len = struct.unpack(">4sII", data[:12])
    assert (magic, body_len, header_len) == (b"MLK1", 3, len(msgpack.packb({"type": "t"})))
