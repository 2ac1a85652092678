"""A checkpoint's own Python code is never run: configs are read with trust_remote_code=False."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.source import load_config
from swarm.errors import UnsupportedModelError

EVIL = """import pathlib
pathlib.Path(__file__).with_name("RAN").write_text("the checkpoint's code ran")
from transformers import PretrainedConfig
class EvilConfig(PretrainedConfig):
    model_type = "evil"
"""


def _checkpoint(root: Path, model_type: str) -> Path:
    root.mkdir()
    (root / "evil.py").write_text(EVIL)
    config = {"model_type": model_type, "auto_map": {"AutoConfig": "evil.EvilConfig"}, "hidden_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100}
    (root / "config.json").write_text(json.dumps(config))
    return root


def test_a_known_model_type_is_read_with_transformers_own_class(tmp_path):
    folder = _checkpoint(tmp_path / "llama", "llama")
    config = load_config(folder)
    assert type(config).__name__ == "LlamaConfig"
    assert not (folder / "RAN").exists()


def test_a_model_type_only_the_checkpoints_code_defines_is_refused(tmp_path):
    folder = _checkpoint(tmp_path / "evil", "evil")
    with pytest.raises(UnsupportedModelError, match="never runs code"):
        load_config(folder)
    assert not (folder / "RAN").exists()
