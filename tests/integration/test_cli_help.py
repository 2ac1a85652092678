"""Every CLI explains itself: --help exits 0 and names its flags; --list-models prints the alias table;
`molink COMMAND` runs `python -m swarm.COMMAND`; bad flags are one `error:` line and exit code 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import swarm


@pytest.mark.parametrize(
    ("module", "flags"),
    [("swarm.peer", ["--model", "--initial-peers", "--layers", "--num-layers", "--dtype", "--announce-addr",
                     "--max-memory", "--device", "--listen", "--no-hole-punching", "--metrics-port", "--log-json",
                     "--rebalance-every"]),
     ("swarm.bootstrap", ["--listen", "--identity", "--addr-file", "--initial-peers", "--relay",
                          "--relay-max-circuits", "--relay-max-per-peer", "--relay-rate-mbit", "--relay-max-duration",
                          "--log-json"]),
     ("swarm.status", ["--initial-peers", "--model", "--json"]),
     ("swarm.monitor", ["--initial-peers", "--listen", "--refresh", "--log-json"]),
     ("swarm.demo", ["--prompt", "--max-new-tokens", "--api"]),
     ("swarm.api", ["--model", "--initial-peers", "--listen", "--served-name", "--route-wait-s", "--log-json"]),
     ("swarm.linkem", ["--listen", "--target", "--delay-ms", "--rate-mbit", "--jitter-ms", "--return-delay-ms"])],
)
def test_help(module, flags):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for flag in flags:
        assert flag in proc.stdout


def test_list_models():
    proc = subprocess.run([sys.executable, "-m", "swarm.peer", "--list-models"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "llama-3-8b" in proc.stdout and "smollm2-135m" in proc.stdout


MOLINK = Path(sys.executable).with_name("molink")  # the console script pip installs next to the venv's python


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120)


def test_molink_help_lists_the_subcommands():
    assert MOLINK.exists(), "reinstall the package (bash run.sh test) so pyproject's [project.scripts] runs"
    proc = run_cli(str(MOLINK), "--help")
    assert proc.returncode == 0, proc.stderr
    for name in ("peer", "bootstrap", "status", "demo", "api"):
        assert re.search(rf"^  {name} +\S", proc.stdout, re.MULTILINE), proc.stdout
    version = run_cli(str(MOLINK), "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"molink {swarm.__version__}"


def test_molink_subcommand_runs_the_module():
    """`molink status --help` prints what `python -m swarm.status --help` prints; so does `python -m swarm`."""
    want = run_cli(sys.executable, "-m", "swarm.status", "--help")
    for argv in ([str(MOLINK)], [sys.executable, "-m", "swarm"]):
        got = run_cli(*argv, "status", "--help")
        assert (got.returncode, got.stdout, got.stderr) == (0, want.stdout, want.stderr)


@pytest.mark.parametrize("argv", [["frob"], [], ["--peers", "3"]], ids=["unknown", "none", "option-first"])
def test_molink_without_a_known_subcommand_exits_2(argv):
    proc = run_cli(str(MOLINK), *argv)
    assert proc.returncode == 2 and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("molink: error: "), proc.stderr
    assert "choose from peer, bootstrap, status, demo" in errors[0]


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--peers", "0"], "argument --peers: must be at least 1"),
     (["--max-new-tokens", "-1"], "argument --max-new-tokens: must be at least 1"),
     (["--prompt", ""], "argument --prompt: must not be empty")],
)
def test_demo_refuses_bad_flags_with_exit_2(flags, message):
    """One `error:` line and exit code 2, no traceback (through `molink demo`, the same main as swarm.demo)."""
    proc = run_cli(str(MOLINK), "demo", *flags)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--relay-max-circuits", "0"], "--relay-max-circuits must be positive"),
     (["--relay-max-duration", "-5"], "--relay-max-duration must be positive"),
     (["--relay-rate-mbit", "-1"], "--relay-rate-mbit must be 0 (no cap) or positive")],
)
def test_bootstrap_refuses_bad_relay_limits(flags, message):
    """Checked before the DHT daemon starts: one error line and exit code 1, no traceback."""
    proc = run_cli(sys.executable, "-m", "swarm.bootstrap", "--relay", *flags)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_peer_refuses_a_model_type_it_cannot_serve_with_the_reason(tmp_path: Path) -> None:
    """A real checkpoint of a refused family: the peer exits 2 naming the type and why, before joining a swarm."""
    import transformers
    from transformers import AutoModelForCausalLM

    config = transformers.RecurrentGemmaConfig(
        hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128, num_hidden_layers=3,
        vocab_size=160, lru_width=64, head_dim=16,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "recurrent-gemma")
    proc = subprocess.run([sys.executable, "-m", "swarm.peer", "--model", str(tmp_path / "recurrent-gemma")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "model type 'recurrent_gemma' cannot be served: its recurrent blocks keep their state" in proc.stderr
