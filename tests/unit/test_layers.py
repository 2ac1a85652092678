"""The packages' arrows point one way: swarm/net/ (the ground) imports nothing of ours above it, models/
imports no networking, and peer/ and routing/ never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("swarm", "peer", "routing", "models")


def imports_of(path: Path) -> set[str]:
    """Every module of ours that ``path`` imports, at top level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] in OURS}


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_ground_imports_nothing_above_it():
    """swarm/net/*.py import only swarm.net (and the standard library and third parties)."""
    bad = {p.name: sorted(i for i in imports_of(p) if not i.startswith("swarm.net")) for p in modules("swarm/net")}
    assert not {k: v for k, v in bad.items() if v}


def test_models_know_no_network_and_peer_and_routing_do_not_import_each_other():
    """models/ imports no swarm.net transport, DHT or wire; peer/ never imports routing/ and vice versa."""
    for path in modules("models"):
        assert not [i for i in imports_of(path) if i.split(".")[0] in ("peer", "routing")
                    or i.startswith(("swarm.net.transport", "swarm.net.dht", "swarm.net.wire"))], path
    for path in modules("peer"):
        assert not [i for i in imports_of(path) if i.startswith("routing")], path
    for path in modules("routing"):
        assert not [i for i in imports_of(path) if i.startswith("peer")], path
