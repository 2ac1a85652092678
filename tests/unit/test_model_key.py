"""The model key comes from the checkpoint's content: same weights -> same key under any name or route,
different weights -> different keys even with the same config (models/fingerprint.py)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants
import pytest
from huggingface_hub.errors import EntryNotFoundError
from safetensors import safe_open

import models.source as source_module
from models.fingerprint import BLOCK_SIZE, BLOCKS, anchor_shard, data_length, parse_header, sample_ranges
from models.source import read_hub_ranges, resolve_model
from swarm.errors import ConfigError, ModelNotFoundError
from tests.conftest_models import make_tiny_checkpoint, shard_files

KEY = re.compile(r"^llama-[0-9a-f]{16}$")
REPO = "someone/tiny-llama"


def key_of(path: Path) -> str:
    return resolve_model(str(path)).model_key


def copy_as(path: Path, target: Path) -> Path:
    shutil.copytree(path, target)
    return target


def anchor_layout(path: Path) -> tuple[Path, int, dict]:
    """(anchor shard file, offset of its data section, its parsed header)."""
    index = path / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"] if index.exists() else None
    anchor = path / anchor_shard(weight_map)
    raw = anchor.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return anchor, 8 + length, parse_header(raw[8 : 8 + length], anchor.name)


def overwrite(file: Path, offset: int, data: bytes) -> None:
    with open(file, "r+b") as f:
        f.seek(offset)
        f.write(data)


def edit_config(path: Path, **changes: object) -> None:
    raw = json.loads((path / "config.json").read_text())
    raw.update(changes)
    (path / "config.json").write_text(json.dumps(raw, indent=4))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("key"), "llama")


@pytest.fixture(scope="module")
def tiny_sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("key-sharded"), "llama", shards=3)


def test_copy_under_another_folder_name_has_the_same_key(tiny: Path, tmp_path: Path) -> None:
    """The same checkpoint copied under another folder name gets the same key; only the display name differs."""
    copy = copy_as(tiny, tmp_path / "renamed-model")
    original, renamed = resolve_model(str(tiny)), resolve_model(str(copy))
    assert KEY.match(original.model_key), original.model_key
    assert renamed.model_key == original.model_key
    assert (original.display_name, renamed.display_name) == ("llama-tiny", "renamed-model")


def test_sharded_checkpoint_copy_has_the_same_key(tiny_sharded: Path, tmp_path: Path) -> None:
    """A sharded save (index + several shards) gets the same key as its copy under another name."""
    assert len(shard_files(tiny_sharded)) >= 3
    copy = copy_as(tiny_sharded, tmp_path / "other-name")
    assert KEY.match(key_of(tiny_sharded))
    assert key_of(copy) == key_of(tiny_sharded)


def test_same_config_different_random_weights_differ(tmp_path: Path) -> None:
    """Two random checkpoints with the same config.json (as tests and fine-tunes have) get different keys."""
    one = make_tiny_checkpoint(tmp_path / "one", "llama", seed=0)
    two = make_tiny_checkpoint(tmp_path / "two", "llama", seed=1)
    assert (one / "config.json").read_text() == (two / "config.json").read_text()
    assert key_of(one) != key_of(two)
    sharded_one = make_tiny_checkpoint(tmp_path / "s1", "llama", seed=0, shards=3)
    sharded_two = make_tiny_checkpoint(tmp_path / "s2", "llama", seed=1, shards=3)
    assert key_of(sharded_one) != key_of(sharded_two)


@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
def test_one_changed_weight_in_a_sampled_block_changes_the_key(
    sharded: bool, tiny: Path, tiny_sharded: Path, tmp_path: Path
) -> None:
    """Changing one float32 weight inside a sampled block of the anchor shard gives another key."""
    path = copy_as(tiny_sharded if sharded else tiny, tmp_path / "edited")
    before = key_of(path)
    anchor, base, header = anchor_layout(path)
    start, _ = sample_ranges(data_length(header))[BLOCKS // 2]
    name = next(n for n, e in header.items() if e["data_offsets"][0] <= start + 64 < e["data_offsets"][1])
    offset = start + 64 - (start + 64 - header[name]["data_offsets"][0]) % 4  # a float32 boundary in that tensor
    with safe_open(str(anchor), framework="pt") as f:
        old = f.get_tensor(name).clone()
    overwrite(anchor, base + offset, struct.pack("<f", 123.25))
    with safe_open(str(anchor), framework="pt") as f:
        assert int((f.get_tensor(name) != old).sum()) == 1  # exactly one weight changed
    assert key_of(path) != before


def test_bytes_outside_the_sampled_blocks_are_not_read(tiny: Path, tmp_path: Path) -> None:
    """The key reads the header and 16 blocks of 4 KiB, not the whole file: a byte between blocks is not seen
    (the cost is the same for any model size; a change confined to unsampled bytes keeps the key)."""
    path = copy_as(tiny, tmp_path / "edited")
    before = key_of(path)
    anchor, base, header = anchor_layout(path)
    ranges = sample_ranges(data_length(header))
    assert len(ranges) == BLOCKS and data_length(header) > BLOCKS * BLOCK_SIZE
    gap = ranges[0][1] + (ranges[1][0] - ranges[0][1]) // 2
    assert ranges[0][1] < gap < ranges[1][0]
    overwrite(anchor, base + gap - gap % 4, struct.pack("<f", 123.25))
    assert key_of(path) == before


def test_changed_config_value_changes_the_key(tiny: Path, tmp_path: Path) -> None:
    """A config value that changes the model (here rms_norm_eps) changes the key, with the same weights."""
    path = copy_as(tiny, tmp_path / "edited")
    edit_config(path, rms_norm_eps=1e-3)
    assert key_of(path) != key_of(tiny)


def test_tool_dependent_config_keys_do_not_count(tiny: Path, tmp_path: Path) -> None:
    """transformers_version, _name_or_path, dtype and the JSON layout depend on the saving tool: same key."""
    path = copy_as(tiny, tmp_path / "edited")
    edit_config(path, transformers_version="0.0.1", _name_or_path="/elsewhere", dtype="bfloat16")
    assert key_of(path) == key_of(tiny)


def test_key_does_not_depend_on_the_folder_path(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deep, shallow and relative paths to the same content give one key, which names no folder."""
    deep = copy_as(tiny, tmp_path / "a" / "b" / "c" / "deep-folder")
    shallow = copy_as(tiny, tmp_path / "shallow-folder")
    monkeypatch.chdir(tmp_path / "a")
    keys = {key_of(tiny), key_of(deep), key_of(shallow), key_of(Path("b/c/deep-folder"))}
    assert len(keys) == 1
    (key,) = keys
    assert KEY.match(key) and "folder" not in key and "tiny" not in key


