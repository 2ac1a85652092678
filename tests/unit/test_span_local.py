"""Spans in one process: embed -> consecutive spans -> head equals the unsplit model, loading only the span.

Exactness is the first test of every architecture (DESIGN.md section 6): greedy ids equal local
generate() token for token and prompt logits agree to float32 rounding.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import models.checkpoint as checkpoint_module
import models.source as source_module
from models.adapters import get_adapter
from models.source import resolve_model
from models.span import ClientHead, SpanModel
from swarm.errors import SessionError, SpanError, UnsupportedModelError
from tests.conftest_models import ARCHS, make_tiny_checkpoint, shard_files, split_generate, spy_safe_open

PROMPT_LEN = 12
NEW_TOKENS = 20


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {arch: make_tiny_checkpoint(root, arch) for arch in ARCHS}


class _References(dict):
    """arch -> (local generate()'s ids, prompt logits), each computed on first use and kept."""

    def __init__(self, dirs: dict[str, Path]) -> None:
        super().__init__()
        self.dirs = dirs

    def __missing__(self, arch: str) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.dirs[arch]
        self[arch] = _reference(path, _prompt(resolve_model(str(path)).config.vocab_size))
        return self[arch]


@pytest.fixture(scope="module")
def reference(tiny_dir: dict[str, Path]) -> _References:
    return _References(tiny_dir)


def _prompt(vocab_size: int, batch: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(3, vocab_size, (batch, PROMPT_LEN), generator=generator)  # ids: [B, T]




def _reference(path: Path, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        want = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        logits = model(ids).logits
    return want, logits


@pytest.mark.parametrize("bounds", [[0, 1, 4], [0, 2, 3, 4]], ids=["2-spans", "3-spans"])
@pytest.mark.parametrize("arch", ARCHS)
def test_split_equals_local_generate(
    arch: str, bounds: list[int], tiny_dir: dict[str, Path], reference: _References
) -> None:
    """Uneven splits give generate()'s greedy ids and its prompt logits within 1e-4."""
    ckpt = resolve_model(str(tiny_dir[arch]))
    ids = _prompt(ckpt.config.vocab_size)
    want, want_logits = reference[arch]
    got, got_logits = split_generate(ckpt, bounds, ids, want.shape[1] - ids.shape[1])
    assert want.shape[1] > PROMPT_LEN + 1
    assert torch.equal(got, want)
    assert got_logits.dtype == torch.float32
    torch.testing.assert_close(got_logits, want_logits, atol=1e-4, rtol=0)


def test_batch_of_two_matches_each_alone(tiny_dir: dict[str, Path]) -> None:
    """Rows of a batch do not affect each other: [2, T, H] through a span equals each row alone."""
    ckpt = resolve_model(str(tiny_dir["qwen3"]))
    head, span = ClientHead.load(ckpt), SpanModel.load(ckpt, 1, 3, progress=False)
    hidden = head.embed(_prompt(ckpt.config.vocab_size, batch=2))  # [2, T, H]
    both = span.forward(hidden, span.new_cache())
    for row in range(2):
        alone = span.forward(hidden[row : row + 1], span.new_cache())
        torch.testing.assert_close(both[row : row + 1], alone, atol=1e-5, rtol=0)


def test_sharded_checkpoint_split_is_exact(tmp_path: Path) -> None:
    """A checkpoint saved in several shards (index file) loads and decodes like the unsplit model."""
    path = make_tiny_checkpoint(tmp_path, "qwen2", shards=3)
    assert len(shard_files(path)) >= 3
    ckpt = resolve_model(str(path))
    ids = _prompt(ckpt.config.vocab_size)
    want, want_logits = _reference(path, ids)
    got, got_logits = split_generate(ckpt, [0, 3, 4], ids, want.shape[1] - ids.shape[1])
    assert torch.equal(got, want)
    torch.testing.assert_close(got_logits, want_logits, atol=1e-4, rtol=0)


def _files_holding(path: Path, prefixes: tuple[str, ...]) -> set[str]:
    import json

    weight_map = json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]
    return {file for key, file in weight_map.items() if key.startswith(prefixes)}


def test_span_opens_only_its_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading layers [2, 4) opens exactly the shards that hold layers 2 and 3, not the others."""
    path = make_tiny_checkpoint(tmp_path, "llama", shards=4)
    ckpt = resolve_model(str(path))
    opened = spy_safe_open(monkeypatch)
    span = SpanModel.load(ckpt, 2, 4, progress=False)
    expected = _files_holding(path, ("model.layers.2.", "model.layers.3."))
    assert set(opened) == expected
    assert expected < set(shard_files(path))
    assert (span.start, span.end, span.hidden_size, span.model_key) == (2, 4, 64, ckpt.model_key)


def test_hub_checkpoint_downloads_only_needed_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From the hub, resolve fetches config + index only (and keys it like the same folder), and a span fetches
    only its own shards."""
    source = make_tiny_checkpoint(tmp_path / "src", "llama", shards=4)
    snapshot = tmp_path / "hub" / "snapshot"
    snapshot.mkdir(parents=True)
    fetched: list[str] = []

    def fake_download(repo_id: str, filename: str, **kwargs: object) -> str:
        assert repo_id == "someone/tiny-llama"
        fetched.append(filename)
        (snapshot / filename).write_bytes((source / filename).read_bytes())
        return str(snapshot / filename)

    def fake_ranges(repo_id: str, filename: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        data = (source / filename).read_bytes()  # the model key reads a few bytes of the first shard
        return [data[start:end] for start, end in ranges]

    monkeypatch.setattr(source_module, "hf_hub_download", fake_download)
    monkeypatch.setattr(source_module, "read_hub_ranges", fake_ranges)
    monkeypatch.setattr(source_module, "try_to_load_from_cache", lambda *args, **kwargs: None)
    monkeypatch.setattr(checkpoint_module, "hf_hub_download", fake_download)
    ckpt = resolve_model("someone/tiny-llama", offline=False)
    assert (ckpt.repo_id, ckpt.model_key) == ("someone/tiny-llama", resolve_model(str(source)).model_key)
    assert fetched == ["config.json", "model.safetensors.index.json"]
    SpanModel.load(ckpt, 2, 4, progress=False)
    assert set(fetched[2:]) == _files_holding(source, ("model.layers.2.", "model.layers.3."))


def test_span_weights_follow_the_span(tiny_dir: dict[str, Path]) -> None:
    """A span holds its layers only: two layers weigh twice one, and no embedding or head is loaded."""
    ckpt = resolve_model(str(tiny_dir["llama"]))
    one, two = SpanModel.load(ckpt, 0, 1, progress=False), SpanModel.load(ckpt, 1, 3, progress=False)
    rotary = sum(b.numel() * b.element_size() for b in one.base.rotary_emb.buffers())
    assert two.weight_bytes() - rotary == 2 * (one.weight_bytes() - rotary)
    assert one.weight_bytes() - rotary == 4 * sum(p.numel() for p in one.base.layers.parameters())
    assert one.base.embed_tokens is None
    assert isinstance(one.base.norm, torch.nn.Identity)


def test_half_precision_span(tiny_dir: dict[str, Path]) -> None:
    """dtype=bfloat16 casts the weights, keeps rotary frequencies in float32, and returns bfloat16."""
    ckpt = resolve_model(str(tiny_dir["mistral"]))
    span = SpanModel.load(ckpt, 0, 2, dtype=torch.bfloat16, progress=False)
    assert {p.dtype for p in span.base.parameters()} == {torch.bfloat16}
    assert span.base.rotary_emb.inv_freq.dtype == torch.float32
    head = ClientHead.load(ckpt, dtype=torch.bfloat16)
    hidden = span.forward(head.embed(_prompt(ckpt.config.vocab_size)), span.new_cache())
    assert hidden.dtype == torch.bfloat16 and hidden.shape == (1, PROMPT_LEN, 64)
    assert head.logits(hidden).dtype == torch.float32


def test_tied_head_shares_the_embedding(tiny_dir: dict[str, Path]) -> None:
    """qwen2 (tie_word_embeddings) reuses the embedding as LM head; llama reads its own head."""
    tied = ClientHead.load(resolve_model(str(tiny_dir["qwen2"])))
    assert tied.lm_head.weight is tied.base.embed_tokens.weight
    untied = ClientHead.load(resolve_model(str(tiny_dir["llama"])))
    assert untied.lm_head.weight is not untied.base.embed_tokens.weight
    assert (untied.hidden_size, untied.vocab_size) == (64, 128)


def test_bad_span_raises(tiny_dir: dict[str, Path]) -> None:
    """A span outside the model's layers is refused before anything is read."""
    ckpt = resolve_model(str(tiny_dir["llama"]))
    with pytest.raises(SpanError):
        SpanModel.load(ckpt, 2, 5, progress=False)


def test_unsupported_architecture_names_supported_ones() -> None:
    """An architecture without an adapter raises UnsupportedModelError naming it and the supported ones."""
    with pytest.raises(UnsupportedModelError, match=r"'no_such_family'.*llama.*qwen3"):
        get_adapter(type("Config", (), {"model_type": "no_such_family"})())


def test_learned_positions_have_a_hard_limit(tmp_path: Path) -> None:
    """GPT-2 style models cannot embed past their position table: a clear SessionError, not an IndexError."""
    from tests.conftest_models import make_zoo_checkpoint

    head = ClientHead.load(resolve_model(str(make_zoo_checkpoint(tmp_path, "gpt2"))))  # n_positions=256
    assert head.embed(torch.ones(1, 6, dtype=torch.long), 250).shape == (1, 6, 64)
    with pytest.raises(SessionError, match="past this model's 256 learned positions"):
        head.embed(torch.ones(1, 7, dtype=torch.long), 250)
