"""Tests for adaptive.act: Adaptive Computation Time (Graves 2016).

References are written in plain Python from the SACT slides (Figurnov et al.
2017): the definitions of N, R, p^l and rho ("ACT going deeper"), Algorithm 1,
and the stated gradient d rho / d h^l = -1 for l < N, 0 for l >= N.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import BAD_SHAPES, bad_values, with_value

from adaptive import act

FAST = settings(max_examples=60, deadline=None)

unit = st.floats(0.0, 1.0, allow_nan=False)
eps_values = st.floats(1e-4, 0.999, allow_nan=False)


@st.composite
def score_matrices(draw, max_batch=4, max_steps=8, values=unit):
    """A (B, L) list of lists of halting scores in [0, 1]."""
    batch = draw(st.integers(1, max_batch))
    steps = draw(st.integers(1, max_steps))
    return [[draw(values) for _ in range(steps)] for _ in range(batch)]


# Scores that make the running sum cross 1 - eps at interesting places: a mix of
# small values, large values, exact zeros and ones.
mixed = st.one_of(st.floats(0.0, 0.3), st.floats(0.3, 1.0), st.sampled_from([0.0, 1.0, 0.5, 0.25]))


def algorithm_1(h_row, eps):
    """SACT slides, Algorithm 1, for one sample, with python floats.

    Returns (weights p^l, rho, N). The output accumulator of Algorithm 1 is
    ``sum_l p^l x^l``; we record the coefficient given to each x^l.
    """
    L = len(h_row)
    c = 0.0
    R = 1.0
    rho = 0.0
    weights = [0.0] * L
    N = None
    for l in range(1, L + 1):
        h = h_row[l - 1] if l < L else 1.0
        c += h
        rho += 1
        if c < 1 - eps:
            weights[l - 1] = h
            R -= h
        else:
            weights[l - 1] = R
            rho += R
            N = l
            break
    return weights, rho, N


def first_reaching(h_row, eps):
    """N = min{n : sum_{l<=n} h^l >= 1 - eps} with h^L = 1 (slides' definition)."""
    h = list(h_row[:-1]) + [1.0]
    total = 0.0
    for n, value in enumerate(h, start=1):
        total += value
        if total >= 1 - eps:
            return n
    raise AssertionError("unreachable: h^L = 1")


# --------------------------------------------------------------------------- N, R, weights, rho


@FAST
@given(score_matrices(values=mixed), eps_values)
def test_matches_algorithm_1(rows, eps):
    h = torch.tensor(rows, dtype=torch.float64)
    weights, rho, N = act.halting_distribution(h, eps)
    for b, row in enumerate(rows):
        ref_w, ref_rho, ref_N = algorithm_1(row, eps)
        assert int(N[b]) == ref_N
        assert weights[b].tolist() == pytest.approx(ref_w, abs=1e-12)
        assert float(rho[b]) == pytest.approx(ref_rho, abs=1e-12)


@FAST
@given(score_matrices(values=mixed), eps_values)
def test_N_is_first_step_reaching_threshold_with_last_score_one(rows, eps):
    h = torch.tensor(rows, dtype=torch.float64)
    _, _, N = act.halting_distribution(h, eps)
    assert N.dtype == torch.int64
    assert N.shape == (len(rows),)
    L = len(rows[0])
    for b, row in enumerate(rows):
        assert 1 <= int(N[b]) <= L
        assert int(N[b]) == first_reaching(row, eps)


@FAST
@given(score_matrices(values=mixed), eps_values)
def test_weights_are_h_before_N_remainder_at_N_zero_after(rows, eps):
    h = torch.tensor(rows, dtype=torch.float64)
    weights, rho, N = act.halting_distribution(h, eps)
    assert weights.shape == h.shape
    for b, row in enumerate(rows):
        n_b = int(N[b])
        remainder = 1.0 - math.fsum(row[: n_b - 1])
        for n in range(1, len(row) + 1):
            w = float(weights[b, n - 1])
            if n < n_b:
                assert w == row[n - 1]              # exactly h_n, untouched
            elif n == n_b:
                assert w == pytest.approx(remainder, abs=1e-12)
            else:
                assert w == 0.0
        # the remainder is positive-or-zero: the sum before N has not reached 1 - eps
        assert float(weights[b, n_b - 1]) > eps - 1e-12
        assert float(weights[b].sum()) == pytest.approx(1.0, abs=1e-12)
        assert bool((weights[b] >= 0).all())
        assert float(rho[b]) == pytest.approx(n_b + remainder, abs=1e-12)


@FAST
@given(score_matrices(values=mixed), eps_values, unit)
def test_last_score_is_taken_as_one_whatever_it_holds(rows, eps, last):
    h = torch.tensor(rows, dtype=torch.float64)
    h2 = h.clone()
    h2[:, -1] = last
    w1, rho1, N1 = act.halting_distribution(h, eps)
    w2, rho2, N2 = act.halting_distribution(h2, eps)
    assert torch.equal(N1, N2)
    assert torch.equal(w1, w2)
    assert torch.equal(rho1, rho2)


def test_examples_by_hand():
    h = torch.tensor([[0.2, 0.3, 0.6, 0.9],     # cumsum 0.2 0.5 1.1 -> N = 3, R = 0.5
                      [0.0, 0.0, 0.0, 0.0],     # never reaches: N = L = 4, R = 1
                      [1.0, 0.3, 0.2, 0.1],     # N = 1, R = 1
                      [0.5, 0.495, 0.1, 0.0]])  # 0.995 >= 0.99 -> N = 2, R = 0.5
    w, rho, N = act.halting_distribution(h.double(), eps=0.01)
    assert N.tolist() == [3, 4, 1, 2]
    expected = [[0.2, 0.3, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0],
                [0.5, 0.5, 0.0, 0.0]]
    assert torch.allclose(w, torch.tensor(expected, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(rho, torch.tensor([3.5, 5.0, 2.0, 2.5], dtype=torch.float64), atol=1e-12)


def test_eps_changes_N():
    h = torch.tensor([[0.5, 0.45, 0.05, 0.0]], dtype=torch.float64)   # cumsum 0.5, 0.95, 1.0
    assert act.halting_distribution(h, eps=0.1)[2].tolist() == [2]    # 0.95 >= 0.9
    assert act.halting_distribution(h, eps=0.01)[2].tolist() == [3]   # 0.95 < 0.99
    w, rho, _ = act.halting_distribution(h, eps=0.1)
    assert torch.allclose(w, torch.tensor([[0.5, 0.5, 0.0, 0.0]], dtype=torch.float64))
    assert rho.item() == pytest.approx(2.5)


def test_single_step_block():
    h = torch.tensor([[0.0], [0.7], [1.0]])
    w, rho, N = act.halting_distribution(h)
    assert N.tolist() == [1, 1, 1]
    assert w.tolist() == [[1.0], [1.0], [1.0]]
    assert rho.tolist() == [2.0, 2.0, 2.0]


def test_float32_inputs_keep_dtype():
    h = torch.rand(5, 6, generator=torch.Generator().manual_seed(0))
    w, rho, N = act.halting_distribution(h)
    assert w.dtype == torch.float32 and rho.dtype == torch.float32 and N.dtype == torch.int64
    assert torch.allclose(w.sum(1), torch.ones(5))


# --------------------------------------------------------------------------- gradients


@FAST
@given(score_matrices(values=mixed), eps_values)
def test_ponder_cost_gradient_is_minus_one_before_N_and_zero_after(rows, eps):
    h = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    _, rho, N = act.halting_distribution(h, eps)
    rho.sum().backward()
    for b in range(len(rows)):
        n_b = int(N[b])
        for n in range(1, len(rows[0]) + 1):
            expected = -1.0 if n < n_b else 0.0
            assert h.grad[b, n - 1].item() == expected


def _well_inside(h, eps, margin=1e-3):
    """True when no partial sum (with h_L = 1) sits within ``margin`` of 1 - eps."""
    hh = torch.cat([h[:, :-1], torch.ones_like(h[:, :1])], dim=1)
    return bool(((hh.cumsum(1) - (1 - eps)).abs() > margin).all())


def test_weights_and_rho_gradcheck_away_from_threshold():
    gen = torch.Generator().manual_seed(1)
    checked = 0
    for _ in range(50):
        h = torch.rand(3, 5, generator=gen, dtype=torch.float64) * 0.6
        if not _well_inside(h, 0.01):
            continue
        h.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x: act.halting_distribution(x, 0.01)[0], (h,))
        assert torch.autograd.gradcheck(lambda x: act.halting_distribution(x, 0.01)[1], (h,))
        checked += 1
    assert checked >= 5


def test_weight_jacobian_matches_definition():
    # p^l = h^l (l < N), R = 1 - sum_{l<N} h^l: d p^N / d h^l = -1 for l < N.
    h = torch.tensor([[0.2, 0.3, 0.6, 0.9]], dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda x: act.halting_distribution(x, 0.01)[0], h)
    jac = jac[0, :, 0, :]                                          # (L out, L in)
    expected = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [-1, -1, 0, 0], [0, 0, 0, 0]],
                            dtype=torch.float64)
    assert torch.equal(jac, expected)