class FakeHub:
    """A hub repo served from a local folder: hf_hub_download copies a file into a snapshot folder (files
    the folder lacks are EntryNotFoundError), read_hub_ranges reads the folder's bytes; both are recorded."""

    def __init__(self, folder: Path, snapshot: Path) -> None:
        self.folder, self.snapshot = folder, snapshot
        self.downloaded: list[str] = []
        self.read: list[tuple[str, int, int]] = []
        snapshot.mkdir(parents=True)

    def download(self, repo_id: str, filename: str, **kwargs: object) -> str:
        assert repo_id == REPO
        self.downloaded.append(filename)
        if not (self.folder / filename).is_file():
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        shutil.copy(self.folder / filename, self.snapshot / filename)
        return str(self.snapshot / filename)

    def ranges(self, repo_id: str, filename: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        assert repo_id == REPO
        data = (self.folder / filename).read_bytes()
        self.read.extend((filename, start, end) for start, end in ranges)
        return [data[start:end] for start, end in ranges]

    def install(self, monkeypatch: pytest.MonkeyPatch, cached: bool = False) -> None:
        monkeypatch.setattr(source_module, "hf_hub_download", self.download)
        monkeypatch.setattr(source_module, "read_hub_ranges", self.ranges)
        folder = self.folder

        def cache(repo_id: str, filename: str, **kwargs: object) -> str | None:
            assert repo_id == REPO
            return str(folder / filename) if cached and (folder / filename).is_file() else None

        monkeypatch.setattr(source_module, "try_to_load_from_cache", cache)


@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
def test_hub_repo_has_the_same_key_as_its_folder(
    sharded: bool, tiny: Path, tiny_sharded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub repo id gets the key of the same files in a folder, reading the anchor shard through HTTP ranges
    (a header and at most 64 KiB of data) without downloading any shard."""
    folder = tiny_sharded if sharded else tiny
    hub = FakeHub(folder, tmp_path / "snapshot")
    hub.install(monkeypatch)
    ckpt = resolve_model(REPO, offline=False)
    assert ckpt.model_key == key_of(folder)
    assert (ckpt.repo_id, ckpt.display_name) == (REPO, REPO)
    assert not [f for f in hub.downloaded if f.endswith(".safetensors")]
    assert {f for f, _, _ in hub.read} == {shard_files(folder)[0]}
    _, base, _ = anchor_layout(folder)
    assert sum(end - start for _, start, end in hub.read) <= base + BLOCKS * BLOCK_SIZE


def test_hub_repo_with_cached_anchor_works_offline(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, a hub repo whose files are in the local hub cache gets its key from the cached anchor shard."""
    hub = FakeHub(tiny, tmp_path / "snapshot")
    hub.install(monkeypatch, cached=True)
    ckpt = resolve_model(REPO, offline=True)
    assert ckpt.model_key == key_of(tiny)
    assert hub.read == []


def test_offline_hub_without_cached_anchor_says_what_to_do(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline with config.json cached but not the anchor shard: ModelNotFoundError with the advice."""
    hub = FakeHub(tiny, tmp_path / "snapshot")
    hub.install(monkeypatch, cached=False)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(REPO, offline=True)
    message = str(info.value)
    assert REPO in message and "model.safetensors" in message and "cached" in message
    assert "use a local folder or a .gguf file" in message
    assert hub.read == []


class _FileServer(ThreadingHTTPServer):
    """Serves one folder over HTTP on 127.0.0.1, with Range support unless ``honour_range`` is False."""

    def __init__(self, folder: Path) -> None:
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.folder, self.honour_range = folder, True
        self.ranges_seen: list[str] = []


class _RangeHandler(BaseHTTPRequestHandler):
    server: _FileServer

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        file = self.server.folder / self.path.lstrip("/")
        if not file.is_file():
            self.send_error(404)
            return
        data, wanted = file.read_bytes(), self.headers.get("Range")
        if wanted and self.server.honour_range:
            self.server.ranges_seen.append(wanted)
            first, last = (int(x) for x in wanted.removeprefix("bytes=").split("-"))
            if first >= len(data):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[first : last + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{first + len(body) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_FileServer]:
    """``tiny`` served over HTTP; read_hub_ranges's hub URLs point at it (the session is the hub's own)."""
    server = _FileServer(tiny)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(source_module, "hf_hub_url", lambda repo_id, filename, **kw: f"http://127.0.0.1:{port}/{filename}")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_read_hub_ranges_sends_range_requests(file_server: _FileServer, tiny: Path) -> None:
    """read_hub_ranges gets each [start, end) with one Range request; past the end comes back short or empty."""
    data = (tiny / "model.safetensors").read_bytes()
    size = len(data)
    got = read_hub_ranges(REPO, "model.safetensors", [(0, 8), (100, 4196), (size - 10, size + 50), (size + 5, size + 9)])
    assert got == [data[:8], data[100:4196], data[size - 10 :], b""]
    assert sorted(file_server.ranges_seen) == sorted(
        ["bytes=0-7", "bytes=100-4195", f"bytes={size - 10}-{size + 49}", f"bytes={size + 5}-{size + 8}"]
    )


def test_read_hub_ranges_copes_with_a_server_ignoring_range(file_server: _FileServer, tiny: Path) -> None:
    """A server that answers 200 with the whole file still gives the right bytes (read only up to the range)."""
    file_server.honour_range = False
    data = (tiny / "model.safetensors").read_bytes()
    assert read_hub_ranges(REPO, "model.safetensors", [(8, 40), (5000, 9096)]) == [data[8:40], data[5000:9096]]


def test_hub_key_over_http_equals_the_folder_key(
    file_server: _FileServer, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through real HTTP range requests (a local server standing in for the hub), a repo id gets its folder's key."""
    hub = FakeHub(tiny, tmp_path / "snapshot")
    monkeypatch.setattr(source_module, "hf_hub_download", hub.download)
    monkeypatch.setattr(source_module, "try_to_load_from_cache", lambda *args, **kwargs: None)
    assert resolve_model(REPO, offline=False).model_key == key_of(tiny)
    assert len(file_server.ranges_seen) == 2 + BLOCKS  # length prefix, header, 16 blocks


def test_hub_unreachable_for_ranges_says_so(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the range requests cannot connect, resolve_model raises ModelNotFoundError saying the hub cannot be
    reached (not a raw transport exception)."""
    with ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler) as closed:
        port = closed.server_address[1]  # closed on leaving: nothing listens there
    hub = FakeHub(tiny, tmp_path / "snapshot")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(source_module, "hf_hub_url", lambda repo_id, filename, **kw: f"http://127.0.0.1:{port}/{filename}")
    monkeypatch.setattr(source_module, "hf_hub_download", hub.download)
    monkeypatch.setattr(source_module, "try_to_load_from_cache", lambda *args, **kwargs: None)
    with pytest.raises(ModelNotFoundError, match="the hub cannot be reached from here"):
        resolve_model(REPO, offline=False)


def _bad_length(raw: bytes) -> bytes:
    return struct.pack("<Q", len(raw) * 2) + raw[8:]


def _not_json(raw: bytes) -> bytes:
    (length,) = struct.unpack("<Q", raw[:8])
    return raw[:8] + b"\xff" * length + raw[8 + length :]


def _too_large(raw: bytes) -> bytes:
    return struct.pack("<Q", 200 * 1024 * 1024) + raw[8:]


def _too_short(raw: bytes) -> bytes:
    return raw[:5]


def _bad_entry(raw: bytes) -> bytes:
    body = json.dumps({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}).encode()
    return struct.pack("<Q", len(body)) + body + b"\0" * 4


@pytest.mark.parametrize("corrupt", [_bad_length, _not_json, _too_large, _too_short, _bad_entry])
def test_corrupt_safetensors_header_is_a_config_error(corrupt, tiny: Path, tmp_path: Path) -> None:
    """A malformed header (bad length, not JSON, over 100 MB, no header, bad entry) is a ConfigError naming
    the file, never a crash."""
    path = copy_as(tiny, tmp_path / "corrupt")
    file = path / "model.safetensors"
    file.write_bytes(corrupt(file.read_bytes()))
    with pytest.raises(ConfigError, match="model.safetensors"):
        resolve_model(str(path))


def test_folder_without_safetensors_is_model_not_found(tiny: Path, tmp_path: Path) -> None:
    """A folder with config.json but no safetensors weights is refused with the file it lacks."""
    path = copy_as(tiny, tmp_path / "no-weights")
    (path / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="no model.safetensors"):
        resolve_model(str(path))


def test_sample_ranges_cover_small_data_and_spread_over_large() -> None:
    """Small data is read whole (in blocks); large data in 16 blocks from its first to its last byte."""
    assert sample_ranges(0) == []
    assert sample_ranges(10) == [(0, 10)]
    assert sample_ranges(BLOCK_SIZE + 1) == [(0, BLOCK_SIZE), (BLOCK_SIZE, BLOCK_SIZE + 1)]
    big = sample_ranges(10**9)
    assert len(big) == BLOCKS and big[0] == (0, BLOCK_SIZE) and big[-1] == (10**9 - BLOCK_SIZE, 10**9)
    assert all(end - start == BLOCK_SIZE for start, end in big)
    assert all(a[1] <= b[0] for a, b in zip(big, big[1:], strict=False))
