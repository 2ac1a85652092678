"""Chunked prefill: a long prompt flows through the route as a pipeline of chunks.

A session's step of T tokens is sent as several consecutive steps of at most ``chunk_tokens`` each (at most
``max_chunks``), all at once: the first hop pushes chunk 1 on as soon as it has computed it and goes on with
chunk 2 while the next hop computes chunk 1, so transfers and compute of different hops overlap instead of
adding up. Peers take a session's steps in order (``peer/server.py``), so nothing new is needed on their side.
Only the positions the caller keeps come back: a chunk none of whose positions are kept returns one (dropped).

``plan_chunks`` is pure; ``routing/session.py`` sends the chunks and assembles the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_CHUNKS = 8  # chunks of one prefill in flight at once (peers queue at most 16 steps of a session)


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
