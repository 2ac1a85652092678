"""AutoDistributedModelForCausalLM: a causal LM whose layers run on the swarm.

The client holds the embeddings, the final norm and the LM head (models.span.ClientHead); every
transformer layer runs on peers. ``generate()`` follows transformers' semantics for what it supports:
greedy and sampling with the logits processors transformers' own ``_get_logits_processor`` builds from the
arguments (temperature, top_k, top_p, repetition_penalty, min_new_tokens, no_repeat_ngram_size, bad_words_ids,
...), stopping criteria and stop strings, ``return_dict_in_generate``, max_new_tokens / max_length, EOS
(with pad_token_id filling finished rows), a streamer (put() the prompt, then each new token; end()),
and the checkpoint's generation_config.json as defaults, then transformers' global ones (with no length given
anywhere: 20 new tokens, capped at max_position_embeddings; a prompt at or over max_length is a ValueError).
It returns prompt + new tokens like transformers.

Batches: an equal-length batch runs as one session of batch b (or, with ``ClientConfig.micro_batch_rows``,
as concurrent sessions of at most that many rows; off by default: in the sim a batch-8 forward costs about
what a batch-1 one does, so 8 sessions took 4.5x as long as one). A padded batch (``attention_mask`` with
zeros) runs each row as its own session holding only its real tokens, all rows at once as tasks on the
client's loop (peer A computes row 2 while peer B computes row 1), and is assembled as transformers assembles
a left-padded batch: the input ids as given, then each row's new tokens, rows that ended early padded with
``pad_token_id``. Greedy rows equal each prompt generated alone and transformers' padded batch; sampled rows
use one generator each, seeded from torch's global one (reproducible, but not transformers' batched random
stream). Right padding (transformers warns, then continues from the pad column) continues each row from its
last real token, keeps the same layout (new tokens after the pads), and logs a warning.

Threads: generate() may be called from several threads at once on one model; the calls run concurrently on
the client's one event loop, share its links and failure history, and ``last_route`` is per thread.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import math
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import LogitsProcessorList
from transformers.generation.stopping_criteria import (
    MaxTimeCriteria,
    StoppingCriteriaList,
    StopStringCriteria,
)
from transformers.generation.utils import GenerateDecoderOnlyOutput, GenerationMixin
from transformers.modeling_outputs import CausalLMOutput

from routing.config import ClientConfig
from routing.head_batching import LogitsBatcher
from routing.session import SyncSession
from routing.speculative import Draft, PromptLookupDraft, Rates, as_draft
from routing.swarm_client import SwarmClient

log = logging.getLogger("molink.client")

GENERATE_KWARGS = (
    "max_new_tokens", "max_length", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty",
    "eos_token_id", "pad_token_id", "prompt_lookup_num_tokens", "max_matching_ngram_size", "stop_strings",
    # logits processors, built as transformers builds them
    "min_new_tokens", "min_length", "no_repeat_ngram_size", "bad_words_ids", "suppress_tokens",
    "begin_suppress_tokens", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "sequence_bias",
    "forced_eos_token_id", "exponential_decay_length_penalty", "renormalize_logits", "remove_invalid_values",
    "return_dict_in_generate", "num_beams", "use_cache", "output_scores", "output_logits",
    # beam search (transformers' own _beam_search over the swarm)
    "length_penalty", "early_stopping", "num_return_sequences", "max_time",
)


class AutoDistributedModelForCausalLM:
    """Hugging Face-style causal LM over a molink swarm. Build it with ``from_pretrained``."""

    def __init__(self, ckpt: Any, head: Any, client: SwarmClient, generation_config: GenerationConfig) -> None:
        self.checkpoint = ckpt
        self.head = head
        self.client = client
        self.generation_config = generation_config
        self._local = threading.local()  # per calling thread: last_route
        self._head_batch = LogitsBatcher(head.logits)  # used on the client's loop only

    @property
    def last_route(self) -> Any:
        """The route of the last session opened by a call from this thread (for a padded batch, its first
        row's), after any failover; None before the first. Per thread, so concurrent callers each see their own."""
        return getattr(self._local, "route", None)

    @last_route.setter
    def last_route(self, route: Any) -> None:
        self._local.route = route

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        initial_peers: Sequence[str] = (),
        *,
        dtype: torch.dtype = torch.float32,
        config: ClientConfig | None = None,
        cache_dir: str | None = None,
        **unsupported: Any,
    ) -> AutoDistributedModelForCausalLM:
        """Load the client-side weights of MODEL and join the swarm through ``initial_peers``."""
        if unsupported:
            raise TypeError(f"from_pretrained() got unsupported arguments: {', '.join(sorted(unsupported))}")
        from models.source import resolve_model
        from models.span import ClientHead

        ckpt = resolve_model(model, cache_dir=Path(cache_dir) if cache_dir else None)
        head = ClientHead.load(ckpt, dtype=dtype)
        config = config or ClientConfig()
        if config.tune_linears:  # the LM head runs over as many rows as sessions want logits at once
            from models.kernels import tune_linears

            log.debug("%s", tune_linears(head.lm_head).describe())
        if config.peer_dtype is None:  # keep to the client's precision where the swarm allows
            config = dataclasses.replace(config, peer_dtype=str(dtype).removeprefix("torch."))
        client = SwarmClient(ckpt.model_key, ckpt.num_layers, initial_peers, config, hidden_size=head.hidden_size)
        return cls(ckpt, head, client, load_generation_config(ckpt))

    @property
    def config(self) -> Any:
        return self.checkpoint.config

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def inference_session(self, max_length: int, batch_size: int = 1) -> SyncSession:
        """A session on the swarm holding up to ``max_length`` tokens per row (use as a context manager)."""
        session = self.client.run(self.client.open_session(max_length, batch_size))
        self.last_route = session.route
        return SyncSession(self.client.run, session)

    def forward(self, input_ids: torch.LongTensor, **_: Any) -> CausalLMOutput:
        """Logits for every position of ``input_ids`` [B, T] (one fresh session)."""
        with self.inference_session(input_ids.shape[1], input_ids.shape[0]) as sess:
            out = sess.step(self.head.embed(input_ids))
        return CausalLMOutput(logits=self.head.logits(out))

    __call__ = forward

    def generate(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        streamer: Any = None,
        assistant_model: Any = None,
        stopping_criteria: StoppingCriteriaList | None = None,
        logits_processor: LogitsProcessorList | None = None,
        tokenizer: Any = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> torch.LongTensor:
        """Prompt + new tokens, as transformers' ``generate()`` returns them (see the module docstring).

        ``assistant_model`` (a local transformers causal LM sharing the tokenizer, or a
        ``routing.speculative.Draft`` such as ``EarlyExitDraft.load(model, layers=2)``) or
        ``prompt_lookup_num_tokens=N`` (up to N guesses from the text itself, ``max_matching_ngram_size``): greedy decoding of one
        prompt checks the draft's guesses in one pass per round (routing/speculative.py); the tokens are those
        of plain greedy decoding. Sampling, batches and models whose caches cannot be cut decode plainly.

        ``stopping_criteria`` (transformers' StoppingCriteriaList) and ``stop_strings`` (with ``tokenizer``) end a
        row when they say so, as in transformers: rows that ended are padded while others go on.
        ``generator`` (a molink extension): sampling draws from it instead of torch's global generator, so
        concurrent callers each get a reproducible stream.

        ``attention_mask`` with zeros (a padded batch): each row runs as its own session with only its real
        tokens, all rows at once; the result has transformers' layout for a left-padded batch. Safe to call
        from several threads at once on one model: the calls run concurrently on the client's event loop.
        """
        unknown = set(kwargs) - set(GENERATE_KWARGS)
        if unknown:
            raise TypeError(f"generate() does not support {', '.join(sorted(unknown))} yet")
        lookup, ngram = kwargs.pop("prompt_lookup_num_tokens", None), kwargs.pop("max_matching_ngram_size", None)
        if lookup is not None and assistant_model is not None:
            raise ValueError("give assistant_model or prompt_lookup_num_tokens, not both")
        draft = PromptLookupDraft(int(lookup), int(ngram or 2)) if lookup else (
            None if assistant_model is None else as_draft(assistant_model))
        stopping = stopping_criteria_for(stopping_criteria, kwargs.pop("stop_strings", None), tokenizer)
        prompt_len = input_ids.shape[1]
        gc = prepare_generation_config(self.generation_config, generation_config, kwargs, prompt_len,
                                       getattr(self.config, "max_position_embeddings", None))
        if gc.max_time is not None and (gc.num_beams or 1) == 1:  # beam search builds its own, as transformers
            stopping = StoppingCriteriaList([*(stopping or []), MaxTimeCriteria(max_time=gc.max_time)])
        if (gc.num_return_sequences or 1) > 1 and (gc.num_beams or 1) == 1:
            raise ValueError("num_return_sequences > 1 needs beam search here (num_beams >= num_return_sequences); "
                             "for several samples, repeat the prompt in the batch")
        if (gc.num_beams or 1) > 1:
            if draft is not None:
                raise ValueError("beam search and speculative decoding (assistant_model, prompt_lookup_num_tokens) "
                                 "do not go together")
            return self._beam_search(input_ids, attention_mask, gc, logits_processors(
                gc, self.config, prompt_len, logits_processor), stopping, streamer, tokenizer)
        traced = bool(gc.return_dict_in_generate and (gc.output_scores or gc.output_logits))
        max_new = gc.max_length - prompt_len
        processors = logits_processors(gc, self.config, prompt_len, logits_processor)
        eos = eos_tensor(gc.eos_token_id)
        pad = gc.pad_token_id if gc.pad_token_id is not None else (int(eos[0]) if eos is not None else 0)
        side = padding_side(input_ids, attention_mask)
        if side == "right":
            log.warning("right padding detected (attention_mask ends in zeros): each row is continued from its last "
                        "real token, and its new tokens follow the pads in the output; transformers would continue "
                        "from the pad column instead. Pad on the left for transformers' results.")
        micro = 0 if streamer is not None else self.client.config.micro_batch_rows  # a streamer sees one session
        groups = split_batch(input_ids, attention_mask, micro)
        if streamer is not None and len(groups) > 1:
            raise ValueError("a streamer needs one prompt or a batch of equal-length prompts (no padding): rows "
                             "of a padded batch are generated independently")
        # several sessions sample independently: each from its own generator, seeded here from torch's global
        # one, so a seeded call gives the same tokens however the sessions interleave. One session samples
        # from the global generator itself, exactly as transformers does.
        generators = [generator] if len(groups) == 1 else [
            torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator))) if gc.do_sample
            else None for _ in groups]
        if streamer is not None:
            streamer.put(input_ids.cpu())
        try:
            # the whole loop runs on the client's event loop: one thread handoff per call, not per token
            if draft is not None and (traced or not self._can_speculate(gc, groups)):
                draft = None  # scores are those of plain decoding, one step at a time
            out, route, trace = self.client.run(self._generate(
                input_ids, groups, generators, gc, processors, eos, pad, max_new, streamer, draft, stopping, traced))
        finally:
            if streamer is not None:
                streamer.end()
        self.last_route = route
        if gc.return_dict_in_generate:
            return GenerateDecoderOnlyOutput(  # type: ignore[return-value]
                sequences=out, scores=trace[0] if gc.output_scores else None,
                logits=trace[1] if gc.output_logits else None)
        return out

    def _beam_search(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None, gc: GenerationConfig,
                     processors: LogitsProcessorList, stopping: StoppingCriteriaList | None, streamer: Any,
                     tokenizer: Any) -> Any:
        """Beam search by transformers' own ``_beam_search``, over one session of batch x num_beams rows: the
        host below gives it logits from the swarm, and its cache reorders become ``Reorder`` requests to every
        hop (routing/session.py: reorder), so the beams are transformers' to the token."""
        from models.span import model_can_reorder

        if streamer is not None:
            raise ValueError("beam search cannot stream: its beams change until the end (as in transformers)")
        if not model_can_reorder(self.config):
            raise ValueError(f"{self.config.model_type} caches cannot be reordered on the peers: no beam search for "
                             "this model")
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("beam search takes prompts of one length (no padding) through the swarm")
        host = _BeamHost(self, gc)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its warnings are about settings generate() already warned of
            host._prepare_special_tokens(gc, kwargs_has_attention_mask=attention_mask is not None, device="cpu")
            criteria = GenerationMixin._get_stopping_criteria(host, generation_config=gc,
                                                              stopping_criteria=stopping or StoppingCriteriaList(),
                                                              tokenizer=tokenizer)
        beams = input_ids.repeat_interleave(gc.num_beams, dim=0)
        host.session = self.client.run(self.client.open_session(gc.max_length, beams.shape[0]))
        try:
            out = host._beam_search(beams, logits_processor=processors, stopping_criteria=criteria,
                                    generation_config=gc, synced_gpus=False, cache=_REMOTE_CACHE, use_cache=True)
        finally:
            self.client.run(host.session.close())
        self.last_route = host.session.route
        return out

    async def _generate(
        self, input_ids: torch.LongTensor, groups: list[RowGroup], generators: list[torch.Generator | None],
        gc: GenerationConfig, processors: LogitsProcessorList, eos: torch.Tensor | None, pad: int, max_new: int,
        streamer: Any, draft: Draft | None = None, stopping: StoppingCriteriaList | None = None,
        traced: bool = False,
    ) -> tuple[torch.LongTensor, Any, tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]:
        """Every group's session at once (at most ``max_row_sessions`` at a time), assembled as transformers'
        batch: the input ids as given, then each row's new tokens, rows that ended early padded with ``pad``.
        With ``traced``, also each step's processed scores and raw logits [B, V] (transformers' ``scores`` and
        ``logits``); a row whose session ended before the longest (a padded batch) has -inf at those steps."""
        slots = asyncio.Semaphore(max(1, self.client.config.max_row_sessions))

        async def one(group: RowGroup, generator: torch.Generator | None) -> tuple[torch.Tensor, Any, list[Any]]:
            async with slots:
                return await self._generate_group(group, input_ids[list(group.rows)], generator, gc, processors,
                                                  eos, pad, max_new, streamer, draft, stopping, traced)

        results = await gather_or_cancel([one(g, gen) for g, gen in zip(groups, generators, strict=True)])
        width = max(new.shape[1] for new, _, _ in results)
        new_all = torch.full((input_ids.shape[0], width), pad, dtype=input_ids.dtype)
        for group, (new, _, _) in zip(groups, results, strict=True):
            new_all[list(group.rows), :new.shape[1]] = new
        trace: tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]] = ((), ())
        if traced:
            vocab = results[0][2][0][0].shape[-1]
            steps = [[torch.full((input_ids.shape[0], vocab), -math.inf) for _ in range(width)] for _ in range(2)]
            for group, (_, _, rows) in zip(groups, results, strict=True):
                for t, pair in enumerate(rows):
                    for kind in range(2):
                        steps[kind][t][list(group.rows)] = pair[kind]
            trace = (tuple(steps[0]), tuple(steps[1]))
        return torch.cat([input_ids, new_all], dim=1), results[0][1], trace

    async def _generate_group(
        self, group: RowGroup, seq: torch.LongTensor, generator: torch.Generator | None, gc: GenerationConfig,
        processors: LogitsProcessorList, eos: torch.Tensor | None, pad: int, max_new: int, streamer: Any,
        draft: Draft | None = None, stopping: StoppingCriteriaList | None = None, traced: bool = False,
    ) -> tuple[torch.Tensor, Any, list[tuple[torch.Tensor, torch.Tensor]]]:
        """One session's token loop. ``group.prompt`` [b, n] goes through the swarm; ``seq`` [b, T] (the rows
        as given, pads included) plus the new tokens is what the logits processors see, as in transformers.
        With a ``draft`` (one row, greedy) the tokens come in speculative rounds. Returns the new tokens [b, k]
        (k <= max_new: fewer when every row ended), the final route, and with ``traced`` each step's (processed
        scores, raw logits) [b, V]."""
        prompt = group.prompt
        unfinished = torch.ones(prompt.shape[0], dtype=torch.bool)
        new: list[torch.Tensor] = []
        trace: list[tuple[torch.Tensor, torch.Tensor]] = []

        def choose(logits: torch.Tensor) -> torch.Tensor:
            """The next token of each row from its logits [b, V], as transformers chooses it."""
            scores = processors(seq, logits.clone() if traced else logits)
            if traced:
                trace.append((scores.clone(), logits))
            if gc.do_sample:
                probs = torch.softmax(scores, dim=-1)
                return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
            return torch.argmax(scores, dim=-1)

        def emit(next_tokens: torch.Tensor) -> bool:
            """Add the next tokens [b]; True when generation is over (every row ended, or max_new reached)."""
            nonlocal seq, unfinished
            if eos is not None or stopping is not None:
                next_tokens = torch.where(unfinished, next_tokens, torch.full_like(next_tokens, pad))
            seq = torch.cat([seq, next_tokens[:, None]], dim=-1)
            new.append(next_tokens)
            if streamer is not None:
                streamer.put(next_tokens.cpu())
            if eos is not None:
                unfinished &= ~torch.isin(next_tokens, eos)
            if stopping is not None:
                unfinished &= ~torch.as_tensor(stopping(seq, None), dtype=torch.bool).expand_as(unfinished)
            return not bool(unfinished.any()) or len(new) == max_new

        session = await self.client.open_session(prompt.shape[1] + max_new, prompt.shape[0])
        try:
            keep = 1 if self.client.config.trim_results else 0
            hidden = await session.step(self.head.embed(prompt), keep=keep)  # hidden: [b, 1 or n, H]
            if draft is not None:
                if not emit(choose(await self._head_batch.logits(hidden[:, -1:]))):
                    await self._speculate(session, draft, lambda: seq, choose, emit, max_new - len(new))
            else:
                while not emit(choose(await self._head_batch.logits(hidden[:, -1:]))):
                    hidden = await session.step(self.head.embed(new[-1][:, None], session.position))
        finally:
            await session.close()
        return torch.stack(new, dim=1), session.route, trace

    async def _speculate(self, session: Any, draft: Draft, text: Callable[[], torch.Tensor],
                         choose: Callable[[torch.Tensor], torch.Tensor], emit: Callable[[torch.Tensor], bool],
                         left: int) -> None:
        """Speculative rounds until ``emit`` says generation is over (at most ``left`` more tokens). The text's
        last token is not in the swarm yet: each round sends it with k draft tokens and keeps the model's own
        choice at every position up to the first that differs from the draft (routing/speculative.py)."""
        rates = Rates()
        clock = self.client.clock
        k_max = self.client.config.max_draft_tokens
        while True:
            tokens = text()[0].tolist()
            drafts, draft_s = draft.propose(tokens, min(rates.k(k_max), left - 1))
            k = len(drafts)  # a draft may guess fewer (none: a plain step)
            start = session.position
            started = clock()
            hidden = await session.step(self.head.embed(torch.tensor([[tokens[-1], *drafts]]), start))
            round_s = clock() - started
            logits = self.head.logits(hidden)[0]  # [k + 1, V]: the model's view after each token sent
            accepted = 0
            for i in range(k + 1):
                token = choose(logits[i:i + 1])
                left -= 1
                if emit(token):
                    return
                if i == k or int(token) != drafts[i]:
                    break
                accepted += 1
            if k > 0:
                rates.update(round_s, draft_s, k, accepted)
                draft.record(k, accepted)
                log.debug("speculative round: %d of %d drafts accepted", accepted, k)
            session.rewind(start + accepted + 1)  # the last token and the accepted drafts stay in the caches

    def _can_speculate(self, gc: GenerationConfig, groups: list[RowGroup]) -> bool:
        """Whether this call can decode speculatively; if not, why is logged and it decodes plainly."""
        from models.span import model_can_rewind

        why = None
        if gc.do_sample:
            why = "it samples (speculation here is greedy only)"
        elif len(groups) != 1 or groups[0].prompt.shape[0] != 1:
            why = "it has more than one row"
        elif not model_can_rewind(self.config):
            why = f"{self.config.model_type} caches cannot be cut back (sliding-window or recurrent layers)"
        if why is not None:
            log.info("assistant_model ignored: %s; decoding plainly", why)
        return why is None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> AutoDistributedModelForCausalLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


