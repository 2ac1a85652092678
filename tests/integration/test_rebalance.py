"""Placement with real peers: spans sized by --max-memory fill the model, newcomers take the weakest layers,
and a peer that moves its span in the middle of a generation leaves the text exactly as it was."""

from __future__ import annotations

import threading

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from peer.memory import GB, kv_bytes_per_token, layer_sizes
from routing.config import ClientConfig
from swarm import AutoDistributedModelForCausalLM
from swarm.launch import LocalSwarm

KV_TOKENS = 256
FIXED = ["--kv-reserve-tokens", str(KV_TOKENS), "--rebalance-every", "0"]


def memory_for(path, layers: int) -> str:
    """A --max-memory (GB) that holds ``layers`` layers of this checkpoint and their KV reserve, not one more."""
    config = AutoConfig.from_pretrained(path)
    per_layer = max(layer_sizes(config, torch.float32)) + KV_TOKENS * kv_bytes_per_token(config, torch.float32)
    return f"{(layers + 0.5) * per_layer / GB:.9f}"


def span_of(proc) -> str:
    return proc.ready.split(" layers ")[1].split()[0]


def test_peers_sized_by_memory_cover_the_model_and_newcomers_take_the_weakest_part(checkpoints, swarm_of):
    path = checkpoints("qwen3", num_layers=8)
    swarm: LocalSwarm = swarm_of(path, [])
    first = [swarm.start_peer("", name=f"mem{i}", extra=[*FIXED, "--max-memory", memory_for(path, n),
                                                           "--throughput", str(tps)])
             for i, (n, tps) in enumerate([(3, 100), (3, 100), (2, 20)])]
    assert [span_of(p) for p in first] == ["0:3", "3:6", "6:8"]
    # layers 6..7 pass 20 tokens/s, the rest 100: a 2-layer newcomer goes there
    fourth = swarm.start_peer("", name="mem3", extra=[*FIXED, "--max-memory", memory_for(path, 2), "--throughput", "100"])
    assert span_of(fourth) == "6:8"
    # now layers 0..5 pass 100 tokens/s and 6..7 120. A 3-layer newcomer at 100 tok/s raises the swarm most
    # (sub-span routes: the swarm's exact throughput, peer/placement.py) across the 0:3 / 3:6 boundary: on
    # 1:4 it frees the others to carry 120 everywhere, on 0:3 layers 3..5 would still pass only 100
    fifth = swarm.start_peer("", name="mem4", extra=[*FIXED, "--max-memory", memory_for(path, 3), "--throughput", "100"])
    assert span_of(fifth) == "1:4"


class PauseAt:
    """A generate() streamer that, at the given new token, runs ``action`` and waits for it to finish."""

    def __init__(self, step: int, action) -> None:
        self.step, self.action, self.seen = step, action, -1

    def put(self, _value) -> None:
        self.seen += 1
        if self.seen == self.step:
            self.action()

    def end(self) -> None:
        pass


def test_a_peer_moving_its_span_mid_generation_leaves_the_text_unchanged(checkpoints, swarm_of, bootstrap):
    """A fast peer serves 0:2 and a slow one 2:4; a second fast peer pinned on 0:2 joins while the client
    generates through the first, which then moves to 2:4 (the weak half): its session fails over, the text
    is what local transformers gives."""
    path = checkpoints("qwen3", num_layers=4)
    swarm: LocalSwarm = swarm_of(path, [])
    swarm.start_peer("2:4", name="slow", extra=["--throughput", "5"])
    mover = swarm.start_peer("", name="mover", extra=["--num-layers", "2", "--throughput", "100",
                                                       "--rebalance-every", "1", "--drain-timeout", "3"])
    assert span_of(mover) == "0:2"
    local = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = torch.tensor([[5, 17, 29, 3, 11, 42]])
    expected = local.generate(ids, max_new_tokens=24, do_sample=False)
    moved = threading.Event()

    def newcomer_then_move() -> None:
        swarm.start_peer("0:2", name="pinned", extra=["--throughput", "100"])
        mover.wait_line("peer moved:", 120)
        moved.set()

    config = ClientConfig(route_wait_s=60, route_tolerance=0.0)
    with AutoDistributedModelForCausalLM.from_pretrained(str(path), initial_peers=[bootstrap], dtype=torch.float32,
                                                         config=config) as model:
        out = model.generate(ids, max_new_tokens=24, do_sample=False, streamer=PauseAt(8, newcomer_then_move))
    assert moved.is_set()
    assert span_of(mover) == "2:4"
    assert torch.equal(out, expected)


def test_overlapping_spans_chain_through_parts_of_them(checkpoints, swarm_of, bootstrap):
    """Peers on 0:5 and 3:8 never meet at a boundary: the route runs part of one (or both) of them, each peer
    runs only the layers its session asked for, and the text equals local transformers'."""
    path = checkpoints("qwen3", num_layers=8)
    swarm: LocalSwarm = swarm_of(path, ["0:5", "3:8"])
    local = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = torch.tensor([[7, 3, 19, 44, 2, 9, 30]])
    expected = local.generate(ids, max_new_tokens=12, do_sample=False)
    config = ClientConfig(route_wait_s=60, route_tolerance=0.0)
    with AutoDistributedModelForCausalLM.from_pretrained(str(path), initial_peers=[bootstrap], dtype=torch.float32,
                                                         config=config) as model:
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
        hops = [(h.start, h.end) for h in model.last_route.hops]
    assert torch.equal(out, expected)
    assert len(hops) == 2 and hops[0][0] == 0 and hops[0][1] == hops[1][0] and hops[1][1] == 8
    assert hops != [(0, 5), (3, 8)] and hops[0][1] in (3, 5)
    logs = "".join(p.log_path.read_text() for p in swarm.peers)
    assert f"layers {hops[0][0]}:{hops[0][1]}," in logs and f"layers {hops[1][0]}:{hops[1][1]}," in logs
