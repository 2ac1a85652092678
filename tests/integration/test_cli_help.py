"""Every CLI explains itself: --help exits 0 and names its flags; --list-models prints the alias table."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "flags"),
    [("swarm.peer", ["--model", "--initial-peers", "--layers", "--num-layers", "--dtype", "--announce-addr",
                     "--max-memory", "--device", "--listen"]),
     ("swarm.bootstrap", ["--listen", "--identity", "--addr-file"]),
     ("swarm.status", ["--initial-peers", "--model", "--json"]),
     ("swarm.demo", ["--prompt", "--max-new-tokens"])],
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
