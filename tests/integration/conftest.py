"""Shared fixtures for integration tests: one real bootstrap process per test session, tiny checkpoints,
and local swarms of real peer processes on 127.0.0.1 that are stopped by PID even when a test fails."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from swarm.launch import LocalSwarm, bootstrap_address, start_bootstrap
from tests.conftest_models import make_tiny_checkpoint

# peers and clients in tests never try the network: a hub lookup fails at once instead of timing out
os.environ.setdefault("HF_HUB_OFFLINE", "1")
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MOLINK_THROUGHPUT_CACHE": "off"}
PEER_ARGS = ["--threads", "1", "--announce-interval", "2"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (another process may take it before it is bound: pass ports the code
    picks itself, such as a peer's DHT port, as port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def bootstrap(logs_dir: Path) -> Iterator[str]:
    """The swarm address of a bootstrap node shared by the session's tests."""
    proc = start_bootstrap(logs_dir, env=CHILD_ENV)
    try:
        yield bootstrap_address(proc, 60)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory):
    """make(arch, num_layers=...) -> path of a tiny random checkpoint, built once per session."""
    made: dict[tuple, Path] = {}

    def make(arch: str, num_layers: int = 5, **kw) -> Path:
        key = (arch, num_layers, tuple(sorted(kw.items())))
        if key not in made:
            root = tmp_path_factory.mktemp(f"{arch}-{num_layers}")
            made[key] = make_tiny_checkpoint(root, arch, num_layers=num_layers, **kw)
        return made[key]

    return make


@pytest.fixture
def swarm_of(bootstrap: str, tmp_path: Path):
    """swarm_of(model_path, spans) starts real peers for those spans; all are stopped after the test."""
    stack = contextlib.ExitStack()

    def start(model: Path | str, spans: Sequence[str], extra: Sequence[str] = ()) -> LocalSwarm:
        swarm = LocalSwarm(str(model), spans, peer_args=[*PEER_ARGS, *extra], log_dir=tmp_path,
                           env=CHILD_ENV, bootstrap_address=bootstrap, ready_timeout_s=120)
        stack.enter_context(swarm)
        return swarm

    with stack:
        yield start
