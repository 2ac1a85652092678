"""generate()'s length defaults and global defaults equal local transformers': the real client
(AutoDistributedModelForCausalLM over a SwarmCore) against real PeerServers running real spans of a tiny
llama checkpoint, over the in-memory network (no sockets, no DHT processes).

transformers 5.x, with no max_new_tokens/max_length given anywhere (call, generation_config, checkpoint):
20 *new* tokens, capped at max_position_embeddings, with a UserWarning; a max_length from the caller or the
checkpoint is the total length; a prompt at or over it is a ValueError. Sampling uses the global defaults
(top_k 50) the checkpoint does not override.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, GenerationConfig

from models.source import resolve_model
from models.span import ClientHead, SpanModel
from routing.config import ClientConfig
from routing.model import AutoDistributedModelForCausalLM, load_generation_config
from routing.swarm_client import SwarmCore
from tests.conftest_models import make_tiny_checkpoint
from tests.sim.memnet import FakeDiscovery, MemNetwork, add_peer

PROMPT_LEN = 12
MAX_POSITIONS = 256  # tests.conftest_models' tiny configs


class LoopCore(SwarmCore):
    """A SwarmCore on its own loop thread with SwarmClient's run()/close(), over the in-memory network."""

    def __init__(self, net: MemNetwork, dht: FakeDiscovery, num_layers: int) -> None:
        self.net = net
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sim-client", daemon=True)
        self.thread.start()
        super().__init__("sim", num_layers, dht, ClientConfig(route_wait_s=1.0), connect=net.connector("client"))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def close(self) -> None:
        self.run(self._aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    async def _aclose(self) -> None:
        await self.aclose()
        for server in self.net.servers.values():
            await server.stop()
        await self.net.shutdown()
        current = asyncio.current_task()
        leftovers = [t for t in asyncio.all_tasks() if t is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)


@pytest.fixture(scope="module")
def swarm_and_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """(the swarm model over spans 0:1 and 1:4, local transformers' model of the same checkpoint)."""
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("gen"), "llama", num_layers=4)
    ckpt = resolve_model(str(path))
    net, dht = MemNetwork(), FakeDiscovery()
    core = LoopCore(net, dht, ckpt.num_layers)
    for name, (a, b) in (("p0", (0, 1)), ("p1", (1, 4))):
        span = SpanModel.load(ckpt, a, b, dtype=torch.float32, progress=False)
        core.run(add_peer(net, dht, name, a, b, span=span))
    model = AutoDistributedModelForCausalLM(ckpt, ClientHead.load(ckpt), core, load_generation_config(ckpt))
    local = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    assert model.generation_config.max_length is None and local.generation_config.max_length is None
    try:
        yield model, local
    finally:
        model.close()


def prompt(length: int = PROMPT_LEN, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, 128, (1, length), generator=torch.Generator().manual_seed(seed))  # ids: [1, T]


def local_generate(local: Any, ids: torch.Tensor, **kw: Any) -> torch.Tensor:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return local.generate(ids, attention_mask=torch.ones_like(ids), **kw)


def seeded_pair(model: Any, local: Any, ids: torch.Tensor, seed: int, **kw: Any) -> tuple[Any, Any]:
    """(local transformers' generate(), the swarm's), each from torch's global generator seeded with ``seed``."""
    torch.manual_seed(seed)
    want = local_generate(local, ids, **kw)
    torch.manual_seed(seed)
    return want, model.generate(ids, **kw)


def with_generation_config(model: Any, local: Any, **fields: Any) -> tuple[Any, Any]:
    """Copies of both models whose checkpoint generation config also sets ``fields``."""
    gc = GenerationConfig.from_dict({**model.generation_config.to_dict(), **fields})
    swarm_copy = AutoDistributedModelForCausalLM(model.checkpoint, model.head, model.client, gc)
    local_copy = type(local)(local.config)
    local_copy.load_state_dict(local.state_dict())
    local_copy.eval().generation_config = GenerationConfig.from_dict(gc.to_dict())
    return swarm_copy, local_copy


def test_no_length_generates_20_new_tokens_like_transformers(swarm_and_local) -> None:
    """generate(ids) with no length anywhere: transformers' 20 new tokens and its warning, the same ids."""
    model, local = swarm_and_local
    ids = prompt()
    with pytest.warns(UserWarning, match=r"model-agnostic default `max_length` \(=32\)"):
        got = model.generate(ids)
    expected = local_generate(local, ids)
    assert expected.shape[1] == PROMPT_LEN + 20
    assert got.tolist() == expected.tolist()


