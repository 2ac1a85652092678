"""Row-count-aware linear layers (models/kernels.py): the W·xᵀ form equals nn.Linear to float rounding, is
switched on only for the row counts the measurement favours, and can be switched off again."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from models.kernels import RowAwareLinear, tune_linears, use_rows


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 24), nn.SiLU(), nn.Linear(24, 16, bias=False))


@pytest.mark.parametrize("shape", [(1, 16), (2, 16), (3, 16), (2, 1, 16), (1, 3, 16), (4, 1, 16), (5, 2, 16)])
def test_the_transposed_form_equals_nn_linear(shape):
    model = _model()
    x = torch.randn(*shape)
    expected = model(x)
    assert use_rows(model, {1, 2, 3, 4, 10}) == 2
    assert all(type(m) is RowAwareLinear for m in (model[0], model[2]))
    got = model(x)
    assert got.shape == expected.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_use_rows_with_no_rows_restores_plain_linears():
    model = _model()
    use_rows(model, {2})
    use_rows(model, ())
    assert all(type(m) is nn.Linear for m in (model[0], model[2]))
    assert isinstance(model[0], nn.Linear) and model[0].weight.shape == (24, 16)


def _scripted_clock(durations: dict[int, tuple[float, float]], repeats: int = 2):
    """A clock for tune_linears: each sweep of row count n takes durations[n] = (x·Wᵀ, W·xᵀ) seconds."""
    times, t = [], 0.0
    for n in sorted(durations):
        for d in [durations[n][0]] * repeats + [durations[n][1]] * repeats:
            times += [t, t + d]
            t += d
    it = iter(times)
    return lambda: next(it)


def test_tuning_switches_only_the_row_counts_where_the_transposed_form_is_clearly_faster():
    model = _model()
    tuning = tune_linears(model, rows=(2, 3, 4),
                          clock=_scripted_clock({2: (0.010, 0.005), 3: (0.010, 0.009), 4: (0.010, 0.012)}))
    assert tuning.transposed_rows == {2}  # 3 rows: 10% faster is within noise; 4 rows: slower
    assert tuning.timings_ms[2] == pytest.approx((10.0, 5.0))
    assert tuning.layers == 2 and model[0].transposed_rows == {2}
    assert "W·xᵀ for rows: 2" in tuning.describe()


def test_tuning_that_finds_no_gain_leaves_the_layers_plain():
    model = _model()
    tuning = tune_linears(model, rows=(2, 3), clock=_scripted_clock({2: (0.01, 0.01), 3: (0.01, 0.02)}))
    assert tuning.transposed_rows == frozenset()
    assert all(type(m) is nn.Linear for m in (model[0], model[2]))


def test_a_module_without_linear_layers_is_left_alone():
    assert tune_linears(nn.Sequential(nn.SiLU()), clock=itertools.count().__next__).layers == 0
