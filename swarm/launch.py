"""Start and stop local swarm processes (bootstrap + peers) by PID: used by the demo, tests and benchmarks.

Each child's stdout is read by a thread that waits for its readiness line ('swarm address: ...' or
'peer ready: ...'); stdout and stderr both go to a log file per process, so a failure names the file to
read. Children are stopped with SIGTERM, then SIGKILL after a grace period: only processes started here.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from swarm.errors import MolinkError


class LaunchError(MolinkError):
    """A local swarm process exited or stayed silent before it was ready."""


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[str]
    log_path: Path
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    ready: str = ""  # the readiness line, once seen

    @property
    def data_addr(self) -> str:
        """A peer's data address, from its 'peer ready: ADDR layers ...' line."""
        return self.ready.split()[2]

    @property
    def peer_id(self) -> str:
        """A peer's id, from the 'peer_id ID' words of its readiness line."""
        words = self.ready.split()
        return words[words.index("peer_id") + 1]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_line(self, prefix: str, timeout: float) -> str:
        """The first stdout line starting with ``prefix``; LaunchError on exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LaunchError(f"{self.name} not ready after {timeout:.0f} s; see {self.log_path}\n{self.tail()}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.popen.wait(timeout=5)
                raise LaunchError(
                    f"{self.name} exited with code {self.popen.returncode} before it was ready; see "
                    f"{self.log_path}\n{self.tail()}"
                )
            if line.startswith(prefix):
                self.ready = line
                return line

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 10.0) -> int | None:
        stop_all([self], grace_s)
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)


def stop_all(procs: Sequence[ManagedProcess], grace_s: float = 10.0) -> None:
    """SIGTERM to every process at once, then SIGKILL to those still running after ``grace_s``: a swarm stops
    in about the time of its slowest peer's shutdown, not the sum of them."""
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.popen.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(timeout=10)


def start_process(argv: Sequence[str], name: str, log_dir: Path, env: dict[str, str] | None = None) -> ManagedProcess:
    log_path = log_dir / f"{name}.log"
    log_file = open(log_path, "a", buffering=1)  # noqa: SIM115 - closed by the reader thread
    popen = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    proc = ManagedProcess(name, popen, log_path)

    def pump() -> None:
        assert popen.stdout is not None  # set by stdout=PIPE above
        with log_file:
            for line in popen.stdout:
                log_file.write(line)
                proc.lines.put(line.rstrip("\n"))
        proc.lines.put(None)

    threading.Thread(target=pump, name=f"pump-{name}", daemon=True).start()
    return proc


def start_bootstrap(log_dir: Path, python: str = sys.executable, env: dict[str, str] | None = None) -> ManagedProcess:
    return start_process([python, "-m", "swarm.bootstrap"], "bootstrap", log_dir, env)


def bootstrap_address(proc: ManagedProcess, timeout: float) -> str:
    """The address printed by a bootstrap node ('swarm address: ADDR')."""
    return proc.wait_line("swarm address:", timeout).split(":", 1)[1].strip()


class LocalSwarm:
    """A bootstrap node and peers on 127.0.0.1, stopped on exit even when the body failed."""

    def __init__(
        self,
        model: str,
        spans: Sequence[str],
        *,
        peer_args: Sequence[str] = (),
        log_dir: Path | None = None,
        ready_timeout_s: float = 180.0,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        bootstrap_address: str | None = None,
    ) -> None:
        self.model = model
        self.spans = list(spans)
        self.peer_args = list(peer_args)
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="molink-swarm-"))
        self.ready_timeout_s = ready_timeout_s
        self.python = python
        self.env = env
        self.bootstrap: ManagedProcess | None = None
        self.peers: list[ManagedProcess] = []
        self.address = bootstrap_address or ""
        self.ready_s = 0.0

    def start(self) -> LocalSwarm:
        t0 = time.monotonic()
        try:
            if not self.address:
                self.bootstrap = start_bootstrap(self.log_dir, self.python, self.env)
                self.address = bootstrap_address(self.bootstrap, self.ready_timeout_s)
            for i, span in enumerate(self.spans):
                self.start_peer(span, name=f"peer{i}", wait=False)
            for peer in self.peers:
                peer.wait_line("peer ready:", self.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.monotonic() - t0
        return self

    def start_peer(self, span: str, *, name: str, wait: bool = True, extra: Sequence[str] = ()) -> ManagedProcess:
        argv = [self.python, "-m", "swarm.peer", "--model", self.model, "--initial-peers", self.address,
                "--no-progress", *(["--layers", span] if span else []), *self.peer_args, *extra]
        proc = start_process(argv, name, self.log_dir, self.env)
        self.peers.append(proc)
        if wait:
            proc.wait_line("peer ready:", self.ready_timeout_s)
        return proc

    def stop(self) -> None:
        stop_all(self.peers)  # together; then the bootstrap, which their goodbyes to the DHT go through
        if self.bootstrap is not None:
            self.bootstrap.stop()

    def __enter__(self) -> LocalSwarm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
