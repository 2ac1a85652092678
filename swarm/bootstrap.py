"""``python -m swarm.bootstrap``: a DHT node that others join a swarm through.

It serves no layers; it only keeps a stable, reachable place in the DHT. Once ready it prints one line,
``swarm address: <multiaddr>``, on stdout, then one ``also reachable at: <multiaddr>`` line for each other
address it has (--addr-file gets all of them, one per line, the first one first), and runs until SIGINT
or SIGTERM, when it leaves the DHT and exits with 0. For a public swarm run it on a reachable host with
``--listen 0.0.0.0:PORT --identity bootstrap.key``, so its address stays the same across restarts.

With ``--relay`` it also relays for peers behind NATs (``swarm/net/circuits.py``): it tells a joining peer
whether its data port can be reached from outside (it connects back), and joins a client's or another
peer's stream to a peer that cannot be reached, within the limits its flags set; it logs every circuit. A
public swarm runs several such bootstraps (``--initial-peers`` joins a bootstrap to the others): a peer lists
every relay among its initial peers, and those who dial it move to the next when one is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from swarm.cli_args import add_initial_peers, check_initial_peers_given
from swarm.errors import ConfigError, MolinkError
from swarm.logging_setup import setup_logging
from swarm.net.circuits import CircuitLimits, RelayService
from swarm.net.dht import HivemindDiscovery

logger = logging.getLogger("swarm.bootstrap")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m swarm.bootstrap",
        description="Run a molink bootstrap node: a DHT node that peers and clients join the swarm through.",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="address the DHT daemon listens on (default 127.0.0.1:0: this machine only, any free port); "
        "a public bootstrap uses --listen 0.0.0.0:PORT with a fixed PORT, and then prints this machine's "
        "interface addresses (the default route's first), never 0.0.0.0 or 127.0.0.1",
    )
    parser.add_argument(
        "--announce-addr",
        default=None,
        metavar="HOST:PORT",
        help="the address others reach this node at when it differs from --listen (a port forward); printed first",
    )
    parser.add_argument(
        "--identity",
        default=None,
        metavar="FILE",
        help="libp2p key file; created on first start, so the swarm address stays the same across restarts "
        "(default: a fresh identity each run)",
    )
    parser.add_argument(
        "--addr-file",
        default=None,
        metavar="FILE",
        help="also write the swarm address to FILE (atomically, one line) once the node is ready",
    )
    parser.add_argument(
        "--upnp",
        action="store_true",
        help="ask the LAN gateway to forward the port by UPnP/NAT-PMP (off by default: no probes of the router)",
    )
    add_initial_peers(parser, required=False)
    relay = parser.add_argument_group("relaying for peers behind NATs")
    relay.add_argument(
        "--relay",
        action="store_true",
        help="also check peers' reachability (connect back to their data port) and relay for the peers that "
        "cannot be reached directly; run it on a host others can reach",
    )
    defaults = CircuitLimits()
    relay.add_argument("--relay-max-circuits", type=int, default=defaults.max_circuits, metavar="N",
                       help=f"circuits open at once, in all (default {defaults.max_circuits})")
    relay.add_argument("--relay-max-per-peer", type=int, default=defaults.max_per_peer, metavar="N",
                       help=f"circuits open at once with one peer at either end (default {defaults.max_per_peer})")
    relay.add_argument("--relay-rate-mbit", type=float, default=0.0, metavar="MBIT",
                       help="bandwidth per dialling peer, Mbit/s each way (default 0: no cap)")
    relay.add_argument("--relay-max-duration", type=float, default=defaults.max_duration_s, metavar="S",
                       help=f"seconds one circuit may last (default {defaults.max_duration_s:g}); a client whose "
                       "circuit ends re-routes, and its text stays the same")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level on stderr (default INFO; DEBUG also shows hivemind's own logs)",
    )
    parser.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics, HOST being --listen's "
                        "(default: off): DHT neighbours, and with --relay its circuits and bytes")
    parser.add_argument("--log-json", action="store_true", help="one JSON object per log line (time, level, logger, message) for log collectors")
    return parser


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers see all of it or nothing."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".addr-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def circuit_limits(args: argparse.Namespace) -> CircuitLimits:
    for flag, value in (("--relay-max-circuits", args.relay_max_circuits), ("--relay-max-per-peer",
                        args.relay_max_per_peer), ("--relay-max-duration", args.relay_max_duration)):
        if not value > 0:
            raise ConfigError(f"{flag} must be positive, got {value:g}")
    if not args.relay_rate_mbit >= 0:
        raise ConfigError(f"--relay-rate-mbit must be 0 (no cap) or positive, got {args.relay_rate_mbit:g}")
    return CircuitLimits(max_circuits=args.relay_max_circuits, max_per_peer=args.relay_max_per_peer,
                         rate_bytes_s=args.relay_rate_mbit * 1e6 / 8, max_duration_s=args.relay_max_duration)


class BootstrapCollector(Collector):
    """A bootstrap node's metrics, read when scraped: its DHT neighbours, and its relay's circuits and bytes."""

    def __init__(self, discovery: Any, relay: RelayService | None) -> None:
        self.discovery, self.relay = discovery, relay

    def collect(self) -> Iterator[Any]:
        yield GaugeMetricFamily("molink_bootstrap_dht_neighbours", "other DHT nodes in this node's routing table",
                                value=self.discovery.neighbours())
        if self.relay is not None:
            yield GaugeMetricFamily("molink_relay_circuits_open", "circuits open now", value=len(self.relay.open))
            yield CounterMetricFamily("molink_relay_circuits", "circuits served", value=self.relay.circuits_served)
            yield CounterMetricFamily("molink_relay_bytes", "bytes relayed", value=self.relay.relayed_bytes)


def serve_metrics(port: int, listen: str, discovery: Any, relay: RelayService | None) -> None:
    """Prometheus metrics at http://HOST:port/metrics, HOST from ``listen`` (swarm/http.py)."""
    from prometheus_client import CollectorRegistry

    from swarm.http import serve_metrics as serve_registry

    registry = CollectorRegistry()
    registry.register(BootstrapCollector(discovery, relay))
    serve_registry(port, listen, registry)


async def run(args: argparse.Namespace) -> None:
    limits = circuit_limits(args) if args.relay else None
    discovery = await HivemindDiscovery.create(
        args.initial_peers, listen=args.listen, identity_path=args.identity, upnp=args.upnp,
        announce_addr=args.announce_addr,
    )
    relay = None
    if limits is not None:
        relay = RelayService(discovery.p2p, limits)
        await relay.start()
        logger.info("%s", relay.describe())
    if args.metrics_port:
        serve_metrics(args.metrics_port, args.listen, discovery, relay)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        address, *others = discovery.swarm_addrs
        if args.addr_file:
            write_atomically(args.addr_file, "".join(a + "\n" for a in discovery.swarm_addrs))
        print(f"swarm address: {address}", flush=True)
        for other in others:
            print(f"also reachable at: {other}", flush=True)
        await stop.wait()
        logger.info("stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await discovery.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_initial_peers_given(parser, args)
    setup_logging(args.log_level, json_lines=args.log_json)
    try:
        asyncio.run(run(args))
    except MolinkError as exc:  # bad flags or an unusable address: one clear line, non-zero exit
        logger.error("%s", exc)
        return 1
    except OSError as exc:  # the address file cannot be written
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
