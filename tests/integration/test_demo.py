"""The main job: the embedded SmolLM2-135M answers through a 3-peer swarm exactly as local transformers does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.integration.conftest import CHILD_ENV


def test_demo_answers_like_local_transformers():
    """`python -m swarm.demo` prints the Paris answer and reports a token-exact match with local generate()."""
    proc = subprocess.run(
        [sys.executable, "-m", "swarm.demo", "--json", "--max-new-tokens", "24"],
        capture_output=True, text=True, timeout=600, env={**os.environ, **CHILD_ENV},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["matches_local_transformers"] is True
    assert "assistant: The capital of France is Paris." in proc.stdout
    assert figures["route"].count("->") == 2
