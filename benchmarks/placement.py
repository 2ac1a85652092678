"""Placement at scale, simulated: how close unlike peers that choose and move their own spans come to the best
any placement could do, how often they move, and how fast they cover the model again after a blow.

For 10, 100 and 1,000 peers (peer/placement_sim.py: memory from 3 to 26 layers, speed spread over two orders
of magnitude), for each seed: peers join over 10 minutes, then 20% of them per hour leave and as many new ones
join for ``--hours`` hours, then 20% leave at once. Printed as JSON and written to benchmarks/results/:

- ``fraction_mean`` / ``fraction_min``: the swarm's throughput (sub-span routes, every layer) over the
  max-flow bound for the same peers, sampled every 5 simulated minutes after the first hour;
- ``moves_per_peer_hour``: span moves per hour a peer is present;
- ``cover_s``: seconds until every layer is held by an online peer again after the 20% leave (0: nothing was
  lost), ``null`` when not within an hour.

The 10-peer swarm serves a 32-layer model (about 100 layers of memory between them); the larger ones an
80-layer model.

    python benchmarks/placement.py [--seeds 5] [--hours 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import publish  # noqa: E402
from peer.placement import CHECK_EVERY_S, MIN_DWELL_S, MOVE_MARGIN  # noqa: E402
from peer.placement_sim import Simulator  # noqa: E402

SIZES = {10: 32, 100: 80, 1000: 80}  # peers -> the model's layers


def one(peers: int, num_layers: int, seed: int, hours: float) -> dict[str, Any]:
    sim = Simulator(num_layers, random.Random(seed))
    sim.add_peers(peers, over_s=600)
    sim.run_until(3600)
    sim.churn(0.2, 3600 * (1 + hours))
    sim.run_until(3600 * (1 + hours))
    samples = [f for t, f in sim.samples if t >= 3600]
    moves = sim.moves_per_peer_hour()
    sim.remove_peers(0.2)
    cover = sim.time_to_cover(3600)
    return {"fraction_mean": statistics.fmean(samples), "fraction_min": min(samples),
            "moves_per_peer_hour": moves, "cover_s": cover}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--hours", type=float, default=3.0, help="simulated hours of churn after the first hour")
    p.add_argument("--peers", type=int, nargs="+", default=list(SIZES), choices=list(SIZES))
    args = p.parse_args()
    results = {}
    for peers in args.peers:
        began = time.perf_counter()
        runs = [one(peers, SIZES[peers], seed, args.hours) for seed in range(args.seeds)]
        covers = [r["cover_s"] for r in runs]
        results[str(peers)] = {
            "num_layers": SIZES[peers],
            "fraction_mean": round(statistics.fmean(r["fraction_mean"] for r in runs), 3),
            "fraction_min": round(min(r["fraction_min"] for r in runs), 3),
            "fraction_mean_by_seed": [round(r["fraction_mean"], 3) for r in runs],
            "moves_per_peer_hour": round(statistics.fmean(r["moves_per_peer_hour"] for r in runs), 3),
            "cover_s_by_seed": covers,
            "cover_s_max": None if None in covers else max(covers),
            "wall_s": round(time.perf_counter() - began, 1),
        }
        print(f"{peers} peers: {results[str(peers)]}", file=sys.stderr, flush=True)
    publish("placement", {"seeds": args.seeds, "hours": args.hours, "churn_per_hour": 0.2, "leave_at_once": 0.2,
                          "move_margin": MOVE_MARGIN, "check_every_s": CHECK_EVERY_S, "min_dwell_s": MIN_DWELL_S,
                          "sizes": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
