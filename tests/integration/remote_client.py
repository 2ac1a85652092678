"""A client process for multi-host tests: ``python -m tests.integration.remote_client MODEL ADDR... --ids 1,2,3``.

It runs on another host (a network namespace), generates greedily through the swarm and prints one JSON
line: the ids and the route, so the test on its own host can compare them with local transformers.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from routing.config import ClientConfig
from swarm import AutoDistributedModelForCausalLM


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("initial_peers", nargs="+")
    p.add_argument("--ids", required=True, help="prompt token ids, comma-separated")
    p.add_argument("--max-new-tokens", type=int, default=16)
    args = p.parse_args(argv)
    ids = torch.tensor([[int(t) for t in args.ids.split(",")]])
    with AutoDistributedModelForCausalLM.from_pretrained(
        args.model, initial_peers=args.initial_peers, config=ClientConfig(route_wait_s=90)
    ) as model:
        out = model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=False)
        hops = [{"addr": h.addr, "start": h.start, "end": h.end} for h in model.last_route.hops]
    print(json.dumps({"ids": out[0].tolist(), "hops": hops}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
