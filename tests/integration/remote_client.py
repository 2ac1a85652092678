"""A client process for multi-host tests: ``python -m tests.integration.remote_client MODEL ADDR... --ids 1,2,3``.

It runs on another host (a network namespace), generates greedily through the swarm and prints one JSON
line: the ids and the route, so the test on its own host can compare them with local transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from routing.config import ClientConfig
from swarm import AutoDistributedModelForCausalLM


class Pause:
    """A streamer that holds generation after ``after`` new tokens until ``go_file`` exists: the test does
    something to the swarm (stops a relay) in the middle of a generation."""

    def __init__(self, after: int, go_file: str | None, client: object = None) -> None:
        self.after, self.go_file, self.client, self.seen = after, go_file, client, -1  # the first put(): the prompt

    def put(self, value: object) -> None:
        self.seen += 1
        if self.seen == self.after and self.go_file:
            # how the client reaches each hop of the open session: the test knows which relay carries what
            sessions = list(getattr(self.client, "sessions", ()))
            hops = [reached(self.client, h.addr) for h in sessions[0].hops] if sessions else []
            print("paused", json.dumps(hops), flush=True)
            deadline = time.monotonic() + 300
            while not os.path.exists(self.go_file) and time.monotonic() < deadline:
                time.sleep(0.05)  # the test creates the file once it has done what it does mid-generation

    def end(self) -> None:
        pass


def reached(client: object, addr: str) -> dict[str, str | None]:
    """How the client's link to a hop was made (direct, punched, relayed) and where it goes."""
    how, where = client.reached(addr) or (None, None)
    return {"how": how, "via": where}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("initial_peers", nargs="+")
    p.add_argument("--ids", required=True, help="prompt token ids, comma-separated")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--pause-after", type=int, default=0, metavar="K",
                   help="after K new tokens print 'paused' and wait (at most 300 s) until --go-file exists")
    p.add_argument("--go-file", default=None)
    args = p.parse_args(argv)
    ids = torch.tensor([[int(t) for t in args.ids.split(",")]])
    with AutoDistributedModelForCausalLM.from_pretrained(
        args.model, initial_peers=args.initial_peers, config=ClientConfig(route_wait_s=90)
    ) as model:
        streamer = Pause(args.pause_after, args.go_file, model.client) if args.pause_after else None
        out = model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=False, streamer=streamer)
        hops = [{"addr": h.addr, "start": h.start, "end": h.end, **reached(model.client, h.addr)}
                for h in model.last_route.hops]
    print(json.dumps({"ids": out[0].tolist(), "hops": hops}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
