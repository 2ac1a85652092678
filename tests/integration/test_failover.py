"""Failover with real processes: a peer dies (kill -9) or leaves (SIGTERM) mid-generation and the text does
not change; a restarted peer (same identity) is used again; with no replica left the client gets a typed
error naming the layers, without hanging, and the other peers free the session."""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from routing.config import ClientConfig
from swarm import AutoDistributedModelForCausalLM
from swarm.errors import MissingLayersError
from swarm.launch import LocalSwarm, ManagedProcess
from swarm.net.transport import open_channel
from tests.integration.conftest import CHILD_ENV, PEER_ARGS

SPANS = ["0:3", "0:3", "3:5", "3:5"]  # two replicas of each (uneven) half of a 5-layer model
NEW_TOKENS = 64
CLIENT = ClientConfig(route_wait_s=30, route_tolerance=0.0)  # deterministic: the route is predicted first
SAMPLING = dict(max_new_tokens=NEW_TOKENS, do_sample=True, temperature=0.9, top_k=20)


class KillAt:
    """A generate() streamer that runs ``action`` when the given new token arrives."""

    def __init__(self, step: int, action) -> None:
        self.step, self.action, self.seen = step, action, -1

    def put(self, _value) -> None:
        self.seen += 1  # -1: the prompt; 0.. the new tokens
        if self.seen == self.step:
            self.action()

    def end(self) -> None:
        pass


@pytest.fixture
def replicated(checkpoints, bootstrap, tmp_path: Path):
    path = checkpoints("llama", num_layers=5)
    swarm = LocalSwarm(str(path), [], peer_args=PEER_ARGS, log_dir=tmp_path, env=CHILD_ENV,
                       bootstrap_address=bootstrap, ready_timeout_s=120)
    identities = [tmp_path / f"peer{i}.key" for i in range(len(SPANS))]
    try:
        procs = [swarm.start_peer(span, name=f"peer{i}", wait=False, extra=["--identity", str(identities[i])])
                 for i, span in enumerate(SPANS)]
        for proc in procs:
            proc.wait_line("peer ready:", 120)
        local = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        ids = torch.randint(3, local.config.vocab_size, (1, 10), generator=torch.Generator().manual_seed(0))
        expected = local.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                  do_sample=False)
        yield path, swarm, procs, identities, ids, expected
    finally:
        swarm.stop()


def by_addr(procs: list[ManagedProcess], addr: str) -> int:
    return next(i for i, p in enumerate(procs) if p.popen.poll() is None and p.data_addr == addr)


def test_kill_9_at_a_random_step_keeps_the_text(replicated, bootstrap):
    """For 10 seeds: kill -9 a random hop of the route at a random step; the output equals the run without
    failure (greedy; the last seed samples with a fixed torch seed). The killed peer is restarted with its identity, rejoins under the same peer id, and serves
    again once its replica is gone."""
    path, swarm, procs, identities, ids, expected = replicated
    local = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    for seed in range(10):
        rng = random.Random(seed)
        kill_step = rng.randrange(1, NEW_TOKENS - 1)
        with AutoDistributedModelForCausalLM.from_pretrained(str(path), initial_peers=[bootstrap],
                                                             config=CLIENT) as model:
            route = model.client.run(model.client.wait_route())
            victim = by_addr(procs, route.hops[rng.randrange(len(route.hops))].addr)

            def kill(victim: int = victim) -> None:
                procs[victim].popen.send_signal(signal.SIGKILL)
                procs[victim].popen.wait(timeout=10)

            if seed == 9:  # the last seed samples: with a fixed torch seed the text is the same too
                torch.manual_seed(seed)
                want = local.generate(ids, attention_mask=torch.ones_like(ids), **SAMPLING)
                torch.manual_seed(seed)
                out = model.generate(ids, streamer=KillAt(kill_step, kill), **SAMPLING)
            else:
                want = expected
                out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False,
                                     streamer=KillAt(kill_step, kill))
            assert out.tolist() == want.tolist(), f"seed {seed}: kill at step {kill_step}"
            assert procs[victim].data_addr not in model.last_route.describe()
        old_id = procs[victim].peer_id
        procs[victim] = swarm.start_peer(SPANS[victim], name=f"peer{victim}-restart{seed}",
                                         extra=["--identity", str(identities[victim])])
        assert procs[victim].peer_id == old_id

    # the last restarted peer is used again once its replica is gone
    restarted = victim
    replica = next(i for i, s in enumerate(SPANS) if s == SPANS[restarted] and i != restarted)
    procs[replica].kill()
    with AutoDistributedModelForCausalLM.from_pretrained(str(path), initial_peers=[bootstrap],
                                                         config=CLIENT) as model:
        out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        assert procs[restarted].data_addr in model.last_route.describe()
    assert out.tolist() == expected.tolist()


