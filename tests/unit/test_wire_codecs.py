"""Tensor codecs on the wire (swarm/net/wire.py): what each costs in bytes and in error, and what is refused."""

from __future__ import annotations

import pytest
import torch

from swarm.errors import ProtocolError
from swarm.net.wire import CODECS, tensor_from_wire, tensor_to_wire


def hidden(rows: int = 12, width: int = 64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, rows // 2, width, generator=gen)
    x[0, 0] *= 100  # rows of very different magnitudes: each has its own scale
    x[1, 1] *= 1e-3
    return x


@pytest.mark.parametrize(("codec", "share", "bound"), [
    ("raw", 1.0, 0.0),
    ("float16", 0.5, 2.0 ** -11),  # relative to each value
    ("bfloat16", 0.5, 2.0 ** -8),
])
def test_float_codecs_cut_bytes_and_keep_each_value_close(codec, share, bound):
    x = hidden()
    meta, body = tensor_to_wire(x, codec)
    assert len(body) == x.numel() * 4 * share
    assert ("codec" in meta) == (codec != "raw") and meta["dtype"] == "float32"
    back = tensor_from_wire(meta, bytes(body))
    assert back.dtype == torch.float32 and back.shape == x.shape
    floor = 6e-8 if codec == "float16" else 1e-30  # float16's subnormal step, for the smallest values
    assert bool(((back - x).abs() <= bound * x.abs() + floor).all())


def test_int8_keeps_a_bit_over_a_quarter_and_each_value_within_half_its_block_s_step():
    x = hidden()
    x[0, 2, 5] = 1000.0  # one huge channel: it costs precision in its own block of 32 only
    meta, body = tensor_to_wire(x, "int8")
    blocks = x.numel() // 32
    assert meta["codec"] == "int8" and len(body) == x.numel() + 4 * blocks
    back = tensor_from_wire(meta, bytes(body))
    step = (x.reshape(-1, 32).abs().amax(dim=-1, keepdim=True) / 127).expand(-1, 32).reshape(x.shape)
    assert bool(((back - x).abs() <= step / 2 * 1.0001).all())
    assert float((back[0, 2, 32:] - x[0, 2, 32:]).abs().max()) < 0.05  # the other block of that row is unharmed
    odd = torch.randn(1, 3, 24)  # 32 does not divide the row: one scale per row
    meta, body = tensor_to_wire(odd, "int8")
    assert len(body) == odd.numel() + 4 * 3 and tensor_from_wire(meta, bytes(body)).shape == odd.shape
    zeros = torch.zeros(1, 2, 8)
    assert torch.equal(tensor_from_wire(*tensor_to_wire(zeros, "int8")), zeros)  # an all-zero row is exact


def test_a_codec_equal_to_the_dtype_sends_it_as_it_is():
    x = hidden().to(torch.float16)
    meta, body = tensor_to_wire(x, "float16")
    assert "codec" not in meta and torch.equal(tensor_from_wire(meta, bytes(body)), x)


def test_unknown_codecs_wrong_sizes_and_bad_scales_are_refused():
    x = hidden()
    with pytest.raises(ProtocolError, match="codec"):
        tensor_to_wire(x, "zstd")
    meta, body = tensor_to_wire(x, "int8")
    with pytest.raises(ProtocolError, match="codec") as caught:
        tensor_from_wire({**meta, "codec": "zstd"}, bytes(body))
    assert caught.value.code == "bad_dtype"
    with pytest.raises(ProtocolError, match="needs"):
        tensor_from_wire(meta, bytes(body)[:-1])
    bad = bytearray(body)
    bad[0:4] = torch.tensor([float("nan")]).view(torch.uint8).numpy().tobytes()  # the first row's scale
    with pytest.raises(ProtocolError) as caught:
        tensor_from_wire(meta, bytes(bad))
    assert caught.value.code == "non_finite"
    assert set(CODECS) == {"raw", "float16", "bfloat16", "int8"}