def test_default_length_is_capped_at_the_position_table(swarm_and_local) -> None:
    """A prompt near max_position_embeddings gets only the new tokens that fit, as in transformers."""
    model, local = swarm_and_local
    ids = prompt(MAX_POSITIONS - 5, seed=2)
    with pytest.warns(UserWarning, match="default `max_length`"):
        got = model.generate(ids)
    expected = local_generate(local, ids)
    assert expected.shape[1] == MAX_POSITIONS
    assert got.tolist() == expected.tolist()


def test_checkpoint_max_length_is_the_total_length(swarm_and_local) -> None:
    """A max_length in the checkpoint's generation config counts the prompt (no warning), as in transformers."""
    model, local = swarm_and_local
    swarm_copy, local_copy = with_generation_config(model, local, max_length=PROMPT_LEN + 5)
    ids = prompt(seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = swarm_copy.generate(ids)
    expected = local_generate(local_copy, ids)
    assert expected.shape[1] == PROMPT_LEN + 5
    assert got.tolist() == expected.tolist()
    # max_new_tokens in the call wins over the checkpoint's max_length
    assert swarm_copy.generate(ids, max_new_tokens=7).tolist() == local_generate(
        local_copy, ids, max_new_tokens=7).tolist()


@pytest.mark.parametrize(
    ("length", "kwargs", "gc_fields"),
    [
        (PROMPT_LEN, {"max_length": PROMPT_LEN}, {}),
        (PROMPT_LEN, {"max_length": 5}, {}),
        (PROMPT_LEN, {}, {"max_length": PROMPT_LEN - 2}),  # the checkpoint's max_length
        (MAX_POSITIONS, {}, {}),  # the default, capped at the position table
    ],
    ids=["max_length=prompt", "max_length<prompt", "checkpoint-max_length<prompt", "prompt=position-table"],
)
def test_prompt_at_or_over_max_length_is_a_value_error(swarm_and_local, length, kwargs, gc_fields) -> None:
    """As in transformers: ValueError, naming the prompt length and max_length and what to do."""
    model, local = swarm_and_local
    if gc_fields:
        model, local = with_generation_config(model, local, **gc_fields)
    ids = prompt(length, seed=4)
    with pytest.raises(ValueError, match=f"Input length of input_ids is {length}, but `max_length` is set to"):
        local_generate(local, ids, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=f"Input length of input_ids is {length}, but `max_length` is set to "
                                             r"\d+: nothing is left to generate. .*set `max_new_tokens`"):
            model.generate(ids, **kwargs)


def test_max_new_tokens_zero_is_a_value_error(swarm_and_local) -> None:
    model, local = swarm_and_local
    ids = prompt()
    with pytest.raises(ValueError, match="`max_new_tokens` must be greater than 0"):
        local_generate(local, ids, max_new_tokens=0)
    with pytest.raises(ValueError, match="`max_new_tokens` must be greater than 0"):
        model.generate(ids, max_new_tokens=0)


def test_sampling_uses_transformers_global_defaults(swarm_and_local) -> None:
    """do_sample=True without top_k samples from transformers' default top-50, like local generate()."""
    model, local = swarm_and_local
    ids = prompt(seed=6)
    torch.manual_seed(11)
    got = model.generate(ids, do_sample=True, max_new_tokens=12)
    torch.manual_seed(11)
    expected = local_generate(local, ids, do_sample=True, max_new_tokens=12)
    assert got.tolist() == expected.tolist()


# ---- batches of prompts of different lengths, and many callers at once ----------------------------------------

PAD = 0
LENGTHS = (5, 9, 13)


def left_padded(prompts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) [B, max length] with PAD on the left, as a tokenizer with
    padding_side="left" makes them."""
    width = max(p.shape[1] for p in prompts)
    ids = torch.full((len(prompts), width), PAD, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - p.shape[1]:] = p[0]
        mask[i, width - p.shape[1]:] = 1
    return ids, mask


def test_left_padded_batch_equals_each_prompt_alone_and_transformers(swarm_and_local) -> None:
    """Prompts of 5, 9 and 13 tokens, left-padded into one batch: each row's new tokens equal that prompt
    generated alone, the output has transformers' layout (input ids with pads, then the new tokens), and it
    equals local transformers' padded-batch generate(); with an EOS that ends one row early, that row is padded
    with pad_token_id and the result still equals transformers'."""
    model, local = swarm_and_local
    prompts = [prompt(n, seed=20 + n) for n in LENGTHS]
    ids, mask = left_padded(prompts)
    kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=PAD)
    got = model.generate(ids, attention_mask=mask, **kw)
    assert got.shape == (3, 13 + 8)
    assert got[:, :13].tolist() == ids.tolist()
    for i, p in enumerate(prompts):
        alone = model.generate(p, **kw)
        assert got[i, 13:].tolist() == alone[0, p.shape[1]:].tolist(), f"row {i}"
    with torch.no_grad():
        expected = local.generate(ids, attention_mask=mask, **kw)
    assert got.tolist() == expected.tolist()

    eos = int(got[1, 13 + 2])  # row 1 ends at its third new token
    stopped = model.generate(ids, attention_mask=mask, eos_token_id=eos, **kw)
    with torch.no_grad():
        assert stopped.tolist() == local.generate(ids, attention_mask=mask, eos_token_id=eos, **kw).tolist()
    assert stopped[1, 13 + 3:].eq(PAD).all() and int(stopped[1, 13 + 2]) == eos


