"""swarm.demo refuses bad flags with one argparse `error:` line and exit code 2, before any process starts:
bounds that need no model at parse time, the layer bound of --peers right after the checkpoint resolves."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import swarm.demo as demo


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--peers", "0"], "argument --peers: must be at least 1, not 0"),
        (["--peers", "two"], "argument --peers: must be a whole number of at least 1, not 'two'"),
        (["--max-new-tokens", "0"], "argument --max-new-tokens: must be at least 1, not 0"),
        (["--max-new-tokens", "-5"], "argument --max-new-tokens: must be at least 1, not -5"),
        (["--prompt", ""], "argument --prompt: must not be empty"),
        (["--prompt", "   "], "argument --prompt: must not be empty"),
    ],
)
def test_bad_flags_are_argparse_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        demo.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"python -m swarm.demo: error: {message}"), err
    assert "Traceback" not in err


def test_more_peers_than_layers_is_refused_before_any_process(monkeypatch, capsys) -> None:
    """--peers 31 on the 30-layer model: the bound and its reason, before LocalSwarm (or the tokenizer) runs."""

    def never(*args, **kwargs):
        raise AssertionError("the demo went past the --peers check")

    fake_gguf = lambda *a, **k: Path("/nowhere/fake.gguf")  # noqa: E731
    fake_resolve = lambda *a, **k: SimpleNamespace(path=Path("/nowhere/ckpt"), num_layers=30)  # noqa: E731
    monkeypatch.setattr("models.embedded.embedded_gguf", fake_gguf)
    monkeypatch.setattr(demo, "embedded_gguf", fake_gguf, raising=False)  # wherever demo imports it from
    monkeypatch.setattr("models.source.resolve_model", fake_resolve)
    monkeypatch.setattr(demo, "resolve_model", fake_resolve, raising=False)
    monkeypatch.setattr("swarm.logging_setup.setup_logging", lambda *a, **k: None)
    monkeypatch.setattr("swarm.launch.LocalSwarm", never)
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", never)
    with pytest.raises(SystemExit) as exc:
        demo.main(["--peers", "31"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "python -m swarm.demo: error: --peers must be between 1 and 30: the model has 30 layers" in err
    assert "Traceback" not in err