# --------------------------------------------------------------------------- reached_threshold


@FAST
@given(score_matrices(values=mixed), eps_values)
def test_reached_threshold_matches_running_sum_without_last_is_one(rows, eps):
    h = torch.tensor(rows, dtype=torch.float64)
    reached = act.reached_threshold(h, eps)
    assert reached.dtype == torch.bool and reached.shape == h.shape
    for b, row in enumerate(rows):
        total = 0.0
        for n, value in enumerate(row):
            total += value
            assert bool(reached[b, n]) == (total >= 1 - eps)


@FAST
@given(score_matrices(values=mixed), eps_values, st.data())
def test_reached_threshold_on_prefixes(rows, eps, data):
    h = torch.tensor(rows, dtype=torch.float64)
    k = data.draw(st.integers(1, h.shape[1]))
    full = act.reached_threshold(h, eps)
    prefix = act.reached_threshold(h[:, :k], eps)
    assert torch.equal(prefix, full[:, :k])
    # once reached, it stays reached (scores are non-negative)
    assert bool((full[:, 1:] >= full[:, :-1]).all())


def test_reached_threshold_does_not_force_last_step():
    h = torch.zeros(2, 3)
    assert not act.reached_threshold(h).any()
    h = torch.tensor([[0.2, 0.3, 0.49]])
    assert act.reached_threshold(h, eps=0.01).tolist() == [[False, False, True]]
    assert act.reached_threshold(h, eps=0.5).tolist() == [[False, True, True]]