def test_right_padding_continues_each_row_from_its_last_real_token(swarm_and_local, caplog) -> None:
    """Right padding (transformers warns and continues from the pad column): each row is continued from its
    own last real token, its new tokens follow the input as given, and a warning says so."""
    model, _ = swarm_and_local
    prompts = [prompt(n, seed=30 + n) for n in (6, 10)]
    ids = torch.full((2, 10), PAD, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, :p.shape[1]], mask[i, :p.shape[1]] = p[0], 1
    kw = dict(max_new_tokens=5, do_sample=False, pad_token_id=PAD)
    with caplog.at_level("WARNING", logger="molink.client"):
        got = model.generate(ids, attention_mask=mask, **kw)
    assert "right padding detected" in caplog.text
    assert got[:, :10].tolist() == ids.tolist()
    for i, p in enumerate(prompts):
        assert got[i, 10:].tolist() == model.generate(p, **kw)[0, p.shape[1]:].tolist()


def test_seeded_sampling_of_a_padded_batch_is_reproducible(swarm_and_local) -> None:
    """Rows sample from generators seeded from torch's global one: the same seed gives the same tokens."""
    model, _ = swarm_and_local
    ids, mask = left_padded([prompt(n, seed=40 + n) for n in LENGTHS])
    kw = dict(max_new_tokens=6, do_sample=True, pad_token_id=PAD)
    torch.manual_seed(5)
    first = model.generate(ids, attention_mask=mask, **kw)
    torch.manual_seed(5)
    assert model.generate(ids, attention_mask=mask, **kw).tolist() == first.tolist()


def test_a_streamer_with_a_padded_batch_is_refused(swarm_and_local) -> None:
    """Rows of a padded batch advance independently, so there is no per-step batch to stream."""
    model, _ = swarm_and_local
    ids, mask = left_padded([prompt(n, seed=50 + n) for n in (4, 7)])

    class Sink:
        def put(self, value: Any) -> None: ...
        def end(self) -> None: ...

    with pytest.raises(ValueError, match="streamer"):
        model.generate(ids, attention_mask=mask, max_new_tokens=3, pad_token_id=PAD, streamer=Sink())


def test_micro_batches_give_the_batch_session_result(swarm_and_local) -> None:
    """micro_batch_rows=2 runs a batch of 5 equal-length prompts as 3 concurrent sessions: greedy output equals
    the one-session batch's."""
    import dataclasses

    model, _ = swarm_and_local
    ids = torch.cat([prompt(8, seed=60 + i) for i in range(5)])
    kw = dict(max_new_tokens=6, do_sample=False)
    whole = model.generate(ids, **kw)
    config = model.client.config
    model.client.config = dataclasses.replace(config, micro_batch_rows=2)
    try:
        assert model.generate(ids, **kw).tolist() == whole.tolist()
    finally:
        model.client.config = config