AutoDistributedModel = AutoDistributedModelForCausalLM


def load_generation_config(ckpt: Any) -> GenerationConfig:
    path = Path(ckpt.path)
    if (path / "generation_config.json").exists():
        return GenerationConfig.from_pretrained(path)
    return GenerationConfig.from_model_config(ckpt.config)


def prepare_generation_config(
    model_gc: GenerationConfig, passed: GenerationConfig | None, kwargs: dict[str, Any], prompt_len: int,
    max_position_embeddings: int | None = None,
) -> GenerationConfig:
    """The settings transformers' ``generate()`` would use, with ``max_length`` resolved to the total length.

    Priority as in transformers: ``kwargs`` > ``passed`` > the checkpoint's config (``model_gc``) >
    transformers' global defaults (``max_length`` 20, ``top_k`` 50, ...). ``max_new_tokens`` sets the total
    length to prompt + max_new_tokens; a ``max_length`` set by the caller or the checkpoint is the total
    length; when neither is set anywhere, 20 new tokens are generated (capped at the model's
    ``max_position_embeddings``), with transformers' warning. A prompt already at or over the total length is
    a ValueError, as in transformers.
    """
    has_default_max_length = (
        kwargs.get("max_length") is None
        and (passed is None or passed.max_length is None)
        and model_gc.max_length is None
    )
    gc = copy.deepcopy(passed) if passed is not None else GenerationConfig()
    gc.update(**model_gc.to_dict(), defaults_only=True, allow_custom_entries=True)
    gc.update(**GenerationConfig._get_default_generation_params(), defaults_only=True)
    gc.update(**kwargs)  # validates: max_new_tokens <= 0 is a ValueError, as in transformers
    if gc.max_new_tokens is not None:
        gc.max_length = gc.max_new_tokens + prompt_len
    elif has_default_max_length:
        gc.max_length += prompt_len
        if max_position_embeddings is not None:
            gc.max_length = min(gc.max_length, max_position_embeddings)
        warnings.warn(
            f"Using the model-agnostic default `max_length` (={gc.max_length}) to control the generation length. "
            "We recommend setting `max_new_tokens` to control the maximum length of the generation.",
            UserWarning, stacklevel=3,
        )
    if prompt_len >= gc.max_length:
        raise ValueError(
            f"Input length of input_ids is {prompt_len}, but `max_length` is set to {gc.max_length}: nothing is "
            "left to generate. Increase `max_length` or, better, set `max_new_tokens` (the number of new tokens)."
        )
    return gc


