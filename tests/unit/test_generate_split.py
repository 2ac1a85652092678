"""How generate() splits a batch into sessions: padded rows alone with their real tokens only, equal-length
rows together or in micro-batches; and how the padding side is told from the attention mask."""

from __future__ import annotations

import pytest
import torch

from routing.model import padding_side, split_batch

IDS = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10], [0, 11, 12, 13]])
LEFT = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]])


def test_padding_side_from_the_mask():
    """No mask or all ones: none; zeros then ones in every row: left; a zero after a one anywhere: right."""
    assert padding_side(IDS, None) == "none"
    assert padding_side(IDS, torch.ones_like(IDS)) == "none"
    assert padding_side(IDS, LEFT) == "left"
    assert padding_side(IDS, torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]])) == "right"
    assert padding_side(IDS, torch.tensor([[1, 0, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]])) == "right"  # a hole
    with pytest.raises(ValueError, match="shape"):
        padding_side(IDS, LEFT[:, 1:])


def test_padded_rows_go_alone_with_their_real_tokens():
    """Each row of a padded batch is its own group, its prompt the tokens where the mask is 1."""
    groups = split_batch(IDS, LEFT, micro_batch_rows=0)
    assert [g.rows for g in groups] == [(0,), (1,), (2,)]
    assert [g.prompt.tolist() for g in groups] == [[[5, 6]], [[7, 8, 9, 10]], [[11, 12, 13]]]


def test_an_empty_row_is_refused():
    with pytest.raises(ValueError, match="row 1 .* all zeros"):
        split_batch(IDS, torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]]))


@pytest.mark.parametrize(("micro", "rows"), [(0, [(0, 1, 2)]), (3, [(0, 1, 2)]), (5, [(0, 1, 2)]),
                                              (2, [(0, 1), (2,)]), (1, [(0,), (1,), (2,)])])
def test_equal_length_rows_share_a_session_or_micro_batches(micro, rows):
    """No padding: one group for the batch, or groups of at most micro_batch_rows rows when that is set."""
    groups = split_batch(IDS, torch.ones_like(IDS), micro_batch_rows=micro)
    assert [g.rows for g in groups] == rows
    assert torch.equal(torch.cat([g.prompt for g in groups]), IDS)
