"""Token positions of a session held as per-step tensors [B, T_i, H], joined along tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def first_positions(parts: Sequence[torch.Tensor], n: int) -> list[torch.Tensor]:
    """The parts that cover the first ``n`` positions, the last one cut to fit: what a session keeps when it
    rewinds to position ``n`` (the client's inputs, a peer's pushed outputs)."""
    kept: list[torch.Tensor] = []
    left = n
    for part in parts:
        if left <= 0:
            break
        kept.append(part if part.shape[1] <= left else part[:, :left])
        left -= part.shape[1]
    return kept
