"""python -m swarm.status: the live peers of a model, their spans, and which layers nobody serves."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from swarm.cli_args import add_initial_peers, check_initial_peers_given
from swarm.errors import MolinkError, exit_code
from swarm.net.records import PeerRecord
from swarm.net.ways import DIRECT, RELAYED, is_relayed, parse_relayed, way_kind


def coverage_report(records: Sequence[PeerRecord], num_layers: int) -> dict[str, Any]:
    """Pure summary: peers per layer and the ranges no online peer serves."""
    from routing.planner import missing_layers

    online = [r for r in records if r.state.value == "online"]
    per_layer = [sum(1 for r in online if r.start <= i < r.end) for i in range(num_layers)]
    return {
        "num_layers": num_layers,
        "peers_per_layer": per_layer,
        "missing": [list(g) for g in missing_layers([(r.start, r.end) for r in online], 0, num_layers)],
        "complete": all(per_layer),
    }


def reached(record: PeerRecord) -> dict[str, Any]:
    """How others reach a peer, from its record's ways (swarm/net/ways.py): ``direct`` at its address, or
    ``relayed`` through the relays listed (a peer behind a NAT; a connection over a relay may then become a
    hole-punched one, which the record's ``links`` show for the peer's own pushes: ``pushes_cell``)."""
    if not record.addrs:
        return {"reached": "-", "address": "-", "relays": []}
    relays = [parse_relayed(w).relay_maddr for w in record.addrs if is_relayed(w)]
    if way_kind(record.addrs[0]) == RELAYED:
        return {"reached": RELAYED, "address": f"p2p:{parse_relayed(record.addrs[0]).target[-12:]}", "relays": relays}
    return {"reached": DIRECT, "address": record.addrs[0], "relays": relays}


def _reached_cell(how: dict[str, Any]) -> str:
    if how["reached"] != RELAYED:
        return how["reached"]
    hosts = [m.split("/")[2] for m in how["relays"]]
    return f"relayed via {hosts[0]}" + (f" (+{len(hosts) - 1})" if len(hosts) > 1 else "")


def pushes_cell(record: PeerRecord) -> str:
    """The peer's open push connections to next hops and how each was made: "PEERID12 punched, ..."."""
    return ", ".join(f"{peer[:12]} {how}" for peer, how in sorted(record.links.items())) or "-"


def render_table(model: str, records: Sequence[PeerRecord], report: dict[str, Any]) -> str:
    rows = [("PEER", "ADDRESS", "REACHED", "LAYERS", "STATE", "TOK/S", "SESSIONS", "FREE KV", "DTYPE", "VERSION",
             "PUSHES TO")]
    for r in sorted(records, key=lambda r: (r.start, r.end, r.peer_id)):
        how = reached(r)
        rows.append((r.peer_id[:12], how["address"], _reached_cell(how), f"{r.start}:{r.end}", r.state.value,
                     f"{r.throughput:.1f}", str(r.load), str(r.free_cache_tokens), r.dtype, r.version,
                     pushes_cell(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"model {model}: {len(records)} peer(s), {report['num_layers']} layers"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    if report["complete"]:
        lines.append(f"coverage: complete (min {min(report['peers_per_layer'])} peer(s) per layer)")
    else:
        gaps = ", ".join(f"{a}..{b - 1}" for a, b in report["missing"])
        lines.append(f"coverage: INCOMPLETE, no online peer serves layers {gaps}")
    return "\n".join(lines)


def models_report(records: Sequence[PeerRecord]) -> list[dict[str, Any]]:
    """Pure: one summary per model key in the swarm, with the names its peers call it and its coverage."""
    by_model: dict[str, list[PeerRecord]] = {}
    for r in records:
        by_model.setdefault(r.model, []).append(r)
    out = []
    for key, group in sorted(by_model.items()):
        num_layers = max((r.num_layers for r in group), default=0) or max(r.end for r in group)
        report = coverage_report(group, num_layers)
        out.append({"model": key, "names": sorted({r.model_name for r in group if r.model_name}),
                    "peers": len(group), "num_layers": num_layers, "complete": report["complete"],
                    "missing": report["missing"]})
    return out


def render_models(models: Sequence[dict[str, Any]]) -> str:
    if not models:
        return "the swarm serves no model: no live peer answers through these initial peers"
    rows = [("MODEL KEY", "NAME", "PEERS", "LAYERS", "COVERAGE")]
    for m in models:
        gaps = ", ".join(f"{a}..{b - 1}" for a, b in m["missing"])
        rows.append((m["model"], ", ".join(m["names"]) or "-", str(m["peers"]), str(m["num_layers"]),
                     "complete" if m["complete"] else f"missing {gaps}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"the swarm serves {len(models)} model(s):"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


async def gather(initial_peers: Sequence[str], model_key: str | None) -> tuple[list[PeerRecord], list[PeerRecord]]:
    """(records of ``model_key``, records of every model); the second is read only when needed: no model
    was asked for, or the asked one has no peer (then the listing says what the swarm does serve)."""
    from swarm.net.dht import HivemindDiscovery

    discovery = await HivemindDiscovery.create(list(initial_peers), client_mode=True)
    try:
        records = await discovery.read(model_key) if model_key is not None else []
        everything: list[PeerRecord] = []
        if not records:  # the listing names each model once; its own key has all of its peers
            listed = await discovery.read_models()
            for found in await asyncio.gather(*(discovery.read(r.model) for r in listed)):
                everything.extend(found)
        return records, everything
    finally:
        await discovery.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m swarm.status",
        description="Show the live peers serving a model, their spans and layer coverage; without --model, "
        "list the models the swarm serves.")
    add_initial_peers(p, required=True)
    p.add_argument("--model", help="alias, repo id, local directory or .gguf file (default: list every model)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    check_initial_peers_given(p, args)
    from models.source import resolve_model
    from swarm.logging_setup import setup_logging

    setup_logging(args.log_level)
    try:
        ckpt = resolve_model(args.model) if args.model else None
        records, everything = asyncio.run(gather(args.initial_peers, ckpt.model_key if ckpt else None))
    except MolinkError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    if ckpt is None:
        models = models_report(everything)
        if args.json:
            print(json.dumps({"time": time.time(), "models": models}))
        else:
            print(render_models(models))
        return 0 if models else 3
    report = coverage_report(records, ckpt.num_layers)
    if args.json:
        print(json.dumps({
            "model": ckpt.model_key, "time": time.time(), **report,
            "peers": [{**{k: v for k, v in r.to_wire().items() if k not in ("public_key", "signature")},
                       **reached(r)} for r in records],
        }, default=str))
    else:
        print(render_table(ckpt.model_key, records, report))
        if not records:
            print(f"no live peer serves {args.model} (model key {ckpt.model_key}): the key comes from the "
                  "checkpoint's content, so peers serving other weights or another config are another model.")
            print(render_models(models_report(everything)))
    return 0 if report["complete"] else 3


if __name__ == "__main__":
    sys.exit(main())
