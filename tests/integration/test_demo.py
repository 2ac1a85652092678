"""The main job: the embedded SmolLM2-135M answers through a 3-peer swarm exactly as local transformers does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.integration.conftest import CHILD_ENV, free_port


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


def test_demo_with_api_serves_the_openai_endpoint_until_ctrl_c(tmp_path):
    """`python -m swarm.demo --api HOST:PORT` answers, then serves /v1 over its swarm; Ctrl-C (SIGINT) stops the
    endpoint and the swarm, and the demo still reports its figures and exits 0."""
    import signal
    import urllib.request

    from swarm.launch import start_process

    port = free_port()
    demo = start_process([sys.executable, "-m", "swarm.demo", "--peers", "2", "--max-new-tokens", "4", "--no-check",
                          "--json", "--api", f"127.0.0.1:{port}"], "demo-api", tmp_path, CHILD_ENV)
    try:
        demo.wait_line("api ready:", 600)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=30) as reply:
            assert [m["id"] for m in json.loads(reply.read())["data"]] == ["smollm2"]
        demo.popen.send_signal(signal.SIGINT)
        assert demo.popen.wait(timeout=120) == 0
    finally:
        demo.stop(grace_s=60)  # SIGTERM: the demo stops its own swarm first
