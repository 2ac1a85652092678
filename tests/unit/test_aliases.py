"""Model names: aliases map to repo ids, local directories load, unknown names fail fast and clearly."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from models.aliases import ALIASES, resolve_alias
from models.source import resolve_model
from swarm.errors import ModelNotFoundError
from tests.conftest_models import make_tiny_checkpoint


def test_aliases_resolve_to_repo_ids() -> None:
    """Known short names become their repo ids; every alias maps to an owner/name id."""
    assert resolve_alias("llama-3-8b") == "meta-llama/Meta-Llama-3-8B"
    assert resolve_alias("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_alias("Qwen2.5-7B") == "Qwen/Qwen2.5-7B"
    assert all(repo.count("/") == 1 for repo in ALIASES.values())


def test_non_alias_is_unchanged() -> None:
    """A repo id or path that is no alias comes back as given."""
    assert resolve_alias("someone/some-model") == "someone/some-model"
    assert resolve_alias("./my-model") == "./my-model"


@pytest.mark.parametrize("name", ["no-such-org/no-such-model-xyz", "not-a-model", "/nope/missing.gguf"])
def test_unknown_name_offline_raises_quickly(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the hub offline, an unknown name raises ModelNotFoundError at once, saying what was tried."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    began = time.monotonic()
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(name)
    assert time.monotonic() - began < 5
    message = str(info.value)
    assert name in message
    assert "not an alias" in message and "config.json" in message and ".gguf" in message
    assert "hub" in message


def test_alias_offline_names_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """An alias whose repo cannot be fetched names both the alias and the repo id."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="meta-llama/Meta-Llama-3-8B"):
        resolve_model("llama-3-8b", cache_dir=None)


def test_local_dir_loads_with_stable_key(tmp_path: Path) -> None:
    """A saved directory resolves; its key is the same on every call and for a copy elsewhere."""
    path = make_tiny_checkpoint(tmp_path / "a", "llama", num_layers=2)
    first = resolve_model(str(path))
    assert first.num_layers == 2
    assert first.repo_id is None
    assert first.model_key.startswith("llama-tiny-")
    assert resolve_model(str(path)).model_key == first.model_key

    copy = tmp_path / "elsewhere" / "deeper" / path.name
    shutil.copytree(path, copy)
    # Tool-dependent keys do not count: a checkpoint saved by another transformers version is the same model.
    raw = json.loads((copy / "config.json").read_text())
    raw["transformers_version"] = "0.0.0"
    raw["_name_or_path"] = "/somewhere/else"
    (copy / "config.json").write_text(json.dumps(raw, indent=4))
    assert resolve_model(str(copy)).model_key == first.model_key


def test_different_weights_config_gives_different_key(tmp_path: Path) -> None:
    """Checkpoints of different shape do not share a key."""
    two = resolve_model(str(make_tiny_checkpoint(tmp_path / "a", "llama", num_layers=2)))
    three = resolve_model(str(make_tiny_checkpoint(tmp_path / "b", "llama", num_layers=3)))
    assert two.model_key != three.model_key
