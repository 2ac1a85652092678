"""Which addresses a node publishes, and the port checks made before anything heavy starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from swarm.errors import ConfigError
from swarm.net.addresses import bind_listener, check_port_free, default_route_interface, publish_hosts
from swarm.net.dht import order_swarm_addrs

IFACES = {
    "lo": ["127.0.0.1", "::1"],
    "docker0": ["172.17.0.1"],
    "eth0": ["198.51.100.7", "2001:db8::7", "fe80::1%eth0"],
    "wlan0": ["169.254.3.4"],
}


def test_a_concrete_listen_host_is_published_as_it_is():
    """--listen 127.0.0.1:P or a given interface address publishes exactly that host."""
    assert publish_hosts("127.0.0.1", IFACES) == ["127.0.0.1"]
    assert publish_hosts("198.51.100.7", IFACES, "eth0") == ["198.51.100.7"]


def test_a_wildcard_publishes_interface_addresses_default_route_first_never_loopback():
    """0.0.0.0 gives the IPv4 addresses of the interfaces, the default route's first; no loopback, no
    link-local; '::' adds global IPv6 after them."""
    assert publish_hosts("0.0.0.0", IFACES, "eth0") == ["198.51.100.7", "172.17.0.1"]
    assert publish_hosts("0.0.0.0", IFACES, None) == ["172.17.0.1", "198.51.100.7"]
    assert publish_hosts("::", IFACES, "eth0") == ["198.51.100.7", "172.17.0.1", "2001:db8::7"]


def test_a_machine_with_only_loopback_publishes_loopback():
    """With no network at all, a local swarm is all there can be: 127.0.0.1 rather than nothing."""
    assert publish_hosts("0.0.0.0", {"lo": ["127.0.0.1"]}) == ["127.0.0.1"]
    assert publish_hosts("0.0.0.0", {}) == ["127.0.0.1"]


def test_default_route_interface_is_read_from_the_route_table(tmp_path: Path):
    """/proc/net/route's line with destination 0 names the interface; an unreadable table gives None."""
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway\tFlags\n"
        "docker0\t000011AC\t00000000\t0001\n"
        "eth0\t00000000\t0164A8C0\t0003\n"
    )
    assert default_route_interface(table) == "eth0"
    assert default_route_interface(tmp_path / "missing") is None


def test_dht_addresses_of_a_wildcard_listener_drop_loopback_and_follow_the_host_order():
    """The bootstrap's printed swarm addresses: loopback dropped while others exist, preferred host first."""
    maddrs = ["/ip4/127.0.0.1/tcp/31337/p2p/Qm", "/ip4/172.17.0.1/tcp/31337/p2p/Qm",
              "/ip4/198.51.100.7/tcp/31337/p2p/Qm"]
    assert order_swarm_addrs(maddrs, "0.0.0.0", ["198.51.100.7", "172.17.0.1"]) == [maddrs[2], maddrs[1]]
    assert order_swarm_addrs(maddrs[:1], "0.0.0.0", ["127.0.0.1"]) == maddrs[:1]
    assert order_swarm_addrs(maddrs, "127.0.0.1", ["127.0.0.1"]) == maddrs


def test_a_port_in_use_is_refused_with_a_clear_error():
    """A port another socket listens on cannot be checked free or bound, and the message says what to do."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="another peer or bootstrap"):
            check_port_free("127.0.0.1", port, "DHT port")
        with pytest.raises(ConfigError, match=f"--listen 127.0.0.1:{port}"):
            bind_listener("127.0.0.1", port, "--listen")
    check_port_free("127.0.0.1", 0, "DHT port")  # any free port: nothing to check
    listener = bind_listener("127.0.0.1", 0, "--listen")
    try:
        assert listener.getsockname()[1] > 0
    finally:
        listener.close()
