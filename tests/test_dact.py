"""Tests for adaptive.dact: Differentiable ACT (Eyzaguirre & Soto, CVPR 2020).

References are plain-Python loops over eqs. 1-3 and 9 of the paper; the
halting bound (eq. 9) is checked for soundness by simulating continuations
of the eq. 2 recursion, random and adversarial.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import matrices, mixed, unit

from adaptive import dact

FAST = settings(max_examples=60, deadline=None)




@st.composite
def answers_and_halts(draw, max_batch=3, max_steps=6, max_classes=4, simplex=False):
    """y as (B, L, C) nested lists in [0, 1] (rows on the simplex if asked) and h as (B, L)."""
    batch = draw(st.integers(1, max_batch))
    steps = draw(st.integers(1, max_steps))
    classes = draw(st.integers(1, max_classes))
    y = []
    for _ in range(batch):
        rows = []
        for _ in range(steps):
            if simplex:
                raw = [draw(st.floats(0.01, 1.0)) for _ in range(classes)]
                total = math.fsum(raw)
                rows.append([r / total for r in raw])
            else:
                rows.append([draw(mixed) for _ in range(classes)])
        y.append(rows)
    h = [[draw(mixed) for _ in range(steps)] for _ in range(batch)]
    return y, h


def ref_p(h_row):
    """Eq. 1 with explicit products: p_n = prod_{i<=n} h_i."""
    out = []
    for n in range(1, len(h_row) + 1):
        prod = 1.0
        for i in range(n):
            prod *= h_row[i]
        out.append(prod)
    return out


def ref_accumulate(y_rows, h_row):
    """Eq. 2: a_0 = 0, a_n = y_n p_{n-1} + a_{n-1} (1 - p_{n-1}), p_0 = 1."""
    C = len(y_rows[0])
    a = [0.0] * C
    p_prev = 1.0
    out = []
    for n, y in enumerate(y_rows):
        a = [y[c] * p_prev + a[c] * (1 - p_prev) for c in range(C)]
        out.append(a)
        p_prev *= h_row[n]
    return out


def ref_weights(h_row):
    """Unrolled eq. 2: w_n = p_{n-1} prod_{k=n}^{L-1} (1 - p_k)."""
    L = len(h_row)
    p = [1.0] + ref_p(h_row)          # p[0] = p_0 = 1, p[n] = p_n
    w = []
    for n in range(1, L + 1):
        prod = 1.0
        for k in range(n, L):
            prod *= 1 - p[k]
        w.append(p[n - 1] * prod)
    return w


# --------------------------------------------------------------------------- eq. 1


@FAST
@given(matrices())
def test_halting_probabilities_are_explicit_products(rows):
    h = torch.tensor(rows, dtype=torch.float64)
    p = dact.halting_probabilities(h)
    assert p.shape == h.shape
    for b, row in enumerate(rows):
        assert p[b].tolist() == pytest.approx(ref_p(row), abs=1e-14)


@FAST
@given(matrices())
def test_halting_probabilities_non_increasing_in_unit_interval(rows):
    p = dact.halting_probabilities(torch.tensor(rows, dtype=torch.float64))
    assert bool((p[:, 1:] <= p[:, :-1]).all())
    assert bool((p >= 0).all()) and bool((p <= 1).all())


def test_halting_probabilities_example():
    p = dact.halting_probabilities(torch.tensor([[0.5, 0.5, 0.0, 1.0]], dtype=torch.float64))
    assert p.tolist() == [[0.5, 0.25, 0.0, 0.0]]


# --------------------------------------------------------------------------- eq. 2


@FAST
@given(answers_and_halts())
def test_accumulate_matches_eq2_recursion(data):
    y_list, h_list = data
    a = dact.accumulate(torch.tensor(y_list, dtype=torch.float64),
                        torch.tensor(h_list, dtype=torch.float64))
    assert a.shape == (len(y_list), len(y_list[0]), len(y_list[0][0]))
    for b in range(len(y_list)):
        ref = ref_accumulate(y_list[b], h_list[b])
        for n in range(len(ref)):
            assert a[b, n].tolist() == pytest.approx(ref[n], abs=1e-12)


def test_accumulate_example_by_hand():
    # h = (0.5, 0.2): p_0 = 1, p_1 = 0.5.  a_1 = y_1, a_2 = 0.5 y_2 + 0.5 a_1.
    y = torch.tensor([[[0.9, 0.1], [0.2, 0.8]]], dtype=torch.float64)
    h = torch.tensor([[0.5, 0.2]], dtype=torch.float64)
    a = dact.accumulate(y, h)
    assert torch.allclose(a, torch.tensor([[[0.9, 0.1], [0.55, 0.45]]], dtype=torch.float64))


def test_first_accumulated_answer_is_first_output():
    # p_0 = 1 so a_1 = y_1 whatever h_1 holds.
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(4, 3, 5, generator=gen, dtype=torch.float64)
    h = torch.rand(4, 3, generator=gen, dtype=torch.float64)
    assert torch.equal(dact.accumulate(y, h)[:, 0], y[:, 0])


def test_small_halting_value_freezes_the_answer():
    # h_n = 0 makes p_n = 0: later outputs cannot change a (Fig. 2 of the paper).
    gen = torch.Generator().manual_seed(1)
    y = torch.rand(3, 6, 4, generator=gen, dtype=torch.float64)
    h = torch.rand(3, 6, generator=gen, dtype=torch.float64)
    h[:, 2] = 0.0
    a = dact.accumulate(y, h)
    for n in range(3, 6):
        assert torch.equal(a[:, n], a[:, 3])


@FAST
@given(answers_and_halts())
def test_final_answer_is_weighted_sum_of_step_answers(data):
    y_list, h_list = data
    y = torch.tensor(y_list, dtype=torch.float64)
    h = torch.tensor(h_list, dtype=torch.float64)
    w = dact.step_weights(h)
    final = dact.accumulate(y, h)[:, -1]
    for b in range(len(y_list)):
        for c in range(len(y_list[0][0])):
            expected = math.fsum(float(w[b, n]) * y_list[b][n][c] for n in range(len(h_list[0])))
            assert float(final[b, c]) == pytest.approx(expected, abs=1e-12)


@FAST
@given(matrices())
def test_step_weights_match_unrolled_formula_and_form_a_distribution(rows):
    h = torch.tensor(rows, dtype=torch.float64)
    w = dact.step_weights(h)
    assert w.shape == h.shape
    assert bool((w >= 0).all())
    assert torch.allclose(w.sum(1), torch.ones(len(rows), dtype=torch.float64), atol=1e-12)
    for b, row in enumerate(rows):
        assert w[b].tolist() == pytest.approx(ref_weights(row), abs=1e-12)


@FAST
@given(answers_and_halts(simplex=True))
def test_accumulated_rows_sum_to_one_when_answers_do(data):
    y_list, h_list = data
    a = dact.accumulate(torch.tensor(y_list, dtype=torch.float64),
                        torch.tensor(h_list, dtype=torch.float64))
    assert torch.allclose(a.sum(-1), torch.ones(a.shape[:2], dtype=torch.float64), atol=1e-12)
    assert bool((a >= 0).all()) and bool((a <= 1 + 1e-12).all())


def test_accumulate_keeps_float32_and_constant_answers():
    # float32 stays float32; equal answers at every step give that answer back.
    y = torch.full((2, 3, 4), 0.25)
    h = torch.full((2, 3), 0.5)
    a = dact.accumulate(y, h)
    assert a.dtype == torch.float32
    assert torch.allclose(a, torch.full((2, 3, 4), 0.25))


# --------------------------------------------------------------------------- eq. 3


@FAST
@given(matrices())
def test_ponder_cost_is_sum_of_p(rows):
    rho = dact.ponder_cost(torch.tensor(rows, dtype=torch.float64))
    assert rho.shape == (len(rows),)
    for b, row in enumerate(rows):
        assert float(rho[b]) == pytest.approx(math.fsum(ref_p(row)), abs=1e-12)
        assert 0.0 <= float(rho[b]) <= len(row)


def test_ponder_cost_example():
    rho = dact.ponder_cost(torch.tensor([[0.5, 0.5, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64))
    assert rho.tolist() == pytest.approx([0.5 + 0.25 + 0.25, 3.0])


# --------------------------------------------------------------------------- gradients


def _interior(*shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return (0.05 + 0.9 * torch.rand(*shape, generator=gen, dtype=torch.float64)).requires_grad_(True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck_accumulate(seed):
    y = _interior(2, 4, 3, seed=seed)
    h = _interior(2, 4, seed=seed + 100)
    assert torch.autograd.gradcheck(dact.accumulate, (y, h))
    assert torch.autograd.gradgradcheck(dact.accumulate, (y, h))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck_ponder_cost_probabilities_and_weights(seed):
    h = _interior(3, 5, seed=seed)
    assert torch.autograd.gradcheck(dact.ponder_cost, (h,))
    assert torch.autograd.gradcheck(dact.halting_probabilities, (h,))
    assert torch.autograd.gradcheck(dact.step_weights, (h,))


def test_ponder_cost_gradient_by_hand():
    # rho = h1 + h1 h2 + h1 h2 h3: d/dh1 = 1 + h2 + h2 h3, d/dh2 = h1 + h1 h3, d/dh3 = h1 h2.
    h = torch.tensor([[0.3, 0.6, 0.8]], dtype=torch.float64, requires_grad=True)
    dact.ponder_cost(h).sum().backward()
    h1, h2, h3 = 0.3, 0.6, 0.8
    expected = [1 + h2 + h2 * h3, h1 + h1 * h3, h1 * h2]
    assert h.grad[0].tolist() == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- eq. 9 halting bound


def ref_eq9(a_row, p, d):
    """P(c*, n) (1 - p_n)^d >= P(c_ru, n) + p_n d, with python floats."""
    top, runner_up = sorted(a_row, reverse=True)[:2]
    return top * (1 - p) ** d >= runner_up + p * d, top * (1 - p) ** d - (runner_up + p * d)


@FAST
@given(st.lists(st.lists(unit, min_size=2, max_size=5), min_size=1, max_size=4).filter(
    lambda rows: len({len(r) for r in rows}) == 1),
    st.data())
def test_can_halt_matches_eq9_by_hand(a_rows, data):
    B = len(a_rows)
    p = [data.draw(st.one_of(st.floats(0.0, 0.2), unit)) for _ in range(B)]
    d = data.draw(st.integers(0, 8))
    out = dact.can_halt(torch.tensor(a_rows, dtype=torch.float64),
                        torch.tensor(p, dtype=torch.float64), d)
    assert out.dtype == torch.bool and out.shape == (B,)
    for b in range(B):
        expected, margin = ref_eq9(a_rows[b], p[b], d)
        if abs(margin) > 1e-12:       # away from exact ties of the two sides
            assert bool(out[b]) == expected


def test_can_halt_examples():
    a = torch.tensor([[0.7, 0.3], [0.5, 0.45], [0.2, 0.8], [0.4, 0.4]], dtype=torch.float64)
    p = torch.tensor([0.1, 0.5, 0.0, 0.0], dtype=torch.float64)
    # row 0: 0.7 * 0.9 = 0.63 >= 0.3 + 0.1 = 0.4 -> True
    # row 1: 0.5 * 0.5 = 0.25 < 0.45 + 0.5        -> False
    # row 2: p = 0: 0.8 >= 0.2                    -> True (top class is the second one)
    # row 3: tie with p = 0: 0.4 >= 0.4           -> True
    assert dact.can_halt(a, p, 1).tolist() == [True, False, True, True]
    # row 0 with d = 3: 0.7 * 0.729 = 0.5103 >= 0.3 + 0.3 = 0.6 is False
    assert dact.can_halt(a, p, 3).tolist() == [False, False, True, True]


@pytest.mark.parametrize("p, d, runner_up", [(0.1, 2, 0.2), (0.05, 5, 0.1), (0.3, 1, 0.05), (0.01, 4, 0.3)])
def test_can_halt_boundary_is_exactly_eq9(p, d, runner_up):
    # the smallest top probability that satisfies eq. 9: (runner_up + p d) / (1 - p)^d
    edge = (runner_up + p * d) / (1 - p) ** d
    assert edge < 1
    a = torch.tensor([[runner_up, edge + 1e-9, 0.0], [runner_up, edge - 1e-9, 0.0]], dtype=torch.float64)
    out = dact.can_halt(a, torch.tensor([p, p], dtype=torch.float64), d)
    assert out.tolist() == [True, False]


@FAST
@given(st.lists(st.lists(unit, min_size=2, max_size=5), min_size=1, max_size=4).filter(
    lambda rows: len({len(r) for r in rows}) == 1),
    st.data())
def test_can_halt_always_true_with_no_steps_left(a_rows, data):
    p = [data.draw(unit) for _ in a_rows]
    out = dact.can_halt(torch.tensor(a_rows, dtype=torch.float64), torch.tensor(p, dtype=torch.float64), 0)
    assert bool(out.all())
    out = dact.can_halt(torch.tensor(a_rows), torch.tensor(p), torch.zeros(len(a_rows), dtype=torch.int64))
    assert bool(out.all())


def test_can_halt_with_per_sample_remaining():
    gen = torch.Generator().manual_seed(3)
    a = _softmax(3 * torch.randn(64, 4, generator=gen, dtype=torch.float64))
    p = torch.rand(64, generator=gen, dtype=torch.float64) ** 3
    d = torch.randint(0, 6, (64,), generator=gen)
    out = dact.can_halt(a, p, d)
    for b in range(64):
        assert bool(out[b]) == bool(dact.can_halt(a[b:b + 1], p[b:b + 1], int(d[b]))[0])
        expected, margin = ref_eq9(a[b].tolist(), float(p[b]), int(d[b]))
        if abs(margin) > 1e-12:
            assert bool(out[b]) == expected
    assert 0 < int(out.sum()) < 64     # both outcomes occur in this sample


def _softmax(x):
    """softmax along the last dim (written out: torch.softmax on tiny tensors is slow with threads)."""
    e = (x - x.amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def _continue(a, p, ys, hs):
    """Run ``len(ys)`` more steps of eq. 2 from a_n, p_n with future outputs ys and halts hs."""
    for y, h in zip(ys, hs):
        a = y * p.unsqueeze(-1) + a * (1 - p.unsqueeze(-1))
        p = p * h
    return a


def _still_top(final, top_class, tol=1e-12):
    """The original top class is still (one of) the largest entries of the final answer."""
    top_value = final.gather(1, top_class.unsqueeze(1))
    return (final <= top_value + tol).all(dim=1)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 6), classes=st.integers(2, 5),
       simplex=st.booleans(), p_scale=st.sampled_from([0.001, 0.01, 0.05, 0.2, 1.0]),
       a_scale=st.sampled_from([1.0, 0.2, 0.05]))
def test_can_halt_is_sound(seed, d, classes, simplex, p_scale, a_scale):
    """Whenever eq. 9 says halt, no continuation of d steps changes the top class."""
    gen = torch.Generator().manual_seed(seed)
    B = 256
    if simplex:
        a_n = _softmax(4 * torch.randn(B, classes, generator=gen, dtype=torch.float64))
    else:
        # sigmoid-style answers, possibly all small: where eq. 9 is closest to tight
        a_n = a_scale * torch.rand(B, classes, generator=gen, dtype=torch.float64)
    p_n = p_scale * torch.rand(B, generator=gen, dtype=torch.float64) ** 2
    halt = dact.can_halt(a_n, p_n, d)
    assert halt.any(), "generator should produce haltable cases"
    a_n, p_n = a_n[halt], p_n[halt]
    top = a_n.argmax(dim=1)
    runner_up = a_n.topk(2, dim=1).indices[:, 1]
    eye = torch.eye(classes, dtype=torch.float64)
    ones = torch.ones_like(p_n)

    continuations = []
    # random answers (simplex and unconstrained [0, 1]) and random halting values
    for _ in range(8):
        ys = [_softmax(3 * torch.randn(len(p_n), classes, generator=gen, dtype=torch.float64))
              for _ in range(d)]
        hs = [torch.rand(len(p_n), generator=gen, dtype=torch.float64) for _ in range(d)]
        continuations.append((ys, hs))
        ys = [torch.rand(len(p_n), classes, generator=gen, dtype=torch.float64) for _ in range(d)]
        continuations.append((ys, hs))
    # adversarial: h = 1 keeps p at p_n (its largest possible value) while all the mass
    # goes to the runner-up, to any other class, or to every class but the top one.
    continuations.append(([eye[runner_up]] * d, [ones] * d))
    continuations.append(([1 - eye[top]] * d, [ones] * d))
    for c in range(classes):
        rival = torch.full_like(top, c)
        continuations.append(([eye[rival]] * d, [ones] * d))

    for ys, hs in continuations:
        final = _continue(a_n, p_n, ys, hs)
        assert bool(_still_top(final, top).all())


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), steps=st.integers(1, 8), classes=st.integers(2, 6))
def test_halting_early_by_eq9_gives_the_full_run_answer(seed, steps, classes):
    """Sec. 3.2: halting at the first n where eq. 9 holds keeps the top-1 answer of all L steps."""
    gen = torch.Generator().manual_seed(seed)
    B = 128
    y = _softmax(4 * torch.randn(B, steps, classes, generator=gen, dtype=torch.float64))
    h = torch.rand(B, steps, generator=gen, dtype=torch.float64) ** 0.5
    a = dact.accumulate(y, h)
    p = dact.halting_probabilities(h)
    final = a[:, -1]
    for n in range(1, steps + 1):
        halt = dact.can_halt(a[:, n - 1], p[:, n - 1], steps - n)
        top = a[:, n - 1].argmax(dim=1)
        ok = _still_top(final, top)
        assert bool(ok[halt].all())
    # at n = L (no steps left) every sample may halt
    assert bool(dact.can_halt(a[:, -1], p[:, -1], 0).all())


# --------------------------------------------------------------------------- bad input

GOOD_H = torch.full((2, 3), 0.5)
GOOD_Y = torch.full((2, 3, 4), 0.25)


def _with(t, value, position):
    t = t.clone()
    t[position] = value
    return t


BAD_H = [
    pytest.param(_with(GOOD_H, 1.5, (0, 1)), id="above-one"),
    pytest.param(_with(GOOD_H, -0.5, (1, 2)), id="below-zero"),
    pytest.param(_with(GOOD_H, float("nan"), (0, 0)), id="nan"),
    pytest.param(torch.zeros(2, 0), id="no-steps"),
    pytest.param(torch.full((3,), 0.5), id="one-dimensional"),
    pytest.param(torch.ones(2, 3, dtype=torch.int32), id="integer-dtype"),
]


@pytest.mark.parametrize("fn", [dact.halting_probabilities, dact.step_weights, dact.ponder_cost])
@pytest.mark.parametrize("h", BAD_H)
def test_h_functions_reject_bad_h(fn, h):
    with pytest.raises(ValueError, match=r"^h\b"):
        fn(h)


@pytest.mark.parametrize("y", [
    pytest.param(_with(GOOD_Y, 1.01, (0, 0, 0)), id="above-one"),
    pytest.param(_with(GOOD_Y, -0.01, (1, 2, 3)), id="below-zero"),
    pytest.param(_with(GOOD_Y, float("nan"), (0, 1, 2)), id="nan"),
    pytest.param(torch.full((2, 3), 0.5), id="two-dimensional"),
    pytest.param(torch.zeros(2, 0, 4), id="no-steps"),
])
def test_accumulate_rejects_bad_y(y):
    with pytest.raises(ValueError, match=r"^y\b"):
        dact.accumulate(y, GOOD_H)


@pytest.mark.parametrize("h", [
    pytest.param(_with(GOOD_H, 1.5, (0, 1)), id="above-one"),
    pytest.param(_with(GOOD_H, float("nan"), (1, 2)), id="nan"),
])
def test_accumulate_rejects_bad_h(h):
    with pytest.raises(ValueError, match=r"^h\b"):
        dact.accumulate(GOOD_Y, h)


@pytest.mark.parametrize("h", [
    pytest.param(torch.full((2, 4), 0.5), id="more-steps"),
    pytest.param(torch.full((3, 3), 0.5), id="more-batch"),
])
def test_accumulate_rejects_mismatched_shapes(h):
    with pytest.raises(ValueError, match=r"^y and h\b"):
        dact.accumulate(GOOD_Y, h)


@pytest.mark.parametrize("h", [
    pytest.param(torch.full((2,), 0.5), id="one-dimensional"),
    pytest.param(torch.full((2, 3, 1), 0.5), id="trailing-dimension"),   # used to broadcast to (B, L, B, C)
])
def test_accumulate_refuses_h_that_is_not_batch_by_steps(h):
    with pytest.raises(ValueError, match=r"^h must have shape \(B, L\)"):
        dact.accumulate(GOOD_Y, h)


GOOD_A = torch.tensor([[0.6, 0.4], [0.3, 0.7]])
GOOD_P = torch.tensor([0.1, 0.2])


@pytest.mark.parametrize("a_n", [
    pytest.param(torch.tensor([0.6, 0.4]), id="one-dimensional"),
    pytest.param(torch.ones(2, 1), id="one-class"),
    pytest.param(torch.tensor([[1.6, 0.4], [0.3, 0.7]]), id="above-one"),
    pytest.param(torch.tensor([[-0.1, 0.4], [0.3, 0.7]]), id="below-zero"),
    pytest.param(torch.tensor([[float("nan"), 0.4], [0.3, 0.7]]), id="nan"),
    pytest.param([[0.6, 0.4], [0.3, 0.7]], id="not-a-tensor"),
])
def test_can_halt_rejects_bad_a_n(a_n):
    with pytest.raises(ValueError, match=r"^a_n\b"):
        dact.can_halt(a_n, GOOD_P, 1)


@pytest.mark.parametrize("p_n", [
    pytest.param(torch.tensor([0.1, 0.2, 0.3]), id="wrong-batch"),
    pytest.param(torch.tensor([[0.1], [0.2]]), id="two-dimensional"),
    pytest.param(torch.tensor([1.1, 0.2]), id="above-one"),
    pytest.param(torch.tensor([0.1, -0.2]), id="below-zero"),
    pytest.param(torch.tensor([float("nan"), 0.2]), id="nan"),
    pytest.param(0.1, id="not-a-tensor"),
])
def test_can_halt_rejects_bad_p_n(p_n):
    with pytest.raises(ValueError, match=r"^p_n\b"):
        dact.can_halt(GOOD_A, p_n, 1)


@pytest.mark.parametrize("remaining", [
    pytest.param(-1, id="negative"),
    pytest.param(torch.tensor([1, -1]), id="negative-entry"),
    pytest.param(torch.tensor([1, 2, 3]), id="wrong-batch"),
    pytest.param(torch.ones(2, 2, dtype=torch.int64), id="two-dimensional"),
    pytest.param(1.5, id="fractional"),
    pytest.param(torch.tensor([1.0, 0.5]), id="fractional-entry"),
])
def test_can_halt_rejects_bad_remaining(remaining):
    with pytest.raises(ValueError, match=r"^remaining\b"):
        dact.can_halt(GOOD_A, GOOD_P, remaining)


@given(st.integers(1, 6), st.integers(2, 5), st.integers(0, 10_000))
@settings(max_examples=30, deadline=None)
def test_accumulate_continued_step_by_step_equals_the_whole_run(length, classes, seed):
    """Early-exit evaluation continues eq. 2 one step at a time from (a_{n-1}, p_{n-1})."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.rand(3, length, classes, generator=generator, dtype=torch.float64)
    y = y / y.sum(-1, keepdim=True)
    h = torch.rand(3, length, generator=generator, dtype=torch.float64)
    whole_a, whole_p = dact.accumulate(y, h), dact.halting_probabilities(h)
    a, p = torch.zeros(3, classes, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for n in range(length):
        a = dact.accumulate(y[:, n:n + 1], h[:, n:n + 1], (a, p))[:, -1]
        p = dact.halting_probabilities(h[:, n:n + 1], p)[:, -1]
        assert torch.allclose(a, whole_a[:, n]) and torch.allclose(p, whole_p[:, n])
