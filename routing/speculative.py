"""Speculative decoding: a small draft model on the client proposes k tokens, the swarm checks them in one pass.

Each round sends the last token and k draft tokens through the route as one step and reads the model's own
greedy choice at every position. The drafts are kept up to the first disagreement, and the model's token
there (or after the last draft) is added, so a round gives 1 to k + 1 tokens, each exactly the token plain
greedy decoding would give. The hops then cut their caches back to the tokens kept (``Step.rewind``).

k follows what was measured: a round costs the route's round trip plus k draft steps, and returns
(1 - a^(k+1)) / (1 - a) tokens on average when each draft token is accepted with probability a (Leviathan
et al., 2023). ``choose_k`` picks the k with the most tokens per second; while even that is measured to be
slower than plain decoding (a draft that rarely agrees), rounds go without guesses, and one in
``RECHECK_EVERY`` guesses once to keep measuring.

Drafts (``Draft``): ``HFDraft`` wraps any local transformers causal LM that shares the model's tokenizer (a
smaller checkpoint of the family); ``EarlyExitDraft`` runs the model's own first layers on the client with its
embeddings and head (no second checkpoint, but without a trained exit head its guesses are poor on real
models: SmolLM2-135M's first 10 of 30 layers agreed with the model on none of 144 tokens); both keep a KV
cache of the tokens they have seen and cut it back where the text diverged from their guesses.
``PromptLookupDraft`` runs no model: it guesses that the text repeats itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

MAX_DRAFT_TOKENS = 8  # k at most: past it a round's extra compute outweighs what acceptance can still add
RECHECK_EVERY = 8  # while guessing loses, one round in this many still guesses, to notice when it would win


def expected_tokens(accept: float, k: int) -> float:
    """Tokens a round gives on average with k drafts, each accepted with probability ``accept`` (plus the
    model's own token after the last accepted one)."""
    if accept >= 1.0:
        return float(k + 1)
    return (1.0 - accept ** (k + 1)) / (1.0 - accept)


def choose_k(round_s: float, draft_s: float, accept: float, k_max: int = MAX_DRAFT_TOKENS) -> int:
    """The draft length in 1..k_max with the most expected tokens per second, when a round through the swarm
    takes ``round_s`` and each draft token ``draft_s`` on the client."""
    if k_max < 1:
        return 1
    return max(range(1, k_max + 1),
               key=lambda k: (expected_tokens(accept, k) / max(round_s + k * draft_s, 1e-9), -k))


def accepted_count(drafts: Sequence[int], targets: Sequence[int]) -> int:
    """How many drafts agree with the model's choices ``targets`` before the first disagreement."""
    n = 0
    for d, t in zip(drafts, targets, strict=False):
        if d != t:
            break
        n += 1
    return n


@dataclass
class Rates:
    """What ``choose_k`` needs, from the first round on, then smoothed (weight 1/2 for the newest: a draft's
    luck changes with the text): the round's time through the swarm, one draft token's time on the client, and
    the share of draft tokens accepted."""

    round_s: float = 0.0
    draft_s: float = 0.0
    accept: float = 0.5  # before any round: a coin flip
    rounds: int = 0
    plain: int = 0  # rounds sent without guesses because guessing was losing

    def update(self, round_s: float, draft_s: float, proposed: int, accepted: int) -> None:
        share = accepted / proposed if proposed else self.accept
        if self.rounds == 0:
            self.round_s, self.draft_s, self.accept = round_s, draft_s, share
        else:
            self.round_s += 0.5 * (round_s - self.round_s)
            self.draft_s += 0.5 * (draft_s - self.draft_s)
            self.accept += 0.5 * (share - self.accept)
        self.rounds += 1

    def k(self, k_max: int) -> int:
        """Guesses for the next round: 2 before any, then ``choose_k``'s; 0 (a plain step) while guessing is
        measured to lose to plain decoding, except every ``RECHECK_EVERY``-th round, which guesses once to see
        whether the text turned predictable."""
        if not self.rounds:
            return min(2, max(k_max, 1))
        k = choose_k(self.round_s, self.draft_s, self.accept, k_max)
        gain = expected_tokens(self.accept, k) / max(self.round_s + k * self.draft_s, 1e-9)
        if gain * self.round_s >= 1.0:
            return k
        self.plain += 1
        if self.plain % RECHECK_EVERY == 0:
            return 1
        return 0


class Draft:
    """Guesses the next tokens of a text; counts how its guesses fared."""

    def __init__(self) -> None:
        self.rounds = 0    # rounds checked by the swarm with this draft, over all generate() calls
        self.proposed = 0  # draft tokens those rounds checked
        self.accepted = 0  # of which the model kept

    def propose(self, text: Sequence[int], k: int) -> tuple[list[int], float]:
        """Up to k guesses after ``text`` (none: this round decodes plainly) and the seconds each took."""
        raise NotImplementedError

    def record(self, proposed: int, accepted: int) -> None:
        self.rounds += 1
        self.proposed += proposed
        self.accepted += accepted


class PromptLookupDraft(Draft):
    """No model at all: after the text's last n tokens (n = max_ngram .. 1), guess what followed their latest
    earlier occurrence in the text (prompt lookup decoding, transformers' ``prompt_lookup_num_tokens`` and
    ``max_matching_ngram_size``).
    Free to run; it pays off where the answer repeats the prompt or itself (quotes, code edits, summaries)."""

    def __init__(self, max_tokens: int = 10, max_ngram: int = 2) -> None:
        super().__init__()
        if max_tokens < 1 or max_ngram < 1:
            raise ValueError(f"prompt lookup needs at least 1 token and an n-gram of at least 1, got "
                             f"{max_tokens} and {max_ngram}")
        self.max_tokens = max_tokens  # transformers' prompt_lookup_num_tokens
        self.max_ngram = max_ngram    # transformers' max_matching_ngram_size

    def propose(self, text: Sequence[int], k: int) -> tuple[list[int], float]:
        text, k = list(text), min(k, self.max_tokens)
        for n in range(min(self.max_ngram, len(text) - 1), 0, -1):
            tail = text[-n:]
            for start in range(len(text) - n - 1, -1, -1):  # the latest earlier occurrence first
                if text[start:start + n] == tail:
                    return text[start + n:start + n + k], 0.0
        return [], 0.0


class ModelDraft(Draft):
    """A local model that guesses greedily, keeping a KV cache of the text it has seen."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__()
        self.clock = clock
        self._seen: list[int] = []  # the tokens in the cache, in order
        self._cache: Any = None

    def _new_cache(self) -> Any:
        raise NotImplementedError

    def _logits(self, ids: torch.Tensor, start: int, cache: Any) -> torch.Tensor:
        """ids [1, T] at positions start.. -> logits [1, T, V], extending ``cache``."""
        raise NotImplementedError

    def propose(self, text: Sequence[int], k: int) -> tuple[list[int], float]:
        """k greedy guesses after ``text`` and the seconds each took on average."""
        if k < 1:
            return [], 0.0
        started = self.clock()
        same = accepted_count(self._seen, text)
        if same == len(text):  # the whole text is cached: step back one token to get its logits again
            same -= 1
        if self._cache is None or same <= 0 or not self._cut(same):
            self._cache, self._seen, same = self._new_cache(), [], 0
        feed = list(text[same:])
        guesses: list[int] = []
        while True:
            logits = self._logits(torch.tensor([feed]), len(self._seen), self._cache)
            self._seen.extend(feed)
            guesses.append(int(logits[0, -1].argmax()))
            if len(guesses) == k:
                break
            feed = guesses[-1:]
        return guesses, (self.clock() - started) / k


    def _cut(self, n: int) -> bool:
        """Keep the first ``n`` cached tokens; False where the cache cannot be cut (a sliding window past its
        size): the caller starts a fresh one."""
        if n < len(self._seen):
            try:
                self._cache.crop(n - len(self._seen))
            except (RuntimeError, ValueError, AttributeError):
                return False
            del self._seen[n:]
        return True


class HFDraft(ModelDraft):
    """A local transformers causal LM as the draft: it must share the model's tokenizer (vocabulary)."""

    def __init__(self, model: Any, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(clock)
        self.model = model.eval()

    def _new_cache(self) -> Any:
        return DynamicCache(config=self.model.config)

    def _logits(self, ids: torch.Tensor, start: int, cache: Any) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(input_ids=ids, cache=cache, use_cache=True).logits.float()


class EarlyExitDraft(ModelDraft):
    """The model's own first ``layers`` layers, run on the client between its embeddings and its head: a draft
    for any model, with no second checkpoint (its guesses are as good as those layers' view of the text)."""

    def __init__(self, head: Any, span: Any, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(clock)
        self.head = head
        self.span = span

    @classmethod
    def load(cls, model: Any, layers: int = 2) -> EarlyExitDraft:
        """The first ``layers`` layers of ``model`` (an AutoDistributedModelForCausalLM), read from its
        checkpoint, with the head the client already holds."""
        from models.span import SpanModel

        total = int(model.checkpoint.num_layers)
        if not 0 < layers < total:
            raise ValueError(f"an early-exit draft needs 1..{total - 1} of the model's {total} layers, got {layers}")
        span = SpanModel.load(model.checkpoint, 0, layers, dtype=model.head.dtype, progress=False)
        return cls(model.head, span)

    def _new_cache(self) -> Any:
        return self.span.new_cache()

    def _logits(self, ids: torch.Tensor, start: int, cache: Any) -> torch.Tensor:
        return self.head.logits(self.span.forward(self.head.embed(ids, start), cache))


def as_draft(assistant: Any) -> Draft:
    """``generate(assistant_model=...)``: a Draft as it is, a transformers model wrapped in HFDraft."""
    if isinstance(assistant, Draft):
        return assistant
    if callable(getattr(assistant, "forward", None)) and hasattr(assistant, "config"):
        return HFDraft(assistant)
    raise TypeError(f"assistant_model must be a transformers causal LM or a routing.speculative.Draft, "
                    f"got {type(assistant).__name__}")