def logits_processors(gc: GenerationConfig, config: Any, prompt_len: int,
                      given: LogitsProcessorList | None = None) -> LogitsProcessorList:
    """The processors transformers' generate() applies for these settings, in its order, with the caller's
    ``given`` ones merged in as transformers merges them: built by transformers' own ``_get_logits_processor``
    (so min_new_tokens, no_repeat_ngram_size, bad_words_ids, suppress_tokens, min_p, typical_p, ... behave as
    there), over a stand-in that has only what it reads: the model's config."""
    gc = copy.deepcopy(gc)
    gc._eos_token_tensor = eos_tensor(gc.eos_token_id)  # what generate()'s special-token step leaves there
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its warnings are about settings generate() already warned of
        return GenerationMixin._get_logits_processor(
            _ProcessorHost(config), generation_config=gc, input_ids_seq_length=prompt_len,
            logits_processor=given or LogitsProcessorList(), device="cpu", model_kwargs={})


_REMOTE_CACHE = object()  # what beam search holds as "the cache": the session's, on the peers


class _BeamHost(GenerationMixin):
    """What transformers' ``_beam_search`` needs of a model: logits for the new tokens of every row (from one
    session through the swarm) and a cache it can reorder (the session's rows, on every hop)."""

    main_input_name = "input_ids"

    def __init__(self, model: AutoDistributedModelForCausalLM, gc: GenerationConfig) -> None:
        self.model, self.config, self.generation_config = model, model.config, gc
        self.device = torch.device("cpu")
        self.session: Any = None

    def _logits(self, ids: torch.LongTensor) -> CausalLMOutput:
        """Logits [rows, 1, V] after ``ids`` [rows, t], the tokens the session has not seen yet."""
        m = self.model
        hidden = m.client.run(self.session.step(m.head.embed(ids, self.session.position), keep=1))
        return CausalLMOutput(logits=m.head.logits(hidden[:, -1:]))

    def _prefill(self, input_ids: torch.LongTensor, generation_config: GenerationConfig, model_kwargs: dict,
                 is_first_iteration: bool = True) -> CausalLMOutput:
        return self._logits(input_ids)

    def prepare_inputs_for_generation(self, input_ids: torch.LongTensor, **_: Any) -> dict[str, Any]:
        return {"input_ids": input_ids[:, self.session.position:]}

    def __call__(self, input_ids: torch.LongTensor, **_: Any) -> CausalLMOutput:
        return self._logits(input_ids)

    def _update_model_kwargs_for_generation(self, outputs: Any, model_kwargs: dict, **_: Any) -> dict:
        return model_kwargs

    def _reorder_cache(self, cache: Any, beam_idx: torch.Tensor) -> Any:
        self.model.client.run(self.session.reorder(beam_idx.tolist()))
        return cache


