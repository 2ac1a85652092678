"""Command-line pieces the CLIs share, so a flag means the same and fails the same way everywhere."""

from __future__ import annotations

import argparse

INITIAL_PEERS_HELP = (
    "swarm address(es) printed by 'python -m swarm.bootstrap' ('swarm address: /ip4/.../p2p/...'), or any "
    "peer's DHT address; give several, separated by spaces, so that any one of them may be down"
)


def add_initial_peers(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """--initial-peers ADDR [ADDR ...]; nargs='*' so that a missing value gets our own message, not argparse's."""
    suffix = "" if required else " (leave the flag out to start a new swarm)"
    parser.add_argument("--initial-peers", nargs="*", default=None, metavar="ADDR", help=INITIAL_PEERS_HELP + suffix)
    parser.set_defaults(_initial_peers_required=required)


def check_initial_peers_given(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit 2 with what to do for '--initial-peers' with no value (or missing where required); else make
    ``args.initial_peers`` a list."""
    if args.initial_peers == []:
        parser.error("no value after --initial-peers: give the 'swarm address: ...' line a bootstrap printed"
                     + ("" if args._initial_peers_required else ", or leave the flag out to start a new swarm"))
    if args.initial_peers is None:
        if args._initial_peers_required:
            parser.error("--initial-peers is required: the 'swarm address: ...' line a bootstrap printed")
        args.initial_peers = []
