"""The model zoo in one process: every architecture row, split into uneven spans, equals local generate.

One row per family or variant (tests/conftest_models.py ZOO): a tiny random 5-layer checkpoint, then
ClientHead.embed -> spans [0, 2), [2, 3), [3, 5) -> ClientHead.logits, a 20-token prompt and 16 greedy steps
one token at a time. Ids must equal AutoModelForCausalLM.generate()'s and prompt logits be within 1e-4.
The same rows go through three real peers in tests/integration/test_zoo_swarm.py (other split points).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.adapters import get_adapter, supported_model_types
from models.source import resolve_model
from models.span import SpanModel
from tests import zoo_table
from tests.conftest_models import ZOO, local_greedy, make_zoo_checkpoint, split_generate, zoo_model_type

pytestmark = pytest.mark.zoo

PROMPT_LEN = 20
NEW_TOKENS = 16
BOUNDS = [0, 2, 3, 5]  # the swarm matrix (test_zoo_swarm) splits 0:1, 1:3, 3:5


@pytest.mark.parametrize("row", sorted(ZOO))
def test_zoo_split_equals_local_generate(row: str, tmp_path: Path, zoo_results: dict) -> None:
    path = make_zoo_checkpoint(tmp_path, row)
    ckpt = resolve_model(str(path))
    assert ckpt.config.model_type == zoo_model_type(row)
    assert zoo_model_type(row) in get_adapter(ckpt.config).model_types
    ids = torch.randint(
        3, ckpt.config.vocab_size, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(1)
    )
    want, want_logits = local_greedy(path, ids, NEW_TOKENS)

    out, prompt_logits = split_generate(ckpt, BOUNDS, ids, NEW_TOKENS)
    zoo_results[row]["split_local"] = {
        "ids_equal": torch.equal(out, want), "max_logit_diff": float((prompt_logits - want_logits).abs().max()),
    }

    assert want.shape == (1, PROMPT_LEN + NEW_TOKENS)
    assert torch.equal(out, want)
    torch.testing.assert_close(prompt_logits, want_logits, atol=1e-4, rtol=0)

    # sub-span routes: one span of every layer, run as its views [0, 2), [2, 3), [3, 5) (SpanModel.view)
    whole = SpanModel.load(ckpt, 0, BOUNDS[-1], progress=False)
    if get_adapter(ckpt.config).new_cache is not None:  # caches that count tokens across layers: whole spans only
        assert not whole.check_views()
        return
    assert whole.check_views()
    out, prompt_logits = split_generate(ckpt, BOUNDS, ids, NEW_TOKENS, views=True)
    assert torch.equal(out, want)
    torch.testing.assert_close(prompt_logits, want_logits, atol=1e-4, rtol=0)


def test_every_supported_family_has_a_zoo_row_and_notes() -> None:
    """The matrix covers every registered model type, and each adapter says in one line what it needed."""
    families = {zoo_model_type(row) for row in ZOO}
    assert families == set(supported_model_types())
    for family in families:
        notes = get_adapter(type("C", (), {"model_type": family})()).notes
        assert notes and "\n" not in notes


def test_models_doc_is_rendered_from_recorded_matrix_results() -> None:
    """docs/models.md is what tests/zoo_table.py renders from docs/zoo-results.json, which holds a passing
    result of every matrix for every row (refresh both with ``python -m tests.zoo_table --run``)."""
    results = zoo_table.load_results()
    assert zoo_table.failures(results) == []
    assert zoo_table.DOC.read_text() == zoo_table.render(results)