class _ProcessorHost:
    """What ``GenerationMixin._get_logits_processor`` reads of a model."""

    _merge_criteria_processor_list = GenerationMixin._merge_criteria_processor_list

    def __init__(self, config: Any) -> None:
        self.config = config


def stopping_criteria_for(given: StoppingCriteriaList | None, stop_strings: str | list[str] | None,
                          tokenizer: Any) -> StoppingCriteriaList | None:
    """The caller's stopping criteria plus transformers' StopStringCriteria for ``stop_strings`` (which needs
    the ``tokenizer``, as in transformers); None when there are none."""
    found = StoppingCriteriaList(given or [])
    if stop_strings:
        if tokenizer is None:
            raise ValueError("stop_strings needs the model's tokenizer: generate(..., stop_strings=..., "
                             "tokenizer=tokenizer), as in transformers")
        found.append(StopStringCriteria(tokenizer, stop_strings))
    return found or None


def eos_tensor(eos: int | list[int] | None) -> torch.Tensor | None:
    if eos is None:
        return None
    return torch.tensor([eos] if isinstance(eos, int) else list(eos), dtype=torch.long)


@dataclass(frozen=True)
class RowGroup:
    """Rows of a batch generated in one session: ``rows`` index the batch, ``prompt`` [len(rows), n] is what
    goes through the swarm (a padded row's real tokens only)."""

    rows: tuple[int, ...]
    prompt: torch.Tensor


