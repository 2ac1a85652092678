"""AutoDistributedModelForCausalLM: a causal LM whose layers run on the swarm.

The client holds the embeddings, the final norm and the LM head (models.span.ClientHead); every
transformer layer runs on peers. ``generate()`` follows transformers' semantics for what it supports:
greedy and sampling (temperature, top_k, top_p, repetition_penalty), max_new_tokens / max_length, EOS
(with pad_token_id filling finished rows), a streamer (put() the prompt, then each new token; end()),
and the checkpoint's generation_config.json as defaults, then transformers' global ones (with no length given
anywhere: 20 new tokens, capped at max_position_embeddings; a prompt at or over max_length is a ValueError).
It returns prompt + new tokens like transformers.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.modeling_outputs import CausalLMOutput

from routing.config import ClientConfig
from routing.session import SyncSession
from routing.swarm_client import SwarmClient

log = logging.getLogger("molink.client")

GENERATE_KWARGS = (
    "max_new_tokens", "max_length", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty",
    "eos_token_id", "pad_token_id",
)


class AutoDistributedModelForCausalLM:
    """Hugging Face-style causal LM over a molink swarm. Build it with ``from_pretrained``."""

    def __init__(self, ckpt: Any, head: Any, client: SwarmClient, generation_config: GenerationConfig) -> None:
        self.checkpoint = ckpt
        self.head = head
        self.client = client
        self.generation_config = generation_config
        self.last_route: Any = None

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
        client = SwarmClient(ckpt.model_key, ckpt.num_layers, initial_peers, config)
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
        **kwargs: Any,
    ) -> torch.LongTensor:
        unknown = set(kwargs) - set(GENERATE_KWARGS)
        if unknown:
            raise TypeError(f"generate() does not support {', '.join(sorted(unknown))} yet")
        if attention_mask is not None and not bool(attention_mask.all()):
            raise NotImplementedError("padded batches (attention_mask with zeros) are not supported yet")
        prompt_len = input_ids.shape[1]
        gc = prepare_generation_config(self.generation_config, generation_config, kwargs, prompt_len,
                                       getattr(self.config, "max_position_embeddings", None))
        max_new = gc.max_length - prompt_len
        processors = logits_processors(gc)
        eos = eos_tensor(gc.eos_token_id)
        pad = gc.pad_token_id if gc.pad_token_id is not None else (int(eos[0]) if eos is not None else 0)
        if streamer is not None:
            streamer.put(input_ids.cpu())
        try:
            # the whole loop runs on the client's event loop: one thread handoff per call, not per token
            return self.client.run(self._generate(input_ids, gc, processors, eos, pad, max_new, streamer))
        finally:
            if streamer is not None:
                streamer.end()

    async def _generate(
        self, ids: torch.LongTensor, gc: GenerationConfig, processors: LogitsProcessorList,
        eos: torch.Tensor | None, pad: int, max_new: int, streamer: Any,
    ) -> torch.LongTensor:
        unfinished = torch.ones(ids.shape[0], dtype=torch.bool)
        session = await self.client.open_session(ids.shape[1] + max_new, ids.shape[0])
        self.last_route = session.route
        try:
            hidden = await session.step(self.head.embed(ids))  # hidden: [B, T, H]
            for i in range(max_new):
                logits = self.head.logits(hidden[:, -1:])[:, -1]  # logits: [B, V] float32
                scores = processors(ids, logits)
                if gc.do_sample:
                    next_tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
                else:
                    next_tokens = torch.argmax(scores, dim=-1)
                if eos is not None:
                    next_tokens = torch.where(unfinished, next_tokens, torch.full_like(next_tokens, pad))
                ids = torch.cat([ids, next_tokens[:, None]], dim=-1)
                if streamer is not None:
                    streamer.put(next_tokens.cpu())
                if eos is not None:
                    unfinished &= ~torch.isin(next_tokens, eos)
                if not bool(unfinished.any()) or i == max_new - 1:
                    break
                hidden = await session.step(self.head.embed(next_tokens[:, None], ids.shape[1] - 1))
        finally:
            self.last_route = session.route  # after any failover
            await session.close()
        return ids

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


def logits_processors(gc: GenerationConfig) -> LogitsProcessorList:
    """The processors transformers applies for these settings, in transformers' order."""
    procs = LogitsProcessorList()
    if gc.repetition_penalty is not None and gc.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(penalty=gc.repetition_penalty))
    if gc.do_sample:
        if gc.temperature is not None and gc.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(gc.temperature))
        if gc.top_k is not None and gc.top_k != 0:
            procs.append(TopKLogitsWarper(top_k=gc.top_k, min_tokens_to_keep=1))
        if gc.top_p is not None and gc.top_p < 1.0:
            procs.append(TopPLogitsWarper(top_p=gc.top_p, min_tokens_to_keep=1))
    return procs


def eos_tensor(eos: int | list[int] | None) -> torch.Tensor | None:
    if eos is None:
        return None
    return torch.tensor([eos] if isinstance(eos, int) else list(eos), dtype=torch.long)
