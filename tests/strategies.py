"""Hypothesis strategies, bad inputs and hand-written references shared by the mechanism tests."""
import pytest
import torch
from hypothesis import strategies as st

unit = st.floats(0.0, 1.0, allow_nan=False)
# values in [0, 1] with the edge cases 0, 1/2 and 1 drawn often
mixed = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.5, 1.0]))


@st.composite
def matrices(draw, max_batch=4, max_steps=7, values=mixed):
    """(B, L) nested lists of values, B and L at least 1."""
    batch = draw(st.integers(1, max_batch))
    steps = draw(st.integers(1, max_steps))
    return [[draw(values) for _ in range(steps)] for _ in range(batch)]


# ---------------------------------------------------------------- bad (B, L) halting tensors

def with_value(tensor, value, position):
    """A copy of ``tensor`` with the entry at ``position`` replaced by ``value``."""
    changed = tensor.clone()
    changed[position] = value
    return changed


def bad_values(good):
    """Halting tensors shaped like ``good`` (B, 3) with one value outside [0, 1]."""
    return [
        pytest.param(with_value(good, 1.5, (0, 0)), id="above-one"),
        pytest.param(with_value(good, -0.2, (1, 1)), id="below-zero"),
        pytest.param(with_value(good, float("nan"), (0, 1)), id="nan"),
        pytest.param(with_value(good, 2.0, (1, 2)), id="last-above-one"),   # the ignored last value too
        pytest.param(with_value(good, float("nan"), (0, 2)), id="last-nan"),
    ]


BAD_SHAPES = [
    pytest.param(torch.zeros(2, 0), id="no-steps"),
    pytest.param(torch.full((3,), 0.4), id="one-dimensional"),
]


# ---------------------------------------------------------------- references in plain Python

def stick_breaking_reference(row):
    """PACT eqs. 13 / 17: z^l = xi^l prod_{i<l} (1 - xi^i), with no last-is-one convention."""
    out = []
    for l in range(len(row)):
        prod = 1.0
        for i in range(l):
            prod *= 1 - row[i]
        out.append(row[l] * prod)
    return out


def halting_reference(h_row):
    """PACT eq. 14 / PonderNet's p_n: the stick breaking of h with the last value taken as 1."""
    return stick_breaking_reference(list(h_row[:-1]) + [1.0])
