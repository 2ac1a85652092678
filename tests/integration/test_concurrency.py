"""Many users at once through real peers: batched passes, exact outputs, admission that says busy.

Eight sessions with prompts of different lengths run at once (one thread each, one model object) through 2
real peer processes; each output must equal that prompt generated alone, and the peers must report that
steps really shared forward passes. A padded batch equals its prompts one by one. A peer whose KV budget
holds fewer sessions than are opened answers busy, never crashes, gets its memory back after close, and a
client whose first choice is busy is served by a replica.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from routing.config import ClientConfig
from swarm import AutoDistributedModelForCausalLM
from swarm.net.transport import open_channel

LENGTHS = [3, 5, 7, 9, 11, 13, 15, 17]
NEW = 12


async def _ping(addr: str) -> dict:
    ch = await open_channel(addr)
    try:
        await ch.send({"type": "ping", "id": 1})
        frame = await ch.recv()
        return dict(frame.header)
    finally:
        await ch.close()


def ping(addr: str) -> dict:
    return asyncio.run(_ping(addr))


def prompts(vocab: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return [torch.randint(3, vocab, (1, n), generator=gen) for n in LENGTHS]


def generate_all_at_once(model, ids: list[torch.Tensor]) -> list[list[int]]:
    out: list[list[int] | None] = [None] * len(ids)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(ids))

    def one(i: int) -> None:
        try:
            barrier.wait()
            out[i] = model.generate(ids[i], max_new_tokens=NEW, do_sample=False)[0].tolist()
        except BaseException as e:  # noqa: BLE001 - re-raised below in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(ids))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    if errors:
        raise errors[0]
    return out


@pytest.mark.parametrize(("arch", "spans"), [("llama", ["0:2", "2:5"]), ("mistral", ["0:3", "3:5"])])
def test_eight_sessions_at_once_equal_their_solo_outputs(arch, spans, checkpoints, swarm_of, bootstrap):
    """8 concurrent sessions (prompts of 3..17 tokens; mistral's window 8 slides) through 2 peers: each
    output equals its solo output, and the peers ran some steps batched."""
    path = checkpoints(arch, num_layers=5)
    swarm = swarm_of(path, spans)
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=60)
    ) as model:
        ids = prompts(model.config.vocab_size)
        solo = [model.generate(x, max_new_tokens=NEW, do_sample=False)[0].tolist() for x in ids]
        together = generate_all_at_once(model, ids)
    assert together == solo
    batched = [ping(peer.data_addr)["batched_steps"] for peer in swarm.peers]
    assert all(b > 0 for b in batched), batched


def test_a_padded_batch_equals_its_prompts_one_by_one(checkpoints, swarm_of, bootstrap):
    """A left-padded batch of prompts of 5, 9 and 13 tokens gives, row by row, each prompt's own tokens."""
    path = checkpoints("llama", num_layers=5)
    swarm_of(path, ["0:2", "2:5"])
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=60)
    ) as model:
        model.generation_config.eos_token_id = None
        ids = [x for x in prompts(model.config.vocab_size) if x.shape[1] in (5, 9, 13)]
        width = max(x.shape[1] for x in ids)
        batch = torch.zeros(len(ids), width, dtype=torch.long)
        mask = torch.zeros(len(ids), width, dtype=torch.long)
        for i, x in enumerate(ids):
            batch[i, width - x.shape[1]:] = x[0]
            mask[i, width - x.shape[1]:] = 1
        out = model.generate(batch, attention_mask=mask, max_new_tokens=NEW, do_sample=False, pad_token_id=0)
        for i, x in enumerate(ids):
            alone = model.generate(x, max_new_tokens=NEW, do_sample=False)
            assert out[i, width:].tolist() == alone[0, x.shape[1]:].tolist()


def test_admission_says_busy_and_a_replica_serves(checkpoints, swarm_of, bootstrap):
    """Two replicas of 0:5 whose KV budget holds 2 sessions of 64 tokens each: 4 sessions open (2 per
    replica), a 5th waits busy and fails with SwarmBusyError; nothing crashed, and after close every
    peer's free KV is back to its full budget."""
    from swarm.errors import SwarmBusyError

    path = checkpoints("llama", num_layers=5)
    swarm = swarm_of(path, ["0:5", "0:5"], extra=["--kv-reserve-tokens", "128", "--max-client-share", "1"])
    full = [ping(p.data_addr)["free_cache_tokens"] for p in swarm.peers]
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=60, busy_wait_s=2.0)
    ) as model:
        sessions = []
        try:
            for _ in range(4):
                sessions.append(model.inference_session(max_length=64))
            used = [s.route.hops[0].peer_id for s in sessions]
            assert len(set(used)) == 2 and all(used.count(p) == 2 for p in used)  # each replica holds 2
            with pytest.raises(SwarmBusyError):
                model.inference_session(max_length=64)
        finally:
            for s in sessions:
                s.close()
    assert [p.popen.poll() for p in swarm.peers] == [None, None]
    assert [ping(p.data_addr)["free_cache_tokens"] for p in swarm.peers] == full
