"""Machines for tests: Linux network namespaces on one bridge, each a host with its own address.

``Lan`` builds a switch namespace holding a bridge, and one namespace per host joined to it by a veth
pair, with documentation addresses (RFC 5737, 198.51.100.0/24) that exist only inside these namespaces.
Nothing is added to the machine's own network namespace, and ``close()`` deletes every namespace it made
(their interfaces go with them), also when the test failed. Needs root and iproute2 (``ip``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swarm.launch import ManagedProcess, start_process, stop_all
from tests.integration.conftest import CHILD_ENV

SUBNET = "198.51.100"
ROOT = Path(__file__).resolve().parents[2]


def netns_usable() -> str | None:
    """None when namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "iproute2's 'ip' is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Machines:
    """What every set of namespace hosts shares: ``addrs`` and ``namespaces`` by host name, the namespaces made
    (deleted by ``close``, also when the test failed)."""

    addrs: dict[str, str]
    namespaces: dict[str, str]
    _made: list[str]

    def addr(self, host: str) -> str:
        return self.addrs[host]

    def wrap(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run on ``host``: ``ip netns exec`` execs it in place, so its PID is the program's own."""
        return ["ip", "netns", "exec", self.namespaces[host], *argv]

    def close(self) -> None:
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self._made.clear()

    def __exit__(self, *exc: object) -> None:
        self.close()


class Lan(Machines):
    """Hosts on one bridged LAN: ``Lan(["boot", "peer1"])``, then ``lan.addr("boot")`` and ``lan.wrap(...)``."""

    def __init__(self, hosts: Sequence[str], *, first_octet: int = 10) -> None:
        self.prefix = f"mlk{os.getpid() % 100000}"  # unique per test process; interface names stay < 16 chars
        self.switch = f"{self.prefix}-sw"
        self.hosts = {name: f"{self.prefix}-{name}" for name in hosts}
        self.namespaces = self.hosts
        self.addrs = {name: f"{SUBNET}.{first_octet + i}" for i, name in enumerate(hosts)}
        self._made: list[str] = []

    def __enter__(self) -> Lan:
        try:
            self._netns_add(self.switch)
            _ip("-n", self.switch, "link", "set", "lo", "up")
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for i, (name, ns) in enumerate(self.hosts.items()):
                self._netns_add(ns)
                port = f"p{i}"
                _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", self.switch)
                _ip("-n", self.switch, "link", "set", port, "master", "br0")
                _ip("-n", self.switch, "link", "set", port, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "addr", "add", f"{self.addrs[name]}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.close()
            raise
        return self

    def _netns_add(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._made.append(ns)



class Hosts:
    """Processes on the hosts of a ``Lan`` or an ``Internet`` (anything with ``wrap``), all stopped by PID at the
    end, even when the test failed."""

    def __init__(self, net: Any, log_dir: Path) -> None:
        self.net, self.log_dir, self.procs = net, log_dir, []

    def start(self, host: str, name: str, argv: list[str]) -> ManagedProcess:
        proc = start_process(self.net.wrap(host, [sys.executable, *argv]), name, self.log_dir, CHILD_ENV)
        self.procs.append(proc)
        return proc

    def run(self, host: str, argv: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.net.wrap(host, [sys.executable, *argv]), capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT, env={**os.environ, **CHILD_ENV})

    def stop_all(self) -> None:
        stop_all(self.procs)
