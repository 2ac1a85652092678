"""Bad input gets one clear error and the peer keeps serving: CLI mistakes, layer gaps, garbage on the wire."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys

import msgpack
import pytest
import torch

from routing.config import ClientConfig
from swarm import AutoDistributedModelForCausalLM
from swarm.errors import MissingLayersError
from swarm.net.transport import open_channel
from swarm.net.wire import MAGIC, PREFIX, Limits, read_frame, tensor_to_wire
from tests.integration.conftest import CHILD_ENV

PEER = [sys.executable, "-m", "swarm.peer"]


def run_cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env={**os.environ, **CHILD_ENV})


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_unknown_model_name_is_one_clear_error(bootstrap):
    """A model name that is nothing loadable: exit 2 and one 'error:' line that names it."""
    proc = run_cli([*PEER, "--model", "no-such-model-xyz", "--initial-peers", bootstrap])
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "no-such-model-xyz" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_layers_outside_the_model_are_refused(checkpoints, bootstrap):
    """--layers past the model's last layer: exit 2 naming the valid range."""
    path = checkpoints("llama", num_layers=5)
    proc = run_cli([*PEER, "--model", str(path), "--initial-peers", bootstrap, "--layers", "3:9"])
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "3:9" in lines[0] and "5 layers" in lines[0], proc.stderr


def test_unreachable_bootstrap_is_one_clear_error(checkpoints):
    """An initial peer that does not answer: the peer exits non-zero with one line instead of hanging."""
    path = checkpoints("llama", num_layers=5)
    dead = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWAcipMa1WtpG6t9mfCXPNNuwMfi8tFcw4xHKmowP34DAV"
    proc = run_cli([*PEER, "--model", str(path), "--initial-peers", dead, "--layers", "0:5"])
    assert proc.returncode == 2, proc.stderr
    assert len(error_lines(proc.stderr)) == 1, proc.stderr


def test_client_with_a_layer_gap_gets_a_typed_error(checkpoints, swarm_of, bootstrap):
    """Peers serve layers 0..1 and 4; the client's error names the missing layers 2..3."""
    path = checkpoints("llama", num_layers=5)
    swarm_of(path, ["0:2", "4:5"])
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=1)
    ) as model, pytest.raises(MissingLayersError) as err:
        model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=2)
    assert err.value.missing == [(2, 4)]
    assert "2..3" in str(err.value)


async def _exchange(addr: str, raw: bytes, follow_up: dict | None = None):
    """Send raw bytes on a fresh connection; return the error frame and what a follow-up request gets."""
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        first = await asyncio.wait_for(read_frame(reader, Limits()), 10)
        second = None
        if follow_up is not None:
            header = msgpack.packb(follow_up)
            writer.write(PREFIX.pack(MAGIC, len(header), 0) + header)
            await writer.drain()
            second = await asyncio.wait_for(read_frame(reader, Limits()), 10)
        return first, second
    finally:
        writer.close()


KEY = "k" * 22  # a session capability (any 16..128 characters)


async def _request(addr: str, header: dict, body: bytes | memoryview = b"") -> dict:
    ch = await open_channel(addr)
    try:
        await ch.send(header, body)
        frame = await asyncio.wait_for(ch.recv(), 10)
        assert frame is not None
        return frame.header
    finally:
        await ch.close()