# --------------------------------------------------------------------------- bad input

GOOD = torch.full((2, 3), 0.3)


BAD_H = bad_values(GOOD) + BAD_SHAPES + [
    pytest.param(with_value(GOOD, float("inf"), (0, 0)), id="inf"),
    pytest.param(torch.zeros(2, 3, dtype=torch.int64), id="integer-dtype"),
    pytest.param([[0.1, 0.2]], id="not-a-tensor"),
]

BAD_EPS = [0.0, 1.0, -0.1, 1.5, float("nan"), 0, 1]


@pytest.mark.parametrize("h", BAD_H)
def test_halting_distribution_rejects_bad_h(h):
    with pytest.raises(ValueError, match=r"^h\b"):
        act.halting_distribution(h)


@pytest.mark.parametrize("h", BAD_H)
def test_reached_threshold_rejects_bad_h(h):
    with pytest.raises(ValueError, match=r"^h\b"):
        act.reached_threshold(h)


def test_halting_distribution_rejects_three_dimensional_h():
    with pytest.raises(ValueError, match=r"^h\b"):
        act.halting_distribution(torch.full((2, 3, 4), 0.3))


@pytest.mark.parametrize("eps", BAD_EPS)
def test_rejects_bad_eps(eps):
    with pytest.raises(ValueError, match=r"^eps\b"):
        act.halting_distribution(GOOD, eps)
    with pytest.raises(ValueError, match=r"^eps\b"):
        act.reached_threshold(GOOD, eps)