def padding_side(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> str:
    """"none" (no zeros in the mask), "left" (every row: zeros, then ones) or "right" (zeros after a one:
    right padding, or holes)."""
    if attention_mask is None:
        return "none"
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask has shape {list(attention_mask.shape)}, input_ids {list(input_ids.shape)}")
    mask = attention_mask.bool()
    if bool(mask.all()):
        return "none"
    return "left" if bool((mask[:, 1:] >= mask[:, :-1]).all()) else "right"


def split_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, micro_batch_rows: int = 0,
                ) -> list[RowGroup]:
    """How a batch is generated: a padded batch (zeros in ``attention_mask``) as one group per row holding
    only its real tokens, so rows of different lengths never carry pads through the swarm; an equal-length
    batch as one group, or groups of at most ``micro_batch_rows`` rows when that is set (> 0)."""
    batch = input_ids.shape[0]
    if padding_side(input_ids, attention_mask) != "none":
        assert attention_mask is not None
        groups = []
        for i in range(batch):
            real = input_ids[i][attention_mask[i].bool()]
            if real.numel() == 0:
                raise ValueError(f"row {i} of attention_mask is all zeros: nothing to generate from")
            groups.append(RowGroup((i,), real[None, :]))
        return groups
    size = micro_batch_rows if 0 < micro_batch_rows < batch else batch
    return [RowGroup(tuple(range(a, min(a + size, batch))), input_ids[a:a + size]) for a in range(0, batch, size)]


async def gather_or_cancel(coros: Sequence[Any]) -> list[Any]:
    """Results of all ``coros`` run as tasks at once; when one raises, the others are cancelled (their
    sessions close on the way out) and its error is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
