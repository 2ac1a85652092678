"""python -m swarm.status: the live peers of a model, their spans, and which layers nobody serves."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from swarm.errors import MolinkError, exit_code
from swarm.records import PeerRecord


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


def render_table(model: str, records: Sequence[PeerRecord], report: dict[str, Any]) -> str:
    rows = [("PEER", "ADDRESS", "LAYERS", "STATE", "TOK/S", "SESSIONS", "FREE KV", "DTYPE", "VERSION")]
    for r in sorted(records, key=lambda r: (r.start, r.end, r.peer_id)):
        rows.append((r.peer_id[:12], r.addrs[0] if r.addrs else "-", f"{r.start}:{r.end}", r.state.value,
                     f"{r.throughput:.1f}", str(r.load), str(r.free_cache_tokens), r.dtype, r.version))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"model {model}: {len(records)} peer(s), {report['num_layers']} layers"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    if report["complete"]:
        lines.append(f"coverage: complete (min {min(report['peers_per_layer'])} peer(s) per layer)")
    else:
        gaps = ", ".join(f"{a}..{b - 1}" for a, b in report["missing"])
        lines.append(f"coverage: INCOMPLETE, no online peer serves layers {gaps}")
    return "\n".join(lines)


async def gather(initial_peers: Sequence[str], model_key: str) -> list[PeerRecord]:
    from swarm.dht import HivemindDiscovery

    discovery = await HivemindDiscovery.create(list(initial_peers), client_mode=True)
    try:
        return await discovery.read(model_key)
    finally:
        await discovery.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m swarm.status",
                                description="Show the live peers serving a model, their spans and layer coverage.")
    p.add_argument("--initial-peers", nargs="+", required=True, metavar="ADDR", help="swarm address(es)")
    p.add_argument("--model", required=True, help="alias, repo id, local directory or .gguf file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    from models.source import resolve_model
    from swarm.logging_setup import setup_logging

    setup_logging(args.log_level)
    try:
        ckpt = resolve_model(args.model)
        records = asyncio.run(gather(args.initial_peers, ckpt.model_key))
    except MolinkError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    report = coverage_report(records, ckpt.num_layers)
    if args.json:
        print(json.dumps({
            "model": ckpt.model_key, "time": time.time(), **report,
            "peers": [{k: v for k, v in r.to_wire().items() if k not in ("public_key", "signature")}
                      for r in records],
        }, default=str))
    else:
        print(render_table(ckpt.model_key, records, report))
    return 0 if report["complete"] else 3


if __name__ == "__main__":
    sys.exit(main())
