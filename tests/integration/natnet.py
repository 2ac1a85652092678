"""Homes behind NATs on one machine: an "internet" of network namespaces, built for a test and removed after it.

``Internet(public=["boot"], homes={"a": "cone", "b": "symmetric"})`` makes:

- an internet namespace holding a bridge; every public host and every home's router is joined to it with a
  veth pair and a documentation address from 203.0.113.0/24 (RFC 5737);
- per home, a router namespace and one host namespace behind it, on their own /26 of 198.51.100.0/24. The
  router forwards and masquerades with nftables: a "cone" home keeps the host's source port where it can
  (endpoint-independent mapping, as most home routers do), a "symmetric" one maps every connection to a
  random port (``masquerade fully-random``), so no address learned through one peer works for another.
  Nothing from the internet reaches a home host unless the host's own traffic opened the way.

Hosts are named by their role: ``net.addr("boot")``, ``net.wrap("a", argv)`` (runs ``argv`` on home a's
host). Nothing is added to the machine's own namespace, and ``close()`` deletes every namespace it made,
also when the test failed. Needs root, iproute2 and nftables (``.ci/run`` installs them on Debian).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from tests.integration.netns import Machines

PUBLIC = "203.0.113"
HOMES = "198.51.100"
NAT_KINDS = ("cone", "symmetric")


def natnet_usable() -> str | None:
    """None when NATed namespaces can be made here, else why not."""
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"{package}'s '{tool}' is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


def _run(*argv: str, stdin: str | None = None) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=30, input=stdin)


def _ip(*args: str) -> None:
    _run("ip", *args)


def nat_rules(kind: str, wan: str = "wan0") -> str:
    """The router's nftables ruleset: masquerade out of ``wan``, and nothing in from it that the home did not
    open (a home router's stateful filter)."""
    if kind not in NAT_KINDS:
        raise ValueError(f"NAT kind must be one of {NAT_KINDS}, got {kind!r}")
    how = "masquerade fully-random" if kind == "symmetric" else "masquerade"
    return f"""
table ip nat {{
  chain postrouting {{ type nat hook postrouting priority srcnat; oifname "{wan}" {how}; }}
}}
table ip filter {{
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname != "{wan}" accept
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "{wan}" ct state != established,related drop
  }}
}}
"""


class Internet(Machines):
    """Public hosts and NATed homes; see the module's docstring."""

    def __init__(self, public: Sequence[str], homes: Mapping[str, str]) -> None:
        self.prefix = f"mn{os.getpid() % 100000}"  # unique per test process; interface names stay < 16 chars
        self.public = list(public)
        self.homes = dict(homes)
        for kind in self.homes.values():
            nat_rules(kind)  # checks the kind before anything is made
        if len(self.homes) > 4 or len(self.public) + len(self.homes) > 100:
            raise ValueError("at most 4 homes and 100 internet hosts")
        self.addrs: dict[str, str] = {}  # a public host's address, or a home host's private one behind its NAT
        self.router_addrs: dict[str, str] = {}
        self.namespaces: dict[str, str] = {}
        self._made: list[str] = []

    def __enter__(self) -> Internet:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _netns_add(self, name: str) -> str:
        ns = f"{self.prefix}-{name}"
        _ip("netns", "add", ns)
        self._made.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def _join_internet(self, ns: str, dev: str, addr: str, index: int) -> None:
        port = f"i{index}"
        _ip("-n", ns, "link", "add", dev, "type", "veth", "peer", "name", port, "netns", self.inet)
        _ip("-n", self.inet, "link", "set", port, "master", "br0")
        _ip("-n", self.inet, "link", "set", port, "up")
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        _ip("-n", ns, "link", "set", dev, "up")

    def _build(self) -> None:
        self.inet = self._netns_add("inet")
        _ip("-n", self.inet, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.inet, "link", "set", "br0", "up")
        index = 0
        for i, name in enumerate(self.public):
            ns = self._netns_add(name)
            self.addrs[name] = f"{PUBLIC}.{10 + i}"
            self._join_internet(ns, "eth0", self.addrs[name], index)
            self.namespaces[name] = ns
            index += 1
        for h, (name, kind) in enumerate(self.homes.items()):
            router = self._netns_add(f"{name}r")
            self.router_addrs[name] = f"{PUBLIC}.{200 + h}"
            self._join_internet(router, "wan0", self.router_addrs[name], index)
            index += 1
            host = self._netns_add(name)
            base = 64 * h
            lan_router, lan_host = f"{HOMES}.{base + 1}", f"{HOMES}.{base + 2}"
            _ip("-n", host, "link", "add", "eth0", "type", "veth", "peer", "name", "lan0", "netns", router)
            _ip("-n", router, "addr", "add", f"{lan_router}/26", "dev", "lan0")
            _ip("-n", router, "link", "set", "lan0", "up")
            _ip("-n", host, "addr", "add", f"{lan_host}/26", "dev", "eth0")
            _ip("-n", host, "link", "set", "eth0", "up")
            _ip("-n", host, "route", "add", "default", "via", lan_router)
            _run("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            _run("ip", "netns", "exec", router, "nft", "-f", "-", stdin=nat_rules(kind))
            self.addrs[name] = lan_host
            self.namespaces[name] = host

