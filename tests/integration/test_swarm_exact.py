"""Greedy generation through real peer processes equals local transformers, token for token.

Every case uses uneven split points (even ones hide layer-index bugs) and 2 or 3 peers; mistral's sliding
window (8) is shorter than the 12 + 32 tokens generated, so the window really slides.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from routing.config import ClientConfig
from swarm import AutoDistributedModelForCausalLM

CASES = [
    ("llama", 5, ["0:2", "2:5"]),
    ("mistral", 5, ["0:1", "1:4", "4:5"]),
    ("qwen2", 5, ["0:4", "4:5"]),
    ("qwen3", 5, ["0:3", "3:4", "4:5"]),
]


def prompt_ids(vocab: int, length: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, vocab, (1, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("arch", "layers", "spans"), CASES, ids=[c[0] for c in CASES])
def test_greedy_generation_matches_local(arch, layers, spans, checkpoints, swarm_of, bootstrap):
    """32 greedy tokens through the swarm equal local generate(do_sample=False); prompt logits agree."""
    path = checkpoints(arch, num_layers=layers)
    swarm_of(path, spans)
    local = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = prompt_ids(local.config.vocab_size)
    expected = local.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False)
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=60)
    ) as model:
        got = model.generate(ids, max_new_tokens=32, do_sample=False)
        assert [(h.start, h.end) for h in model.last_route.hops] == [
            tuple(map(int, s.split(":"))) for s in spans
        ]
        logits = model(ids).logits
    assert got.tolist() == expected.tolist()
    with torch.no_grad():
        ref = local(ids).logits
    assert torch.allclose(logits, ref, atol=1e-4, rtol=0), float((logits - ref).abs().max())


def test_batch_and_sampling_match_local(checkpoints, swarm_of, bootstrap):
    """A batch of 2 prompts (greedy, and with an EOS that ends one row early), seeded sampling, and beam search
    give the same tokens as local transformers."""
    path = checkpoints("llama", num_layers=5)
    swarm_of(path, ["0:3", "3:5"])
    local = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = torch.cat([prompt_ids(local.config.vocab_size, seed=1), prompt_ids(local.config.vocab_size, seed=2)])
    with AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], config=ClientConfig(route_wait_s=60)
    ) as model:
        got = model.generate(ids, max_new_tokens=16, do_sample=False)
        expected = local.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False)
        assert got.tolist() == expected.tolist()
        eos = int(got[0, ids.shape[1] + 4])  # row 0 stops at its 5th new token; row 1 is padded after it ends
        kw_eos = dict(max_new_tokens=16, do_sample=False, eos_token_id=eos, pad_token_id=0)
        stopped = model.generate(ids, **kw_eos)
        assert stopped.tolist() == local.generate(ids, attention_mask=torch.ones_like(ids), **kw_eos).tolist()
        assert stopped.shape[1] <= got.shape[1] and int(stopped[0, ids.shape[1] + 4]) == eos
        kw = dict(max_new_tokens=16, do_sample=True, temperature=0.8, top_k=20, top_p=0.9)
        torch.manual_seed(7)
        sampled = model.generate(ids[:1], **kw)
        torch.manual_seed(7)
        sampled_local = local.generate(ids[:1], attention_mask=torch.ones_like(ids[:1]), **kw)
        assert sampled.tolist() == sampled_local.tolist()
        # beam search: transformers' own, the peers reordering the session's rows between steps
        kw_beam = dict(max_new_tokens=12, num_beams=3, num_return_sequences=2)
        beams = model.generate(ids, **kw_beam)
        assert beams.tolist() == local.generate(ids, attention_mask=torch.ones_like(ids), **kw_beam).tolist()
