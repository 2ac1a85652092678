"""`python -m swarm.status` shows live peers and coverage of a real swarm, as a table and as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.integration.conftest import CHILD_ENV


def status(bootstrap: str, model: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm.status", "--initial-peers", bootstrap, "--model", model, *extra],
        capture_output=True, text=True, timeout=120, env={**os.environ, **CHILD_ENV},
    )


def test_status_reports_spans_and_missing_layers(checkpoints, swarm_of, bootstrap):
    """Two peers cover 0..2 and 4; status lists both spans and names layer 3 as missing (exit 3)."""
    path = checkpoints("qwen2", num_layers=5)
    swarm_of(path, ["0:3", "4:5"])
    table = status(bootstrap, str(path))
    assert table.returncode == 3, table.stderr
    assert "0:3" in table.stdout and "4:5" in table.stdout and "3..3" in table.stdout
    as_json = status(bootstrap, str(path), "--json")
    report = json.loads(as_json.stdout)
    assert sorted((p["start"], p["end"]) for p in report["peers"]) == [(0, 3), (4, 5)]
    assert report["missing"] == [[3, 4]] and report["complete"] is False
