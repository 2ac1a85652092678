"""Chunked prefill: a long prompt flows through the route as a pipeline of chunks.

A session's step of T tokens is sent as several consecutive steps of at most ``chunk_tokens`` each (at most
``max_chunks``), all at once: the first hop pushes chunk 1 on as soon as it has computed it and goes on with
chunk 2 while the next hop computes chunk 1, so transfers and compute of different hops overlap instead of
adding up. Peers take a session's steps in order (``peer/server.py``), so nothing new is needed on their side.
Only the positions the caller keeps come back: a chunk none of whose positions are kept returns one (dropped).

How long a chunk is follows the route (``chunk_size``): with S stages in the pipeline (each hop's compute and
the link into it), a forward pass's fixed cost ``pass_s`` (about a decode step of the slowest hop: its
record's 1 / throughput) and ``token_s`` seconds per token on the slowest link (the step's bytes per token
over its measured bandwidth), a prompt of n tokens in chunks of c takes about (n / c + S - 1) x (c x token_s +
pass_s), least at c = sqrt(n x pass_s / ((S - 1) x token_s)): slow links want small chunks (the pipeline
fills sooner), fast links and slow passes want large ones (fewer passes). ``ClientConfig.prefill_chunk_tokens``
is the least a chunk holds, and at most ``MAX_CHUNKS`` are sent.

``plan_chunks`` and ``chunk_size`` are pure; ``routing/session.py`` sends the chunks and assembles the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_CHUNKS = 8  # chunks of one prefill in flight at once (peers queue at most 16 steps of a session)
BYTES_PER_VALUE = {"raw": 4.0, "float16": 2.0, "bfloat16": 2.0, "int8": 1.125}  # on the wire (swarm/net/wire.py)


def chunk_size(tokens: int, stages: int, pass_s: float, token_s: float, least: int) -> int:
    """Tokens per chunk for a prompt of ``tokens`` through ``stages`` pipeline stages (see the module
    docstring), at least ``least``; ``least`` itself when the figures are missing."""
    if least <= 0 or stages < 2 or pass_s <= 0 or token_s <= 0:
        return least
    return max(least, round(math.sqrt(tokens * pass_s / ((stages - 1) * token_s))))


@dataclass(frozen=True)
class Chunk:
    start: int   # positions [start, end) of the step
    end: int
    keep: int    # the Step's keep: 0 every position, else the last ``keep``
    wanted: int  # how many of its last positions belong to the caller's result (0: none, its reply is dropped)

    def reply_tokens(self) -> int:
        """Positions the last hop returns for this chunk."""
        length = self.end - self.start
        return length if self.keep == 0 else min(self.keep, length)


def plan_chunks(tokens: int, keep: int, chunk_tokens: int, max_chunks: int = MAX_CHUNKS) -> list[Chunk]:
    """The chunks a step of ``tokens`` positions is sent as (one: not chunked), given that the caller keeps its
    last ``keep`` positions (0: all). Chunks are at least ``chunk_tokens`` long (0: never chunk) and at most
    ``max_chunks`` many; all but the last are equal."""
    if chunk_tokens <= 0 or tokens <= chunk_tokens or max_chunks <= 1:
        return [Chunk(0, tokens, keep, tokens if keep == 0 else min(keep, tokens))]
    size = max(chunk_tokens, math.ceil(tokens / max_chunks))
    first_kept = tokens - keep if 0 < keep < tokens else 0
    chunks = []
    for start in range(0, tokens, size):
        end = min(start + size, tokens)
        wanted = max(0, end - max(start, first_kept))
        chunks.append(Chunk(start, end, 0 if wanted == end - start else max(wanted, 1), wanted))
    return chunks
