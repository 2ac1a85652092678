"""Failover benchmark: time from a peer's death to the next token, on loopback.

A tiny Llama (hidden 256 x 8 layers) on 4 peers (two replicas of each half, 1 s heartbeat). Greedy generation
of 64 tokens; at token 10 the peer serving the second hop is stopped, two ways:
- kill -9: its connections close, the client sees it at once;
- SIGSTOP: the peer hangs with its connections open; the client notices at the step deadline
  (ClientConfig.min_step_timeout_s, 1 s by default) and a ping that goes unanswered (1 s).
For each: seconds from the signal to the next token, the median step time without failure, and whether the
text equals the run without failure. Prints JSON and writes benchmarks/results/failover-<date>.json.

    .venv/bin/python benchmarks/failover.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import DEFAULT_MODELS_DIR, models_root, publish  # noqa: E402
from benchmarks.decode import make_model, prompts  # noqa: E402

KILL_AT = 10
NEW_TOKENS = 64


class Recorder:
    def __init__(self, action) -> None:
        self.action, self.seen, self.times, self.signal_at = action, -1, [], 0.0

    def put(self, _value) -> None:
        self.seen += 1
        if self.seen >= 0:
            self.times.append(time.perf_counter())
        if self.seen == KILL_AT:
            self.signal_at = time.perf_counter()
            self.action()

    def end(self) -> None:
        pass


def run_case(how: str, path: Path, log_dir: Path) -> dict[str, object]:
    from routing.config import ClientConfig
    from swarm import AutoDistributedModelForCausalLM
    from swarm.launch import LocalSwarm

    spans = ["0:4", "0:4", "4:8", "4:8"]
    short, _ = prompts()
    # default deadlines: 1 s floor, 1 s ping; no random pick among near-equal routes: the victim is chosen
    # from the route planned before generate()
    config = ClientConfig(route_wait_s=30, route_tolerance=0.0)
    with LocalSwarm(str(path), spans, peer_args=["--threads", "1", "--announce-interval", "1"],
                    env={"HF_HUB_OFFLINE": "1"}, log_dir=log_dir) as swarm, \
            AutoDistributedModelForCausalLM.from_pretrained(str(path), initial_peers=[swarm.address],
                                                            config=config) as model:
        reference = model.generate(short, max_new_tokens=NEW_TOKENS, do_sample=False)
        route = model.client.run(model.client.wait_route())
        victim = next(p for p in swarm.peers if p.data_addr == route.hops[1].addr)
        sig = signal.SIGKILL if how == "kill -9" else signal.SIGSTOP
        rec = Recorder(lambda: os.kill(victim.pid, sig))
        try:
            out = model.generate(short, max_new_tokens=NEW_TOKENS, do_sample=False, streamer=rec)
        finally:
            if how != "kill -9":
                os.kill(victim.pid, signal.SIGKILL)
    steps = [b - a for a, b in zip(rec.times, rec.times[1:], strict=False)]
    return {
        "failure": how,
        "death_to_next_token_s": round(rec.times[KILL_AT + 1] - rec.signal_at, 4),
        "median_step_s": round(statistics.median(steps), 4),
        "text_unchanged": out.tolist() == reference.tolist(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models-dir", default=DEFAULT_MODELS_DIR)
    args = p.parse_args()
    root = models_root(args.models_dir)
    path = make_model("tiny", root)
    log_dir = Path(tempfile.mkdtemp(prefix="molink-failover-"))
    runs = [run_case(how, path, log_dir) for _ in range(args.repeats) for how in ("kill -9", "SIGSTOP")]
    summary = {}
    for how in ("kill -9", "SIGSTOP"):
        mine = [r for r in runs if r["failure"] == how]
        summary[how] = {
            "death_to_next_token_s_median": statistics.median(r["death_to_next_token_s"] for r in mine),
            "median_step_s": statistics.median(r["median_step_s"] for r in mine),
            "all_text_unchanged": all(r["text_unchanged"] for r in mine),
        }
    publish("failover", {
        "model": "tiny llama (hidden 256 x 8 layers), 4 peers: 2 replicas x 2 halves, heartbeat 1 s",
        "kill_at_token": KILL_AT, "new_tokens": NEW_TOKENS, "summary": summary, "runs": runs,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