def test_threads_calling_generate_on_one_model_get_their_own_outputs(swarm_and_local) -> None:
    """4 threads call generate() on one model at the same moment (one of them with a padded batch): each gets
    what it gets alone, and each thread's last_route is its own call's."""
    model, _ = swarm_and_local
    kw = dict(max_new_tokens=10, do_sample=False, pad_token_id=PAD)
    calls: list[tuple[torch.Tensor, torch.Tensor | None]] = [(prompt(n, seed=70 + n), None) for n in (6, 11, 15)]
    calls.append(left_padded([prompt(n, seed=80 + n) for n in (4, 12)]))
    alone = [model.generate(ids, attention_mask=mask, **kw) for ids, mask in calls]
    barrier = threading.Barrier(len(calls))
    results: dict[int, Any] = {}

    def worker(i: int) -> None:
        ids, mask = calls[i]
        barrier.wait()
        try:
            results[i] = (model.generate(ids, attention_mask=mask, **kw), model.last_route)
        except BaseException as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i, want in enumerate(alone):
        assert not isinstance(results[i], BaseException), results[i]
        out, route = results[i]
        assert out.tolist() == want.tolist(), f"call {i}"
        assert route is not None and [(h.start, h.end) for h in route.hops] == [(0, 1), (1, 4)]
    assert model.last_route is not None  # this thread's own calls above


