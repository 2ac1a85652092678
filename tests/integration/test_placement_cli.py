"""A peer without --layers serves where the swarm is weakest; a --max-memory it does not have is refused."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.conftest import CHILD_ENV


def test_peer_without_layers_fills_the_gap(checkpoints, swarm_of):
    """With layers 0..2 served, a peer started with --num-layers 2 picks 3:5."""
    path = checkpoints("qwen3", num_layers=5)
    swarm = swarm_of(path, ["0:3"])
    auto = swarm.start_peer("", name="auto", extra=["--num-layers", "2"])
    assert " layers 3:5 " in auto.ready


def test_max_memory_beyond_the_machine_is_one_clear_error(checkpoints, bootstrap):
    import os

    path = checkpoints("qwen3", num_layers=5)
    proc = subprocess.run(
        [sys.executable, "-m", "swarm.peer", "--model", str(path), "--initial-peers", bootstrap,
         "--layers", "0:5", "--max-memory", "100000"],
        capture_output=True, text=True, timeout=120, env={**os.environ, **CHILD_ENV},
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--max-memory" in lines[0], proc.stderr
