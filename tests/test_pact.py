"""Tests for adaptive.pact: Probabilistic ACT (Figurnov, Sobolev & Vetrov 2018).

References: eq. 7 (Concrete / RelaxedBernoulli sampling), eqs. 12-17 (halting
variables and stick breaking), eq. 14 (q(z = l)), eq. 19 (truncated geometric
prior) and eq. 23 (expected number of steps), all written out by hand.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import BAD_SHAPES, bad_values, halting_reference, matrices, mixed, stick_breaking_reference, unit

from adaptive import pact

FAST = settings(max_examples=50, deadline=None)




def gen(seed):
    return torch.Generator().manual_seed(seed)


ref_q = halting_reference


ref_stick = stick_breaking_reference


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def logit(x):
    return math.log(x / (1 - x))


# --------------------------------------------------------------------------- sample_halt


@FAST
@given(st.lists(mixed, min_size=1, max_size=20))
def test_thresholded_is_h_above_half(values):
    h = torch.tensor(values, dtype=torch.float64)
    xi = pact.sample_halt(h, "thresholded")
    assert xi.dtype == h.dtype and xi.shape == h.shape
    assert xi.tolist() == [1.0 if v > 0.5 else 0.0 for v in values]


def test_thresholded_at_exactly_half_does_not_halt():
    xi = pact.sample_halt(torch.tensor([0.5, 0.5000001, 0.4999999]), "thresholded")
    assert xi.tolist() == [0.0, 1.0, 0.0]


def test_discrete_values_are_binary_with_mean_h():
    probs = torch.tensor([0.0, 0.05, 0.3, 0.5, 0.77, 0.95, 1.0], dtype=torch.float64)
    n = 40000
    xi = pact.sample_halt(probs.expand(n, -1).contiguous(), "discrete", generator=gen(0))
    assert set(xi.unique().tolist()) <= {0.0, 1.0}
    mean = xi.mean(0)
    sigma = (probs * (1 - probs) / n).sqrt()
    assert bool(((mean - probs).abs() <= 5 * sigma + 1e-12).all()), (mean, probs)
    assert mean[0].item() == 0.0 and mean[-1].item() == 1.0      # h = 0 never, h = 1 always


def test_discrete_is_not_a_threshold():
    # Bernoulli draws for h = 0.3 are sometimes 1, for h = 0.7 sometimes 0.
    xi = pact.sample_halt(torch.tensor([[0.3, 0.7]]).expand(2000, -1).contiguous(), "discrete",
                          generator=gen(5))
    assert 0 < xi[:, 0].sum() < 2000 and 0 < xi[:, 1].sum() < 2000


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.0])
def test_relaxed_is_in_open_unit_interval_and_keeps_p_above_half(temperature):
    probs = torch.tensor([0.02, 0.2, 0.5, 0.64, 0.9, 0.98], dtype=torch.float64)
    n = 40000
    xi = pact.sample_halt(probs.expand(n, -1).contiguous(), "relaxed", temperature, generator=gen(1))
    assert bool((xi >= 0).all()) and bool((xi <= 1).all())
    if temperature >= 1.0:
        # strictly inside (0, 1); at low temperature float64 sigmoid saturates to exactly 0 or 1
        assert bool((xi > 0).all()) and bool((xi < 1).all())
    # eq. 7 property: P(relaxed > 0.5) = P(Bernoulli = 1) = h
    above = (xi > 0.5).double().mean(0)
    sigma = (probs * (1 - probs) / n).sqrt()
    assert bool(((above - probs).abs() <= 5 * sigma).all()), (above, probs)


@pytest.mark.parametrize("temperature", [0.25, 0.7, 1.0, 3.0])
@pytest.mark.parametrize("prob", [0.15, 0.5, 0.8])
def test_relaxed_matches_concrete_cdf(temperature, prob):
    """Eq. 7: xi = sigmoid((logit h + logit u) / lambda) gives P(xi <= x) = sigmoid(lambda logit x - logit h)."""
    n = 40000
    xi = pact.sample_halt(torch.full((n,), prob, dtype=torch.float64), "relaxed", temperature,
                          generator=gen(2))
    for x in [0.05, 0.2, 0.4, 0.6, 0.8, 0.95]:
        cdf = sigmoid(temperature * logit(x) - logit(prob))
        empirical = (xi <= x).double().mean().item()
        assert abs(empirical - cdf) <= 5 * math.sqrt(cdf * (1 - cdf) / n) + 1e-3, (x, empirical, cdf)


def test_relaxed_approaches_bernoulli_as_temperature_shrinks():
    probs = torch.tensor([0.1, 0.35, 0.6, 0.9], dtype=torch.float64)
    n = 20000
    h = probs.expand(n, -1).contiguous()
    middle = []
    for temperature in [2.0, 0.5, 0.1, 0.01]:
        xi = pact.sample_halt(h, "relaxed", temperature, generator=gen(3))
        middle.append(((xi > 1e-3) & (xi < 1 - 1e-3)).double().mean().item())
        if temperature == 0.01:
            # nearly binary, and its mean is close to h (a Bernoulli(h) limit)
            assert middle[-1] < 0.05
            assert torch.allclose(xi.mean(0), probs, atol=0.02)
    assert middle == sorted(middle, reverse=True) and middle[0] > 0.5


@pytest.mark.parametrize("mode", ["discrete", "relaxed"])
def test_generator_makes_samples_reproducible(mode):
    h = torch.rand(50, 7, generator=gen(9))
    a = pact.sample_halt(h, mode, 0.5, generator=gen(123))
    b = pact.sample_halt(h, mode, 0.5, generator=gen(123))
    c = pact.sample_halt(h, mode, 0.5, generator=gen(124))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    za = pact.halting_distribution(h, mode, 0.5, generator=gen(7))
    zb = pact.halting_distribution(h, mode, 0.5, generator=gen(7))
    zc = pact.halting_distribution(h, mode, 0.5, generator=gen(8))
    assert torch.equal(za, zb)
    assert not torch.equal(za, zc)


def test_relaxed_is_reparameterised():
    h = (0.05 + 0.9 * torch.rand(30, 5, generator=gen(4), dtype=torch.float64)).requires_grad_(True)
    temperature = 0.7
    xi = pact.sample_halt(h, "relaxed", temperature, generator=gen(8))
    xi.sum().backward()
    assert h.grad is not None and bool(torch.isfinite(h.grad).all())
    assert bool((h.grad > 0).all())        # xi grows with h
    # d xi / d h = xi (1 - xi) / (lambda h (1 - h)) for xi = sigmoid((logit h + logit u) / lambda)
    x = xi.detach()
    hd = h.detach()
    expected = x * (1 - x) / (temperature * hd * (1 - hd))
    assert torch.allclose(h.grad, expected, rtol=1e-8, atol=1e-12)


def test_relaxed_gradcheck_with_fixed_noise():
    h = (0.05 + 0.9 * torch.rand(3, 4, generator=gen(6), dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: pact.sample_halt(x, "relaxed", 0.6, generator=gen(11)), (h,))
    assert torch.autograd.gradcheck(
        lambda x: pact.halting_distribution(x, "relaxed", 0.6, generator=gen(12)), (h,))


def test_sample_halt_any_shape():
    h = torch.rand(2, 3, 4, 5, generator=gen(0))
    for mode in pact.MODES:
        assert pact.sample_halt(h, mode, generator=gen(1)).shape == h.shape


# --------------------------------------------------------------------------- stick breaking


@FAST
@given(matrices())
def test_stick_breaking_matches_explicit_products(rows):
    xi = torch.tensor(rows, dtype=torch.float64)
    z = pact.stick_breaking(xi)
    assert z.shape == xi.shape
    for b, row in enumerate(rows):
        assert z[b].tolist() == pytest.approx(ref_stick(row), abs=1e-14)


def test_stick_breaking_over_extra_dims():
    xi = torch.rand(2, 4, 3, generator=gen(2), dtype=torch.float64)
    z = pact.stick_breaking(xi)
    for b in range(2):
        for k in range(3):
            assert z[b, :, k].tolist() == pytest.approx(ref_stick(xi[b, :, k].tolist()), abs=1e-14)


def test_stick_breaking_of_binary_is_first_one():
    xi = torch.tensor([[0., 1., 1., 0.], [0., 0., 0., 1.], [1., 1., 1., 1.], [0., 0., 0., 0.]])
    assert pact.stick_breaking(xi).tolist() == [[0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]]


def test_stick_breaking_gradcheck():
    xi = (0.05 + 0.9 * torch.rand(3, 5, generator=gen(3), dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(pact.stick_breaking, (xi,))


# --------------------------------------------------------------------------- halting distribution


@settings(max_examples=40, deadline=None)
@given(matrices(), st.sampled_from(pact.MODES), st.floats(0.05, 5.0), st.integers(0, 2**31 - 1))
def test_halting_distribution_is_a_distribution(rows, mode, temperature, seed):
    h = torch.tensor(rows, dtype=torch.float64)
    z = pact.halting_distribution(h, mode, temperature, generator=gen(seed))
    assert z.shape == h.shape
    assert bool((z >= 0).all())
    assert torch.allclose(z.sum(1), torch.ones(len(rows), dtype=torch.float64), atol=1e-12)
    if mode != "relaxed":
        assert set(z.unique().tolist()) <= {0.0, 1.0}
        assert bool((z.sum(1) == 1).all())


@FAST
@given(matrices())
def test_thresholded_distribution_picks_first_step_above_half(rows):
    z = pact.halting_distribution(torch.tensor(rows, dtype=torch.float64), "thresholded")
    L = len(rows[0])
    for b, row in enumerate(rows):
        first = next((l for l in range(L - 1) if row[l] > 0.5), L - 1)
        expected = [0.0] * L
        expected[first] = 1.0
        assert z[b].tolist() == expected


@settings(max_examples=40, deadline=None)
@given(matrices(), st.sampled_from(pact.MODES), unit, st.integers(0, 2**31 - 1))
def test_halting_distribution_ignores_last_score(rows, mode, last, seed):
    h = torch.tensor(rows, dtype=torch.float64)
    h2 = h.clone()
    h2[:, -1] = last
    z1 = pact.halting_distribution(h, mode, 0.8, generator=gen(seed))
    z2 = pact.halting_distribution(h2, mode, 0.8, generator=gen(seed))
    assert torch.equal(z1, z2)


def test_discrete_distribution_samples_eq14():
    h = torch.tensor([0.2, 0.5, 0.1, 0.7, 0.3])
    q = ref_q(h.tolist())
    n = 40000
    z = pact.halting_distribution(h.expand(n, -1).contiguous(), "discrete", generator=gen(10))
    freq = z.double().mean(0)
    for l in range(5):
        assert abs(freq[l].item() - q[l]) <= 5 * math.sqrt(q[l] * (1 - q[l]) / n)


def test_relaxed_distribution_is_nearly_one_hot_at_low_temperature():
    h = torch.rand(500, 6, generator=gen(13), dtype=torch.float64)
    z = pact.halting_distribution(h, "relaxed", 0.01, generator=gen(14))
    assert (z.max(1).values > 0.99).double().mean() > 0.9
    z_hot = pact.halting_distribution(h, "relaxed", 5.0, generator=gen(14))
    assert (z_hot.max(1).values > 0.99).double().mean() < 0.2


# --------------------------------------------------------------------------- eq. 14, eq. 23


@FAST
@given(matrices())
def test_halting_probabilities_match_eq14(rows):
    q = pact.halting_probabilities(torch.tensor(rows, dtype=torch.float64))
    for b, row in enumerate(rows):
        assert q[b].tolist() == pytest.approx(ref_q(row), abs=1e-14)
    assert torch.allclose(q.sum(1), torch.ones(len(rows), dtype=torch.float64), atol=1e-12)


@FAST
@given(matrices())
def test_expected_steps_is_sum_l_q_l(rows):
    N = pact.expected_steps(torch.tensor(rows, dtype=torch.float64))
    assert N.shape == (len(rows),)
    L = len(rows[0])
    for b, row in enumerate(rows):
        expected = math.fsum(l * q for l, q in enumerate(ref_q(row), start=1))
        assert float(N[b]) == pytest.approx(expected, abs=1e-12)
        assert 1 - 1e-12 <= float(N[b]) <= L + 1e-12


def test_expected_steps_examples():
    h = torch.tensor([[1.0, 0.3, 0.3], [0.0, 0.0, 0.0], [0.5, 0.5, 0.0]], dtype=torch.float64)
    # row 3: q = (0.5, 0.25, 0.25) -> N = 0.5 + 0.5 + 0.75
    assert pact.expected_steps(h).tolist() == pytest.approx([1.0, 3.0, 1.75])


def test_expected_steps_and_q_ignore_last_score():
    h = torch.rand(4, 5, generator=gen(15), dtype=torch.float64)
    h2 = h.clone()
    h2[:, -1] = 1 - h2[:, -1]
    assert torch.equal(pact.expected_steps(h), pact.expected_steps(h2))
    assert torch.equal(pact.halting_probabilities(h), pact.halting_probabilities(h2))


def test_expected_steps_gradcheck():
    h = (0.05 + 0.9 * torch.rand(3, 5, generator=gen(16), dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(pact.expected_steps, (h,))
    assert torch.autograd.gradcheck(pact.halting_probabilities, (h,))


def test_expected_steps_gradient_by_hand():
    # L = 2: N = h1 + 2 (1 - h1) = 2 - h1, so dN/dh1 = -1 and the last score has no gradient.
    h = torch.tensor([[0.3, 0.9]], dtype=torch.float64, requires_grad=True)
    pact.expected_steps(h).sum().backward()
    assert h.grad.tolist() == [[-1.0, 0.0]]


# --------------------------------------------------------------------------- eq. 19


def ref_log_prior(z, tau, L):
    """log[(e^tau - 1) / (1 - e^{-tau L}) e^{-tau z}] written stably: e^tau - 1 = e^tau (1 - e^-tau)."""
    return -tau * (z - 1) + math.log(-math.expm1(-tau)) - math.log(-math.expm1(-tau * L))


@FAST
@given(st.floats(1e-3, 30.0), st.integers(1, 60))
def test_truncated_geometric_normalised_and_matches_eq19(tau, L):
    z = torch.arange(1, L + 1)
    logp = pact.truncated_geometric_log_prob(z, tau, L)
    assert logp.shape == (L,)
    assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-10)
    for k in range(1, L + 1):
        assert logp[k - 1].item() == pytest.approx(ref_log_prior(k, tau, L), rel=1e-9, abs=1e-9)


@FAST
@given(st.floats(1e-3, 10.0), st.integers(2, 40))
def test_truncated_geometric_log_linear_with_slope_minus_tau(tau, L):
    logp = pact.truncated_geometric_log_prob(torch.arange(1, L + 1), tau, L)
    diffs = logp[1:] - logp[:-1]
    assert torch.allclose(diffs, torch.full_like(diffs, -tau), rtol=1e-9, atol=1e-9)


def test_truncated_geometric_example_by_hand():
    # tau = log 2, L = 3: p(z) proportional to 2^-z -> (4/7, 2/7, 1/7).
    logp = pact.truncated_geometric_log_prob(torch.tensor([1, 2, 3]), math.log(2), 3)
    assert logp.exp().tolist() == pytest.approx([4 / 7, 2 / 7, 1 / 7], abs=1e-12)


def test_truncated_geometric_accepts_ints_and_whole_floats():
    tau, L = 0.5, 4
    scalar = pact.truncated_geometric_log_prob(2, tau, L)
    assert scalar.shape == ()
    assert scalar.item() == pytest.approx(ref_log_prior(2, tau, L))
    whole = pact.truncated_geometric_log_prob(torch.tensor([[1.0, 4.0]]), tau, L)
    assert whole.shape == (1, 2)
    assert whole[0].tolist() == pytest.approx([ref_log_prior(1, tau, L), ref_log_prior(4, tau, L)])


def test_truncated_geometric_single_step_is_certain():
    assert pact.truncated_geometric_log_prob(1, 3.0, 1).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("tau", [50.0, 800.0])
def test_truncated_geometric_large_tau(tau):
    """tau > 0 is the documented domain; a large penalty puts all mass on z = 1."""
    logp = pact.truncated_geometric_log_prob(torch.tensor([1, 2, 3]), tau, 3)
    assert bool(torch.isfinite(logp).all())
    assert logp[0].item() == pytest.approx(0.0, abs=1e-12)
    assert logp.tolist() == pytest.approx([ref_log_prior(z, tau, 3) for z in (1, 2, 3)], rel=1e-12)


# --------------------------------------------------------------------------- bad input

GOOD = torch.full((2, 3), 0.4)
BAD_VALUES = bad_values(GOOD)


@pytest.mark.parametrize("h", BAD_VALUES)
@pytest.mark.parametrize("mode", pact.MODES)
def test_sample_halt_rejects_bad_h(h, mode):
    with pytest.raises(ValueError, match=r"^h\b"):
        pact.sample_halt(h, mode)


@pytest.mark.parametrize("h", BAD_VALUES + BAD_SHAPES + [
    pytest.param(torch.full((2, 3, 2), 0.4), id="three-dimensional")])
def test_halting_distribution_rejects_bad_h(h):
    with pytest.raises(ValueError, match=r"^h\b"):
        pact.halting_distribution(h)


@pytest.mark.parametrize("fn", [pact.halting_probabilities, pact.expected_steps])
@pytest.mark.parametrize("h", BAD_VALUES + BAD_SHAPES)
def test_eq14_functions_reject_bad_h_naming_h(fn, h):
    with pytest.raises(ValueError, match=r"^h\b"):
        fn(h)


@pytest.mark.parametrize("xi", BAD_VALUES + BAD_SHAPES)
def test_stick_breaking_rejects_bad_xi(xi):
    with pytest.raises(ValueError, match=r"^xi\b"):
        pact.stick_breaking(xi)


@pytest.mark.parametrize("mode", ["gumbel", "Relaxed", "", None])
def test_rejects_unknown_mode(mode):
    with pytest.raises(ValueError, match=r"^mode\b"):
        pact.sample_halt(GOOD, mode)
    with pytest.raises(ValueError, match=r"^mode\b"):
        pact.halting_distribution(GOOD, mode)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), "1"])
def test_rejects_bad_temperature(temperature):
    with pytest.raises(ValueError, match=r"^temperature\b"):
        pact.sample_halt(GOOD, "relaxed", temperature)
    with pytest.raises(ValueError, match=r"^temperature\b"):
        pact.halting_distribution(GOOD, "relaxed", temperature)


@pytest.mark.parametrize("z", [0, 5, -1, torch.tensor([1, 2, 0]), torch.tensor([4, 5]),
                               torch.tensor([1.5]), 2.5])
def test_truncated_geometric_rejects_z_outside_range(z):
    with pytest.raises(ValueError, match=r"^z\b"):
        pact.truncated_geometric_log_prob(z, 0.5, 4)


@pytest.mark.parametrize("tau", [0.0, -0.5, float("nan")])
def test_truncated_geometric_rejects_bad_tau(tau):
    with pytest.raises(ValueError, match=r"^tau\b"):
        pact.truncated_geometric_log_prob(1, tau, 4)


@pytest.mark.parametrize("L", [0, -3, 2.5, True])
def test_truncated_geometric_rejects_bad_L(L):
    with pytest.raises(ValueError, match=r"^L\b"):
        pact.truncated_geometric_log_prob(1, 0.5, L)