def test_sigterm_mid_generation_moves_the_session_without_error(replicated, bootstrap):
    """SIGTERM on a hop: it drains (clients move at the next step), exits 0, and the text is unchanged."""
    path, swarm, procs, identities, ids, expected = replicated
    with AutoDistributedModelForCausalLM.from_pretrained(str(path), initial_peers=[bootstrap],
                                                         config=CLIENT) as model:
        route = model.client.run(model.client.wait_route())
        victim = by_addr(procs, route.hops[1].addr)
        out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False,
                             streamer=KillAt(20, lambda: procs[victim].popen.send_signal(signal.SIGTERM)))
        assert procs[victim].data_addr not in model.last_route.describe()
    assert out.tolist() == expected.tolist()
    assert procs[victim].popen.wait(timeout=60) == 0


def test_no_replica_left_raises_a_typed_error_and_frees_the_session(replicated, bootstrap):
    """Both replicas of layers 3..4 die mid-generation: MissingLayersError names them within the bounded
    wait, and the surviving hop holds no session afterwards."""
    path, swarm, procs, identities, ids, expected = replicated

    def kill_second_half() -> None:
        for i, span in enumerate(SPANS):
            if span == "3:5":
                procs[i].popen.send_signal(signal.SIGKILL)
        for i, span in enumerate(SPANS):
            if span == "3:5":
                procs[i].popen.wait(timeout=10)

    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=2)
    ) as model:
        with pytest.raises(MissingLayersError) as err:
            model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, streamer=KillAt(10, kill_second_half))
        assert err.value.missing == [(3, 5)]

    async def loads() -> list[int]:
        result = []
        for i, span in enumerate(SPANS):
            if span == "0:3":
                ch = await open_channel(procs[i].data_addr)
                await ch.send({"type": "ping", "id": 1})
                frame = await asyncio.wait_for(ch.recv(), 10)
                await ch.close()
                result.append(frame.header["load"])
        return result

    assert asyncio.run(loads()) == [0, 0]
    assert all(procs[i].popen.poll() is None for i, s in enumerate(SPANS) if s == "0:3")



def test_speculative_decoding_through_a_kill_keeps_the_text(replicated, bootstrap):
    """generate(assistant_model=...) with a perfect draft (local transformers' model) and with the model's own
    first layer: kill -9 the first hop mid-generation in one run and the last hop in the other. The hops cut
    their caches back after each round, the replacement is rebuilt to the kept positions, and the text equals
    plain greedy decoding."""
    from routing.speculative import EarlyExitDraft

    path, swarm, procs, identities, ids, expected = replicated
    local = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    for hop, at, early_exit in ((0, 9, False), (1, 30, True)):
        with AutoDistributedModelForCausalLM.from_pretrained(str(path), initial_peers=[bootstrap],
                                                             config=CLIENT) as model:
            route = model.client.run(model.client.wait_route())
            victim = by_addr(procs, route.hops[hop].addr)

            def kill(victim: int = victim) -> None:
                procs[victim].popen.send_signal(signal.SIGKILL)
                procs[victim].popen.wait(timeout=10)

            draft = EarlyExitDraft.load(model, layers=1) if early_exit else local
            out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, assistant_model=draft,
                                 streamer=KillAt(at, kill))
            assert out.tolist() == expected.tolist(), f"hop {hop} killed at token {at}"
            assert procs[victim].data_addr not in model.last_route.describe()


def test_a_hop_killed_before_a_chunked_prefill_sends_it_to_a_new_route(replicated, bootstrap):
    """The session is open on both hops when the last one is killed; the prefill then goes as chunks into a
    dead next hop, the route is opened again, and the prefill and decoding give local transformers' tokens."""
    path, swarm, procs, identities, ids, expected = replicated

    config = ClientConfig(route_wait_s=30, route_tolerance=0.0, prefill_chunk_tokens=3,
                          adapt_prefill_chunks=False)
    with (AutoDistributedModelForCausalLM.from_pretrained(str(path), initial_peers=[bootstrap],
                                                          config=config) as model,
          model.inference_session(ids.shape[1] + 4) as session):
        victim = by_addr(procs, session.route.hops[1].addr)
        procs[victim].popen.send_signal(signal.SIGKILL)
        procs[victim].popen.wait(timeout=10)
        hidden = session.step(model.head.embed(ids), keep=1)
        assert session.session.failovers == 1
        assert session.session.step_index == 1  # 4 chunks went out; after the failure it went in one piece
        assert procs[victim].data_addr not in session.route.describe()
        tokens = []
        for _ in range(4):
            token = model.head.logits(hidden)[:, -1].argmax(-1)
            tokens.append(int(token))
            hidden = session.step(model.head.embed(token[:, None], session.position))
    assert tokens == expected[0, ids.shape[1]:ids.shape[1] + 4].tolist()
