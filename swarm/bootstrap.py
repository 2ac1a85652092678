"""``python -m swarm.bootstrap``: a DHT node that others join a swarm through.

It serves no layers; it only keeps a stable, reachable place in the DHT. Once ready it prints one line,
``swarm address: <multiaddr>``, on stdout, then one ``also reachable at: <multiaddr>`` line for each other
address it has (--addr-file gets all of them, one per line, the first one first), and runs until SIGINT
or SIGTERM, when it leaves the DHT and exits with 0. For a public swarm run it on a reachable host with
``--listen 0.0.0.0:PORT --identity bootstrap.key``, so its address stays the same across restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile

from swarm.errors import MolinkError
from swarm.logging_setup import setup_logging
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
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level on stderr (default INFO; DEBUG also shows hivemind's own logs)",
    )
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


async def run(args: argparse.Namespace) -> None:
    discovery = await HivemindDiscovery.create(
        listen=args.listen, identity_path=args.identity, upnp=args.upnp, announce_addr=args.announce_addr
    )
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
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
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
