"""What a user gets wrong is refused before any weight is read, and two processes never serve one port.

Each CLI case is a real process: one `error:` line (peer: exit 2), and nothing loaded first. The memory
case runs the peer's own start-up in this process with the span loader replaced by one that fails the test,
so "before any weight is read" is checked, not assumed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from peer.config import PeerConfig
from swarm.errors import ConfigError
from tests.integration.conftest import CHILD_ENV


def run_peer_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swarm.peer", "--no-progress", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **CHILD_ENV})


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_a_taken_data_port_is_refused_before_the_model_is_even_resolved(bootstrap):
    """--listen on a port another process listens on: the error names the port, although the model name is
    bad too (the port is checked first, so a download would never start)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_peer_cli("--model", "no-such-model-anywhere", "--initial-peers", bootstrap,
                            "--listen", f"127.0.0.1:{port}")
    assert proc.returncode == 2, proc.stderr
    [line] = error_lines(proc)
    assert f"127.0.0.1:{port}" in line and "another peer or bootstrap" in line, line


def test_initial_peers_without_a_value_is_an_error_not_a_new_swarm():
    """`--initial-peers` followed by nothing says so (argparse exit 2) instead of starting a lone swarm."""
    proc = run_peer_cli("--model", "x", "--initial-peers", timeout=60)
    assert proc.returncode == 2
    assert "no value after --initial-peers" in proc.stderr, proc.stderr
    status = subprocess.run([sys.executable, "-m", "swarm.status", "--initial-peers"], capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 2 and "no value after --initial-peers" in status.stderr, status.stderr


def test_a_second_bootstrap_on_a_taken_port_fails_and_the_first_keeps_serving(tmp_path, checkpoints, swarm_of):
    """A bootstrap on a port a running one holds exits non-zero with one clear line; lookups through the
    first one still find the swarm."""
    from swarm.launch import bootstrap_address, start_bootstrap

    first = start_bootstrap(tmp_path, env=CHILD_ENV)
    try:
        address = bootstrap_address(first, 60)
        port = address.split("/tcp/")[1].split("/")[0]
        second = subprocess.run([sys.executable, "-m", "swarm.bootstrap", "--listen", f"127.0.0.1:{port}"],
                                capture_output=True, text=True, timeout=120, env={**os.environ, **CHILD_ENV})
        assert second.returncode != 0
        assert "swarm address" not in second.stdout
        assert f"127.0.0.1:{port}" in second.stderr and "another peer or bootstrap" in second.stderr, second.stderr

        path = checkpoints("llama", num_layers=5)
        from swarm.launch import LocalSwarm

        with LocalSwarm(str(path), ["0:5"], peer_args=["--threads", "1"], log_dir=tmp_path, env=CHILD_ENV,
                        bootstrap_address=address, ready_timeout_s=120):
            status = subprocess.run([sys.executable, "-m", "swarm.status", "--initial-peers", address, "--model",
                                     str(path), "--json"], capture_output=True, text=True, timeout=120,
                                    env={**os.environ, **CHILD_ENV})
            assert status.returncode == 0, status.stdout + status.stderr
    finally:
        first.stop()


def test_memory_is_checked_before_any_weight_is_read(checkpoints, bootstrap, monkeypatch):
    """A span whose weights and KV reserve (layers x KV heads x head size x dtype x tokens) exceed
    --max-memory is refused with both figures, and the span loader is never called."""
    from models.span import SpanModel
    from peer.main import run_peer

    def must_not_load(*args, **kwargs):
        raise AssertionError("weights were read before the memory check")

    monkeypatch.setattr(SpanModel, "load", must_not_load)
    path = checkpoints("llama", num_layers=5)
    config = PeerConfig(model=str(path), initial_peers=(bootstrap,), layers="0:5", max_memory_gb=0.01,
                        kv_reserve_tokens=200_000, progress=False)
    with pytest.raises(ConfigError, match=r"layers 0:5 need .* KV cache for 200000 tokens.*--max-memory"):
        asyncio.run(run_peer(config))
