"""Hypothesis strategies shared by the mechanism tests."""
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