def test_garbage_and_malformed_messages_get_errors_and_the_peer_keeps_serving(checkpoints, swarm_of, bootstrap):
    """Garbage bytes, an oversized frame, a bad header, an unknown session, a wrong shape, NaNs and an
    unknown message type each get one error frame; afterwards the peer still answers a real generation."""
    path = checkpoints("llama", num_layers=5)
    swarm = swarm_of(path, ["0:5"])
    peer_addr = swarm.peers[0].data_addr

    async def scenario() -> None:
        first, _ = await _exchange(peer_addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert first is not None and first.header["code"] == "bad_magic"
        big = PREFIX.pack(MAGIC, 16, 2**31)
        first, _ = await _exchange(peer_addr, big)
        assert first is not None and first.header["code"] == "frame_too_large"
        bad_header = b"\xc1\xc1\xc1"
        first, second = await _exchange(
            peer_addr, PREFIX.pack(MAGIC, len(bad_header), 0) + bad_header, follow_up={"type": "ping", "id": 1}
        )
        assert first is not None and first.header["code"] == "bad_header"
        assert second is not None and second.header["type"] == "pong"  # same connection still usable

        meta, body = tensor_to_wire(torch.zeros(1, 1, 64))
        h = await _request(peer_addr, {"type": "step", "session": "nope", "secret": KEY, "layer": 0, "step": 0, "position": 0,
                                       "tensor": meta}, body)
        assert h["code"] == "unknown_session"
        h = await _request(peer_addr, {"type": "launch_missiles", "id": 3})
        assert h["code"] == "unknown_type"

        ch = await open_channel(peer_addr)
        try:
            await ch.send({"type": "open", "id": 1, "session": "s1", "secret": KEY, "start": 0, "end": 5,
                           "max_length": 8, "batch": 1, "next": None})
            ok = await asyncio.wait_for(ch.recv(), 10)
            assert ok is not None and ok.header["type"] == "ok"
            for tensor, code in [(torch.zeros(1, 2, 63), "bad_shape"),
                                 (torch.full((1, 2, 64), float("nan")), "non_finite"),
                                 (torch.zeros(1, 9, 64), "too_long")]:
                meta, body = tensor_to_wire(tensor)
                await ch.send({"type": "step", "session": "s1", "secret": KEY, "layer": 0, "step": 0, "position": 0,
                               "tensor": meta}, body)
                err = await asyncio.wait_for(ch.recv(), 10)
                assert err is not None and err.header["code"] == code, err.header
            # a part of the span is served (sub-span routes); layers beyond it, or an empty range, are not
            await ch.send({"type": "open", "id": 2, "session": "s2", "secret": KEY, "start": 1, "end": 5,
                           "max_length": 8, "batch": 1, "next": None})
            ok = await asyncio.wait_for(ch.recv(), 10)
            assert ok is not None and ok.header["type"] == "ok" and ok.header["id"] == 2
            for i, (start, end) in enumerate([(3, 9), (2, 2), (4, 1)]):
                await ch.send({"type": "open", "id": 20 + i, "session": f"s2{i}", "secret": KEY, "start": start,
                               "end": end, "max_length": 8, "batch": 1, "next": None})
                err = await asyncio.wait_for(ch.recv(), 10)
                assert err is not None and err.header["code"] == "bad_span" and err.header["id"] == 20 + i
            # a next hop that is no address, and a rebind to one: refused, the connection stays usable
            await ch.send({"type": "open", "id": 3, "session": "s3", "secret": KEY, "start": 0, "end": 5,
                           "max_length": 8, "batch": 1, "next": "no address at all", "next_secret": KEY,
                           "next_peer": "ab" * 20})
            err = await asyncio.wait_for(ch.recv(), 10)
            assert err is not None and err.header["code"] == "bad_message" and err.header["id"] == 3
            await ch.send({"type": "rebind", "id": 4, "session": "s1", "secret": KEY, "next": "[::1",
                           "next_secret": KEY, "next_peer": "ab" * 20, "upto_step": 0})
            err = await asyncio.wait_for(ch.recv(), 10)
            assert err is not None and err.header["code"] == "bad_message" and err.header["id"] == 4
            # loops: a session whose next hop is this peer, a step that enters at another layer than its start
            await ch.send({"type": "ping", "id": 6})
            own_id = (await asyncio.wait_for(ch.recv(), 10)).header["peer_id"]
            await ch.send({"type": "open", "id": 5, "session": "s5", "secret": KEY, "start": 0, "end": 5,
                           "max_length": 8, "batch": 1, "next": "127.0.0.1:9", "next_secret": KEY,
                           "next_peer": own_id})
            err = await asyncio.wait_for(ch.recv(), 10)
            assert err is not None and err.header["code"] == "bad_message" and err.header["id"] == 5
            meta, body = tensor_to_wire(torch.zeros(1, 1, 64))
            await ch.send({"type": "step", "session": "s1", "secret": KEY, "layer": 5, "step": 0, "position": 0,
                           "tensor": meta}, body)
            err = await asyncio.wait_for(ch.recv(), 10)
            assert err is not None and err.header["code"] == "bad_span"
            await ch.send({"type": "step", "session": "s1", "secret": KEY, "layer": 0, "step": 0, "position": 0,
                           "tensor": meta, "keep": -2}, body)  # "the last -2 positions"
            err = await asyncio.wait_for(ch.recv(), 10)
            assert err is not None and err.header["code"] == "bad_step", err.header
            # codecs this peer does not know: in an open (what to push with), in a step's tensor
            await ch.send({"type": "open", "id": 7, "session": "s7", "secret": KEY, "start": 0, "end": 5,
                           "max_length": 8, "batch": 1, "next": None, "codec": "zstd"})
            err = await asyncio.wait_for(ch.recv(), 10)
            assert err is not None and err.header["code"] == "bad_message" and err.header["id"] == 7
            await ch.send({"type": "step", "session": "s1", "secret": KEY, "layer": 0, "step": 0, "position": 0,
                           "tensor": {**meta, "codec": "zstd"}}, body)
            err = await asyncio.wait_for(ch.recv(), 10)
            assert err is not None and err.header["code"] == "bad_dtype", err.header
            await ch.send({"type": "result", "session": "s1", "step": 0, "position": 0, "tensor": meta})
            err = await asyncio.wait_for(ch.recv(), 10)  # a reply sent to a peer is not a request it takes
            assert err is not None and err.header["code"] == "unknown_type"
        finally:
            await ch.close()

    asyncio.run(scenario())
    assert all(p.popen.poll() is None for p in swarm.peers)
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=30)
    ) as model:
        out = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 7)


def test_frame_prefix_layout():
    """The prefix is magic + two big-endian u32 lengths (what the garbage tests above rely on)."""
    assert PREFIX.size == 12 and struct.unpack(">4sII", PREFIX.pack(MAGIC, 1, 2)) == (MAGIC, 1, 2)
