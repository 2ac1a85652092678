"""Which addresses to publish, and whether a port is free before anything heavy starts.

A peer or bootstrap told to listen on a wildcard host (``0.0.0.0`` or ``::``) accepts connections on every
interface, but "0.0.0.0" means nothing to another machine, and 127.0.0.1 reaches only this one. So the
addresses it publishes are its interfaces' own addresses: the interface of the default route first (the one
other machines most likely reach), then the other non-loopback ones; loopback only when there is nothing
else (a machine with no network, where a local swarm is all there can be). ``--announce-addr`` overrides all
of this for port forwards and relays.

``publish_hosts`` is pure (interfaces in, hosts out); ``local_interfaces`` and ``default_route_interface``
read this machine's state (psutil, and /proc/net/route on Linux).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

from swarm.net.errors import ConfigError

WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def is_wildcard(host: str) -> bool:
    return host in WILDCARD_HOSTS


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def publish_hosts(
    listen_host: str, interfaces: Mapping[str, Sequence[str]], default_interface: str | None = None
) -> list[str]:
    """The hosts to publish for a server listening on ``listen_host``.

    interfaces: interface name -> its IP addresses (as psutil.net_if_addrs gives them, other families left out).
    A concrete host is published as it is. A wildcard host gives every usable address of its IP version
    (IPv6 too for ``::``), the default route's interface first, loopback only when nothing else is left.
    Link-local addresses are left out: they need a zone and do not cross a router.
    """
    if not is_wildcard(listen_host):
        return [listen_host]
    versions = (4, 6) if listen_host == "::" else (4,)
    ordered = sorted(interfaces.items(), key=lambda item: item[0] != default_interface)  # stable: default first
    usable: list[str] = []
    loopback: list[str] = []
    for _, addrs in ordered:
        for text in addrs:
            try:
                ip = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                continue  # a MAC address or something else psutil lists
            if ip.version not in versions or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
                continue
            target = loopback if ip.is_loopback else usable
            if str(ip) not in target:
                target.append(str(ip))
    usable.sort(key=lambda h: ipaddress.ip_address(h).version)  # IPv4 first: reachable from more places
    return usable or loopback or ["127.0.0.1"]


def local_interfaces() -> dict[str, list[str]]:
    """This machine's interfaces and their IP addresses."""
    import psutil

    families = (socket.AF_INET, socket.AF_INET6)
    return {
        name: [a.address for a in addrs if a.family in families]
        for name, addrs in psutil.net_if_addrs().items()
    }


def default_route_interface(route_table: Path = Path("/proc/net/route")) -> str | None:
    """The interface of the IPv4 default route (Linux); None where that cannot be read."""
    try:
        lines = route_table.read_text().splitlines()[1:]
    except OSError:  # not Linux, or no /proc: keep the interfaces' own order
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":  # destination 0.0.0.0: the default route
            return fields[0]
    return None


def advertised_hosts(listen_host: str) -> list[str]:
    """``publish_hosts`` for this machine."""
    if not is_wildcard(listen_host):
        return [listen_host]
    return publish_hosts(listen_host, local_interfaces(), default_route_interface())


def check_port_free(host: str, port: int, what: str) -> None:
    """ConfigError when ``host:port`` cannot be bound (another process serves it, or the host is not ours).

    Port 0 (any free port) always passes. The probe never sets SO_REUSEPORT, so a port that another process
    holds even with SO_REUSEPORT (as the DHT daemon's listener does) is reported as taken.
    """
    if port != 0:
        bind_listener(host, port, what).close()


def bind_listener(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket on ``host:port``, bound now so the port is ours before a long model load."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if hasattr(socket, "SO_REUSEADDR") and not _windows():
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart over TIME_WAIT; never shares
        sock.bind((host or "0.0.0.0", port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{what} {host}:{port} cannot be used: {exc.strerror or exc}; is another "
                          "peer or bootstrap already running on it? Choose another port.") from exc
    return sock


def _windows() -> bool:
    import sys

    return sys.platform == "win32"  # SO_REUSEADDR there lets two processes bind one port
