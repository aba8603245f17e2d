"""Tests for adaptive.pondernet: PonderNet (Banino, Balaguer & Blundell 2021).

References: p_n = lambda_n prod_{j<n} (1 - lambda_j) with lambda_L = 1; the
geometric prior lambda_p (1 - lambda_p)^(n-1) truncated to L steps and
renormalised; KL(p || p_G) (the halting distribution first); the expected
per-step loss sum_n p_n loss_n. All written out by hand.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import BAD_SHAPES, bad_values, halting_reference, matrices

from adaptive import pondernet

FAST = settings(max_examples=50, deadline=None)

lambda_ps = st.floats(1e-6, 1 - 1e-6)



@st.composite
def distributions(draw, max_batch=4, max_steps=7, allow_zeros=True):
    """(B, L) rows on the simplex, with exact zeros mixed in when asked."""
    batch = draw(st.integers(1, max_batch))
    steps = draw(st.integers(1, max_steps))
    rows = []
    for _ in range(batch):
        raw = [draw(st.floats(0.01, 1.0)) for _ in range(steps)]
        if allow_zeros and steps > 1:
            zeros = draw(st.lists(st.integers(0, steps - 1), max_size=steps - 1, unique=True))
            for k in zeros:
                raw[k] = 0.0
        total = math.fsum(raw)
        rows.append([r / total for r in raw])
    return rows


ref_halting = halting_reference


def ref_prior(lambda_p, L):
    """lambda_p (1 - lambda_p)^(n-1) / sum_{k<=L} lambda_p (1 - lambda_p)^(k-1)."""
    unnorm = [lambda_p * (1 - lambda_p) ** (n - 1) for n in range(1, L + 1)]
    total = -math.expm1(L * math.log1p(-lambda_p))          # 1 - (1 - lambda_p)^L, stably
    return [u / total for u in unnorm], unnorm


def ref_kl(p_row, q_row):
    """KL(p || q) = sum_n p_n log(p_n / q_n), with 0 log 0 = 0."""
    return math.fsum(p * math.log(p / q) for p, q in zip(p_row, q_row) if p > 0)


# --------------------------------------------------------------------------- halting distribution


@FAST
@given(matrices())
def test_halting_distribution_matches_product_formula(rows):
    p = pondernet.halting_distribution(torch.tensor(rows, dtype=torch.float64))
    assert p.shape == (len(rows), len(rows[0]))
    for b, row in enumerate(rows):
        assert p[b].tolist() == pytest.approx(ref_halting(row), abs=1e-14)
    assert torch.allclose(p.sum(1), torch.ones(len(rows), dtype=torch.float64), atol=1e-12)
    assert bool((p >= 0).all())


def test_halting_distribution_example_and_last_lambda():
    lam = torch.tensor([[0.1, 0.5, 0.3], [0.1, 0.5, 0.9]], dtype=torch.float64)
    p = pondernet.halting_distribution(lam)
    # lambda_3 is taken as 1 in both rows: (0.1, 0.9 * 0.5, 0.9 * 0.5)
    assert p.tolist() == [pytest.approx([0.1, 0.45, 0.45])] * 2


def test_halting_distribution_gradcheck():
    gen = torch.Generator().manual_seed(0)
    lam = (0.05 + 0.9 * torch.rand(3, 5, generator=gen, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(pondernet.halting_distribution, (lam,))


# --------------------------------------------------------------------------- geometric prior


@FAST
@given(lambda_ps, st.integers(1, 80))
def test_geometric_prior_is_renormalised_truncated_geometric(lambda_p, L):
    prior = pondernet.geometric_prior(lambda_p, L)
    assert prior.shape == (L,) and prior.dtype == torch.float64
    assert prior.sum().item() == pytest.approx(1.0, abs=1e-10)
    expected, unnorm = ref_prior(lambda_p, L)
    assert prior.tolist() == pytest.approx(expected, rel=1e-8, abs=1e-300)
    # proportional to lambda_p (1 - lambda_p)^(n-1), the ratio being 1 / (1 - (1 - lambda_p)^L)
    ratio = prior / torch.tensor(unnorm, dtype=torch.float64)
    finite = torch.tensor([u > 1e-250 for u in unnorm])
    assert torch.allclose(ratio[finite], ratio[finite][0].expand(int(finite.sum())), rtol=1e-8)


def test_geometric_prior_by_hand_is_not_the_untruncated_pmf():
    prior = pondernet.geometric_prior(0.5, 3)
    # the untruncated pmf (0.5, 0.25, 0.125) sums to 0.875; renormalised it is (4/7, 2/7, 1/7)
    assert prior.tolist() == pytest.approx([4 / 7, 2 / 7, 1 / 7], abs=1e-12)
    assert pondernet.geometric_prior(0.3, 1).tolist() == [pytest.approx(1.0)]


# --------------------------------------------------------------------------- KL


@FAST
@given(distributions(), lambda_ps.filter(lambda x: 1e-3 < x < 1 - 1e-3))
def test_kl_matches_hand_computation_and_is_non_negative(rows, lambda_p):
    kl = pondernet.kl_to_prior(torch.tensor(rows, dtype=torch.float64), lambda_p)
    assert kl.shape == (len(rows),)
    prior, _ = ref_prior(lambda_p, len(rows[0]))
    for b, row in enumerate(rows):
        assert float(kl[b]) == pytest.approx(ref_kl(row, prior), rel=1e-9, abs=1e-10)
    assert bool(torch.isfinite(kl).all())
    assert bool((kl >= -1e-12).all())


@FAST
@given(lambda_ps.filter(lambda x: 1e-3 < x < 1 - 1e-3), st.integers(1, 30))
def test_kl_is_zero_at_the_prior(lambda_p, L):
    prior, _ = ref_prior(lambda_p, L)
    prior = [min(q, 1.0) for q in prior]          # rounding may give 1 + 1 ulp when L = 1
    p = torch.tensor([prior, prior], dtype=torch.float64)
    kl = pondernet.kl_to_prior(p, lambda_p)
    assert torch.allclose(kl, torch.zeros(2, dtype=torch.float64), atol=1e-10)


def test_kl_direction_is_p_to_prior():
    # lambda_p = 0.5, L = 2: prior = (2/3, 1/3); p = (0.9, 0.1)
    p = torch.tensor([[0.9, 0.1]], dtype=torch.float64)
    forward = 0.9 * math.log(0.9 / (2 / 3)) + 0.1 * math.log(0.1 / (1 / 3))
    reverse = (2 / 3) * math.log((2 / 3) / 0.9) + (1 / 3) * math.log((1 / 3) / 0.1)
    assert abs(forward - reverse) > 0.02                  # the two directions really differ
    kl = pondernet.kl_to_prior(p, 0.5).item()
    assert kl == pytest.approx(forward, abs=1e-12)
    assert kl != pytest.approx(reverse, abs=1e-3)


def test_kl_with_zeros_in_p_is_finite():
    # KL(p || prior) is finite when p has zeros (the reverse direction would be infinite).
    p = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.0, 0.5]], dtype=torch.float64)
    kl = pondernet.kl_to_prior(p, 0.2)
    assert not torch.isnan(kl).any() and bool(torch.isfinite(kl).all())
    prior, _ = ref_prior(0.2, 3)
    assert kl.tolist() == pytest.approx([ref_kl(row, prior) for row in p.tolist()], abs=1e-12)
    assert kl[0].item() == pytest.approx(-math.log(prior[0]))


def test_kl_gradient_where_p_has_zeros_is_not_nan_on_support():
    p = torch.tensor([[0.7, 0.0, 0.3]], dtype=torch.float64, requires_grad=True)
    pondernet.kl_to_prior(p, 0.3).sum().backward()
    prior, _ = ref_prior(0.3, 3)
    # d/dp_n sum p log p - p log q = log p_n + 1 - log q_n on the support
    for n in (0, 2):
        expected = math.log(p[0, n].item()) + 1 - math.log(prior[n])
        assert p.grad[0, n].item() == pytest.approx(expected, abs=1e-12)


def test_kl_gradcheck():
    gen = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(3, 5, generator=gen, dtype=torch.float64), 1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: pondernet.kl_to_prior(x, 0.25), (p,))


def test_kl_float32_input():
    p = torch.tensor([[0.25, 0.25, 0.5]])
    kl = pondernet.kl_to_prior(p, 0.4)
    prior, _ = ref_prior(0.4, 3)
    assert kl.dtype == torch.float32
    assert kl.item() == pytest.approx(ref_kl([0.25, 0.25, 0.5], prior), abs=1e-6)


# --------------------------------------------------------------------------- reconstruction


@FAST
@given(st.data())
def test_reconstruction_loss_is_expected_step_loss(data):
    rows = data.draw(distributions())
    B, L = len(rows), len(rows[0])
    losses = [[data.draw(st.floats(-10, 10)) for _ in range(L)] for _ in range(B)]
    out = pondernet.reconstruction_loss(torch.tensor(losses, dtype=torch.float64),
                                        torch.tensor(rows, dtype=torch.float64))
    assert out.shape == (B,)
    for b in range(B):
        expected = math.fsum(p * l for p, l in zip(rows[b], losses[b]))
        assert float(out[b]) == pytest.approx(expected, abs=1e-12)


def test_reconstruction_loss_gradcheck():
    gen = torch.Generator().manual_seed(2)
    losses = torch.rand(3, 4, generator=gen, dtype=torch.float64).requires_grad_(True)
    p = torch.softmax(torch.randn(3, 4, generator=gen, dtype=torch.float64), 1).requires_grad_(True)
    assert torch.autograd.gradcheck(pondernet.reconstruction_loss, (losses, p))


def test_full_objective_by_hand():
    # L = sum_n p_n loss_n + beta KL(p || p_G) on one example.
    lam = torch.tensor([[0.5, 0.5, 0.5]], dtype=torch.float64)
    p = pondernet.halting_distribution(lam)                   # (0.5, 0.25, 0.25)
    losses = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
    prior = [4 / 7, 2 / 7, 1 / 7]                             # lambda_p = 0.5, L = 3
    total = pondernet.reconstruction_loss(losses, p) + 0.1 * pondernet.kl_to_prior(p, 0.5)
    expected = 0.5 + 0.5 + 1.0 + 0.1 * ref_kl([0.5, 0.25, 0.25], prior)
    assert total.item() == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- bad input

GOOD = torch.full((2, 3), 0.4)
BAD_VALUES = bad_values(GOOD)


@pytest.mark.parametrize("lam", BAD_VALUES + BAD_SHAPES)
def test_halting_distribution_rejects_bad_lambda_naming_it(lam):
    with pytest.raises(ValueError, match=r"^lam"):
        pondernet.halting_distribution(lam)


@pytest.mark.parametrize("p", BAD_VALUES + BAD_SHAPES)
def test_kl_rejects_bad_p(p):
    with pytest.raises(ValueError, match=r"^p\b"):
        pondernet.kl_to_prior(p, 0.5)


@pytest.mark.parametrize("lambda_p", [0.0, 1.0, -0.5, 1.5, float("nan"), "0.5"])
def test_rejects_bad_lambda_p(lambda_p):
    with pytest.raises(ValueError, match=r"^lambda_p\b"):
        pondernet.geometric_prior(lambda_p, 3)
    with pytest.raises(ValueError, match=r"^lambda_p\b"):
        pondernet.kl_to_prior(GOOD / GOOD.sum(1, keepdim=True), lambda_p)


@pytest.mark.parametrize("L", [0, -1, 2.0, None])
def test_geometric_prior_rejects_bad_L(L):
    with pytest.raises(ValueError, match=r"^L\b"):
        pondernet.geometric_prior(0.5, L)


@pytest.mark.parametrize("p", [
    pytest.param(torch.full((2, 4), 0.25), id="more-steps"),
    pytest.param(torch.full((3, 3), 0.25), id="more-batch"),
])
def test_reconstruction_loss_rejects_mismatched_shapes(p):
    with pytest.raises(ValueError, match=r"^step_losses and p\b"):
        pondernet.reconstruction_loss(torch.ones(2, 3), p)


@pytest.mark.parametrize("p", [
    pytest.param(torch.full((2,), 0.5), id="one-dimensional"),
    pytest.param(torch.full((2, 3, 1), 1 / 3), id="trailing-dimension"),
])
def test_reconstruction_loss_refuses_p_that_is_not_batch_by_steps(p):
    with pytest.raises(ValueError, match=r"^p must have shape \(B, L\)"):
        pondernet.reconstruction_loss(torch.ones(2, 3), p)


@pytest.mark.parametrize("rows", [[[0.2, 0.2, 0.1]], [[0.5, 0.5, 0.5]]])
def test_kl_refuses_rows_that_are_not_distributions(rows):
    """Such rows gave a negative 'KL' before."""
    with pytest.raises(ValueError, match=r"^every row of p must be a distribution"):
        pondernet.kl_to_prior(torch.tensor(rows), 0.3)


@pytest.mark.parametrize("losses", [
    pytest.param(torch.zeros(2, 0), id="no-steps"),
    pytest.param(torch.ones(3), id="one-dimensional"),
])
def test_reconstruction_loss_rejects_bad_step_losses(losses):
    with pytest.raises(ValueError, match=r"^step_losses\b"):
        pondernet.reconstruction_loss(losses, torch.ones(2, 3) / 3)


def test_kl_gradient_is_finite_when_a_halting_probability_saturates():
    """In float32 training lambda reaches exactly 1, and every later p_n is exactly 0."""
    lam = torch.tensor([[0.3, 1.0, 0.5, 0.2]], requires_grad=True)
    kl = pondernet.kl_to_prior(pondernet.halting_distribution(lam), 0.2)
    kl.sum().backward()
    assert torch.isfinite(kl).all() and torch.isfinite(lam.grad).all()
    assert lam.grad[0, 2:].abs().sum() == 0          # steps after a certain halt get no gradient