class CountingSteps:
    """Counts the steps sessions of ``model`` send (wraps InferenceSession.step for one test)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from routing.session import InferenceSession

        self.steps = 0
        self.rewinds = 0
        step, rewind = InferenceSession.step, InferenceSession.rewind

        async def counted(session: Any, *args: Any, **kw: Any) -> Any:
            self.steps += 1
            return await step(session, *args, **kw)

        def counted_rewind(session: Any, position: int) -> None:
            self.rewinds += position < session.position
            rewind(session, position)

        monkeypatch.setattr(InferenceSession, "step", counted)
        monkeypatch.setattr(InferenceSession, "rewind", counted_rewind)


def test_speculative_decoding_gives_plain_greedy_tokens_with_any_draft(swarm_and_local, monkeypatch,
                                                                       tmp_path) -> None:
    """A perfect draft (a local copy of the model), the model's own first layer, an unrelated model of the
    same vocabulary and prompt lookup (no model): the tokens equal local transformers' greedy ones, a good draft needs fewer steps than
    tokens, and a poor one makes the hops cut their caches back (rewinds) without changing the text."""
    from routing.speculative import EarlyExitDraft, HFDraft

    model, local = swarm_and_local
    new = 24
    unrelated = AutoModelForCausalLM.from_pretrained(
        make_tiny_checkpoint(tmp_path, "llama", num_layers=2, seed=7), dtype=torch.float32).eval()
    # the model drafts take no time by their clocks: how many tokens a round guesses then follows acceptance
    # alone, not how a busy machine timed a local copy of the model against an in-memory swarm (a perfect draft
    # timed as slow as a round guessed too little, and took 19 steps for 24 tokens)
    drafts = {"perfect": HFDraft(local, clock=lambda: 0.0), "early exit": EarlyExitDraft.load(model, layers=1),
              "unrelated": HFDraft(unrelated, clock=lambda: 0.0)}
    for seed in (1, 2):
        ids = prompt(seed=seed)
        want = local_generate(local, ids, max_new_tokens=new, do_sample=False)
        for name, draft in drafts.items():
            counter = CountingSteps(monkeypatch)
            got = model.generate(ids, max_new_tokens=new, do_sample=False, assistant_model=draft)
            assert got.tolist() == want.tolist(), f"{name} draft, prompt {seed}"
            if name == "perfect":
                assert counter.steps < new // 2, counter.steps
            if name == "unrelated":
                assert counter.rewinds > 0
        repeating = torch.cat([ids, ids], dim=1)  # prompt lookup finds the text in itself
        want = local_generate(local, repeating, max_new_tokens=new, do_sample=False)
        got = model.generate(repeating, max_new_tokens=new, do_sample=False, prompt_lookup_num_tokens=4)
        assert got.tolist() == want.tolist(), f"prompt lookup, prompt {seed}"


def test_speculative_decoding_keeps_repetition_penalty_and_eos(swarm_and_local) -> None:
    model, local = swarm_and_local
    ids = prompt(seed=3)
    kw = dict(max_new_tokens=16, do_sample=False, repetition_penalty=1.3)
    want = local_generate(local, ids, **kw)
    assert model.generate(ids, assistant_model=local, **kw).tolist() == want.tolist()
    eos = int(want[0, PROMPT_LEN + 5])  # the sixth new token ends the text
    want = local_generate(local, ids, max_new_tokens=16, do_sample=False, eos_token_id=eos)
    got = model.generate(ids, max_new_tokens=16, do_sample=False, eos_token_id=eos, assistant_model=local)
    assert got.tolist() == want.tolist()


def test_stopping_criteria_and_a_private_generator_work_as_in_transformers(swarm_and_local) -> None:
    """A StoppingCriteria ends the text where transformers' does (its last token kept); sampling from a
    caller's generator repeats with the same seed; stop_strings without a tokenizer is a clear error."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    model, local = swarm_and_local
    ids = prompt(seed=4)
    plain = local_generate(local, ids, max_new_tokens=16, do_sample=False)
    target = int(plain[0, PROMPT_LEN + 4])

    class StopAt(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return input_ids[:, -1] == target

    criteria = StoppingCriteriaList([StopAt()])
    want = local_generate(local, ids, max_new_tokens=16, do_sample=False, stopping_criteria=criteria)
    got = model.generate(ids, max_new_tokens=16, do_sample=False, stopping_criteria=criteria)
    assert got.tolist() == want.tolist() and got.shape[1] < plain.shape[1]
    draws = [model.generate(ids, max_new_tokens=8, do_sample=True, generator=torch.Generator().manual_seed(3))
             for _ in range(2)]
    assert draws[0].tolist() == draws[1].tolist()
    with pytest.raises(ValueError, match="tokenizer"):
        model.generate(ids, max_new_tokens=4, stop_strings=["x"])


def _parity_sets(first: int, eos: int) -> list[dict[str, Any]]:
    """generate() argument sets for the parity table; ``first`` is the prompt's first greedy token, ``eos`` one
    that greedy decoding emits early."""
    sample = dict(do_sample=True)
    return [
        dict(do_sample=False),
        dict(do_sample=False, max_new_tokens=5),
        dict(**sample, temperature=0.7, top_k=10),
        dict(**sample, top_p=0.8),
        dict(do_sample=False, repetition_penalty=1.3),
        dict(do_sample=False, no_repeat_ngram_size=2),
        dict(do_sample=False, eos_token_id=eos, min_new_tokens=10),
        dict(do_sample=False, eos_token_id=eos, min_length=PROMPT_LEN + 8),
        dict(do_sample=False, bad_words_ids=[[first]]),
        dict(do_sample=False, suppress_tokens=[first]),
        dict(do_sample=False, begin_suppress_tokens=[first]),
        dict(**sample, min_p=0.1),
        dict(**sample, typical_p=0.9),
        dict(**sample, epsilon_cutoff=3e-4),
        dict(do_sample=False, sequence_bias={(first,): -10.0}),
        dict(**sample, temperature=0.5, renormalize_logits=True),
        dict(do_sample=False, eos_token_id=eos, forced_eos_token_id=eos),
        dict(do_sample=False, eos_token_id=eos, exponential_decay_length_penalty=(3, 1.5)),
        dict(do_sample=False, eos_token_id=eos, return_dict_in_generate=True),
        dict(do_sample=False, return_dict_in_generate=True, output_scores=True, output_logits=True),
        dict(**sample, top_k=20, return_dict_in_generate=True, output_scores=True),
    ]


def test_generate_parity_table_with_local_transformers(swarm_and_local) -> None:
    """21 argument sets of generate(), greedy and seeded sampling, give local transformers' tokens (and, where
    asked, its scores and logits) through the swarm: the logits processors are transformers' own
    (routing/model.py: logits_processors)."""
    model, local = swarm_and_local
    ids = prompt(seed=6)
    greedy = local_generate(local, ids, max_new_tokens=16, do_sample=False)
    first, eos = int(greedy[0, PROMPT_LEN]), int(greedy[0, PROMPT_LEN + 3])
    for i, kw in enumerate(_parity_sets(first, eos)):
        kw = {"max_new_tokens": 16, **kw}
        want, got = seeded_pair(model, local, ids, 100 + i, **kw)
        if kw.get("return_dict_in_generate"):
            for name in ("scores", "logits"):
                if kw.get(f"output_{name}"):
                    mine, theirs = getattr(got, name), getattr(want, name)
                    assert len(mine) == len(theirs) == 16, f"set {i}: {name}"
                    for a, b in zip(mine, theirs, strict=True):
                        torch.testing.assert_close(a, b, atol=1e-4, rtol=0, msg=f"set {i}: {name}")
                else:
                    assert getattr(got, name) is None
            want, got = want.sequences, got.sequences
        assert got.tolist() == want.tolist(), f"set {i}: {kw}"



def test_beam_search_is_transformers_own_over_the_swarm(swarm_and_local) -> None:
    """num_beams > 1 runs transformers' _beam_search over one session of batch x beams rows whose caches the
    peers reorder (Reorder): sequences (and scores) equal local transformers', for one prompt and a batch."""
    model, local = swarm_and_local
    ids = prompt(seed=6)
    batch = torch.cat([ids, prompt(seed=9)])
    greedy = local_generate(local, ids, max_new_tokens=16, do_sample=False)
    eos = int(greedy[0, PROMPT_LEN + 4])
    sets = [
        (ids, dict(num_beams=3)),
        (batch, dict(num_beams=4, num_return_sequences=2, length_penalty=0.5)),
        (ids, dict(num_beams=3, eos_token_id=eos, early_stopping=True)),
        (ids, dict(num_beams=2, do_sample=True, top_k=20)),
        (ids, dict(num_beams=3, no_repeat_ngram_size=2, return_dict_in_generate=True, output_scores=True)),
    ]
    for i, (x, kw) in enumerate(sets):
        kw = {"max_new_tokens": 12, **kw}
        want, got = seeded_pair(model, local, x, 300 + i, **kw)
        if kw.get("return_dict_in_generate"):
            torch.testing.assert_close(got.sequences_scores, want.sequences_scores, atol=1e-4, rtol=0)
            want, got = want.sequences, got.sequences
        assert got.tolist() == want.tolist(), f"set {i}: {kw}"
    with pytest.raises(ValueError, match="stream"):
        model.generate(ids, max_new_tokens=4, num_beams=2, streamer=object())


def test_max_time_ends_generation_early(swarm_and_local) -> None:
    """max_time (transformers' MaxTimeCriteria): with no time at all, generation stops after its first token."""
    model, _ = swarm_and_local
    ids = prompt(seed=6)
    assert model.generate(ids, max_new_tokens=16, do_sample=False, max_time=0.0).shape[1] == PROMPT_LEN + 1


@pytest.mark.parametrize("when", ["before a reorder", "after a reorder"])
def test_beam_search_survives_a_peer_dying(tmp_path, monkeypatch, when) -> None:
    """The peer serving layers 1:4 dies at the 4th reorder: before it (the reorder fails, the route is opened
    again and rebuilt from the reordered inputs) or just after it (the next step fails over to the spare,
    rebuilt from the first hop's reordered history). The beams are local transformers' all the same."""
    from routing.session import InferenceSession

    path = make_tiny_checkpoint(tmp_path, "llama", num_layers=4)
    ckpt = resolve_model(str(path))
    net, dht = MemNetwork(), FakeDiscovery()
    core = LoopCore(net, dht, ckpt.num_layers)
    peers = {name: core.run(add_peer(net, dht, name, a, b, throughput=tput,
                                     span=SpanModel.load(ckpt, a, b, dtype=torch.float32, progress=False)))
             for name, (a, b), tput in (("p0", (0, 1), 100), ("p1", (1, 4), 1000), ("spare", (1, 4), 10))}
    model = AutoDistributedModelForCausalLM(ckpt, ClientHead.load(ckpt), core, load_generation_config(ckpt))
    real, count = InferenceSession.reorder, [0]

    async def dying(self, rows):
        count[0] += 1
        if count[0] == 4 and when == "before a reorder":
            await net.kill(peers["p1"].addr)
        await real(self, rows)
        if count[0] == 4 and when == "after a reorder":
            await net.kill(peers["p1"].addr)

    monkeypatch.setattr(InferenceSession, "reorder", dying)
    ids = prompt(seed=6)
    try:
        want = local_generate(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), ids,
                              num_beams=3, max_new_tokens=12)
        got = model.generate(ids, num_beams=3, max_new_tokens=12)
        assert count[0] > 4
        assert got.tolist() == want.tolist()
        assert peers["spare"].identity.peer_id in model.last_route.peer_ids
    finally:
        model.close()
