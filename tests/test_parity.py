"""Graves' parity task: targets, difficulty, seeds, held-out split."""
import pytest
import torch

from adaptive.parity import Parity, extrapolation_split


def test_target_is_parity_of_plus_one_entries_and_difficulty_counts_non_zeros():
    x, target, difficulty = Parity(10).sample(500, torch.Generator().manual_seed(0))
    for row, t, d in zip(x.tolist(), target.tolist(), difficulty.tolist()):
        assert set(row) <= {-1.0, 0.0, 1.0}
        assert sum(v != 0 for v in row) == d
        assert row.count(1.0) % 2 == t


def test_non_zero_positions_are_random_not_a_prefix():
    x, _, difficulty = Parity(10).sample(500, torch.Generator().manual_seed(1))
    first_nonzero = (x != 0).float().argmax(1)
    assert (first_nonzero[difficulty < 10] > 0).any()
    assert (x[:, -1] != 0).any() and (x[:, 0] == 0).any()


def test_difficulty_covers_the_range():
    _, _, difficulty = Parity(8, 2, 5).sample(2000, torch.Generator().manual_seed(2))
    assert sorted(difficulty.unique().tolist()) == [2, 3, 4, 5]


def test_same_seed_same_examples_and_fixed_set_is_fixed():
    task = Parity(8)
    a = task.sample(64, torch.Generator().manual_seed(3))
    b = task.sample(64, torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(torch.equal(u, v) for u, v in zip(task.fixed_set(100, 9), task.fixed_set(100, 9)))


def test_held_out_inputs_never_appear_in_training():
    task = Parity(6)
    train, _, _ = task.sample(5000, torch.Generator().manual_seed(4))
    held, _, _ = task.fixed_set(500, 5)

    def rows(t):
        return set(map(tuple, t.int().tolist()))
    assert rows(train).isdisjoint(rows(held))
    assert task.is_held_out(held).all() and not task.is_held_out(train).any()


def test_extrapolation_split():
    train, test = extrapolation_split(96)
    assert (train.size, train.min_nonzero, train.high) == (96, 1, 48)
    assert (test.size, test.min_nonzero, test.high) == (96, 49, 96)
    _, _, difficulty = test.sample(200, torch.Generator().manual_seed(0), split="train")
    assert difficulty.min() >= 49


@pytest.mark.parametrize("kwargs, name", [
    (dict(size=0), "size"), (dict(size=4, max_nonzero=5), "max_nonzero"),
    (dict(size=4, min_nonzero=3, max_nonzero=2), "max_nonzero"), (dict(held_out=1.5), "held_out"),
])
def test_bad_task_settings_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Parity(**kwargs)


def test_bad_sample_arguments():
    with pytest.raises(ValueError, match="split"):
        Parity(4).sample(3, torch.Generator(), split="validation")
    with pytest.raises(ValueError, match="n must"):
        Parity(4).sample(0, torch.Generator())


def test_a_step_that_sees_the_input_at_the_first_step_only_ignores_it_after():
    import torch

    from adaptive.parity.model import ParityRNN
    torch.manual_seed(0)
    model = ParityRNN(6, 8, input_every_step=False)
    x = torch.randn(4, 6)
    _, _, state = model.step(model.initial_state(x))
    later, _, _ = model.step(state)
    _, hidden, flag = state
    assert torch.equal(later, model.step((torch.randn(4, 6), hidden, flag))[0])     # another input: the same step
    every = ParityRNN(6, 8)
    _, _, state = every.step(every.initial_state(x))
    assert not torch.equal(every.step(state)[0], every.step((torch.randn(4, 6), *state[1:]))[0])
    with pytest.raises(ValueError, match="input_every_step must be True or False"):
        ParityRNN(6, 8, input_every_step=1)
