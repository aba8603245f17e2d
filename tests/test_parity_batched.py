"""Batched parity training: each run of a stack is the run trained alone, to float tolerance.

Short runs (30 updates): over hundreds, parity training amplifies rounding (the batched module's docstring).
"""
import dataclasses

import pytest
import torch
from interrupt import stopped_after_a_save

from adaptive import loop
from adaptive.infra import checkpoint
from adaptive.parity import batched
from adaptive.parity import train as training
from adaptive.parity.model import ParityRNN

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(size=6, hidden=16, max_steps=4, updates=30, eval_every=10, eval_size=200)
NAMING = ("method", "eval_mode", "tau", "penalty_name", "seed", "max_steps", "config")    # what a row is of


def grid(method: str) -> list[training.RunConfig]:
    """Three runs of one method: two seeds at one penalty, one seed at another (fixed: two depths)."""
    if method == "fixed":
        return [training.RunConfig("fixed", seed=seed, **(SMALL | {"max_steps": steps}))
                for seed, steps in ((0, 4), (1, 4), (0, 2))]
    modes = ("thresholded", "discrete") if method in ("pact", "pondernet") else ()
    return [training.RunConfig(method, tau=tau, seed=seed, eval_modes=modes, **SMALL)
            for seed, tau in ((0, 1e-3), (1, 1e-3), (0, 1e-2))]


def final_parameters(folder, config: training.RunConfig) -> dict:
    """The model a run alone ends with, from its checkpoint."""
    return checkpoint.read(folder / f"{config.key()}.pt")["model"]


def stacked_parameters(folder, configs) -> list[dict]:
    """The models a stack ends with, from its checkpoint, in the order of ``configs``."""
    (path,) = folder.glob("stack-*.pt")
    saved = checkpoint.read(path)
    order = sorted(range(len(configs)), key=lambda position: batched.stack_order(configs[position]))
    models = [ParityRNN(c.size, c.hidden) for c in (configs[position] for position in order)]
    stack = batched.StackedParityRNN(models)
    stack.load_state_dict(saved["model"])
    by_position = {position: stack.write_into(k, models[k]).state_dict() for k, position in enumerate(order)}
    return [by_position[position] for position in range(len(configs))]


def assert_same_run(alone: list[dict], together: list[dict]) -> None:
    """Rows of one run trained alone and in a stack: the same fields, the same scores to float tolerance."""
    assert [row.keys() for row in together] == [row.keys() for row in alone]
    for a, b in zip(alone, together):
        assert {key: b[key] for key in NAMING} == {key: a[key] for key in NAMING}
        assert b["accuracy"] == pytest.approx(a["accuracy"], abs=1 / a["config"]["eval_size"])
        assert b["mean_steps"] == pytest.approx(a["mean_steps"], abs=1e-2)
        assert [p["update"] for p in b["curve"]] == [p["update"] for p in a["curve"]]
        for p, q in zip(a["curve"], b["curve"]):
            assert q["train_loss"] == pytest.approx(p["train_loss"], rel=1e-4, abs=1e-6)
            assert q["task_loss"] == pytest.approx(p["task_loss"], rel=1e-4, abs=1e-6)
            assert q["accuracy"] == pytest.approx(p["accuracy"], abs=1 / a["config"]["eval_size"])
            assert q["mean_steps"] == pytest.approx(p["mean_steps"], abs=1e-2)


def assert_same_parameters(alone: dict, together: dict) -> None:
    assert together.keys() == alone.keys()
    for name in alone:
        torch.testing.assert_close(together[name], alone[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("method", loop.METHODS)
def test_each_run_of_a_stack_is_the_run_trained_alone(method, tmp_path):
    configs = grid(method)
    alone = [training.train(config, checkpoint_dir=tmp_path / "alone", progress=False) for config in configs]
    together = batched.train_stack(configs, checkpoint_dir=tmp_path / "stack")
    for config, rows, stacked_rows, parameters in zip(configs, alone, together,
                                                      stacked_parameters(tmp_path / "stack", configs)):
        assert_same_run(rows, stacked_rows)
        assert_same_parameters(final_parameters(tmp_path / "alone", config), parameters)


def test_runs_of_every_method_and_depth_share_one_stack(tmp_path):
    """One stack of the five methods at three depths, in no particular order: it shrinks as its
    runs finish (ACT once its batch has halted), and mixes the runs of one rule in one call."""
    configs = [training.RunConfig(method, tau=1e-2, seed=seed, eval_modes=("relaxed", "thresholded"),
                                  **(SMALL | {"updates": 20, "max_steps": steps}))
               for method, seed, steps in (("act", 0, 3), ("fixed", 0, 1), ("dact", 1, 4), ("pact", 0, 2),
                                           ("pondernet", 1, 3), ("fixed", 1, 3), ("act", 1, 4), ("dact", 0, 4))]
    alone = [training.train(config, checkpoint_dir=tmp_path / "alone", progress=False) for config in configs]
    rows = batched.train_batched(configs, checkpoint_dir=tmp_path / "stack")
    assert len(list((tmp_path / "stack").glob("stack-*.pt"))) == 1
    start = 0
    for config, run_rows, parameters in zip(configs, alone, stacked_parameters(tmp_path / "stack", configs)):
        assert_same_run(run_rows, rows[start:start + len(run_rows)])
        assert_same_parameters(final_parameters(tmp_path / "alone", config), parameters)
        start += len(run_rows)
    assert start == len(rows)


def test_runs_of_their_own_curricula_clipping_and_training_range_are_the_runs_trained_alone(tmp_path):
    """One stack, one learning-rate schedule; each run its own curriculum, training range and clipping. Runs of
    one seed that train on other difficulties draw their own batches (``stream_key``), those that agree share them."""
    shared = SMALL | {"lr_decay_at": (12, 20), "lr_decay": 0.5}
    configs = [training.RunConfig(method, tau=1e-2, seed=seed, **(shared | extra)) for method, seed, extra in (
        ("act", 0, {"curriculum_start": 2, "curriculum_updates": 20, "clip_norm": 0.3}),
        ("dact", 0, {"curriculum_start": 2, "curriculum_updates": 20}),
        ("pondernet", 0, {"curriculum_start": 1, "curriculum_updates": 25, "train_max_nonzero": 3}),
        ("pondernet", 1, {"clip_norm": 0.05}),
        ("dact", 1, {"train_max_nonzero": 3, "clip_norm": 1e3}))]
    assert len({batched.stream_key(config) for config in configs}) == 4
    alone = [training.train(config, checkpoint_dir=tmp_path / "alone", progress=False) for config in configs]
    together = batched.train_stack(configs, checkpoint_dir=tmp_path / "stack")
    for config, rows, stacked_rows, parameters in zip(configs, alone, together,
                                                      stacked_parameters(tmp_path / "stack", configs)):
        assert_same_run(rows, stacked_rows)
        assert_same_parameters(final_parameters(tmp_path / "alone", config), parameters)


def assert_resumes_to_the_same_runs(configs, tmp_path, monkeypatch, stop_at: int) -> None:
    """A stack stopped right after its checkpoint at update ``stop_at`` resumes to the rows of an uninterrupted one."""
    straight = batched.train_stack(configs)
    with stopped_after_a_save(monkeypatch, match=f"stopped at update {stop_at}"):
        batched.train_stack(configs, checkpoint_dir=tmp_path, checkpoint_every=stop_at)
    resumed = batched.train_stack(configs, checkpoint_dir=tmp_path, checkpoint_every=stop_at)

    def strip(stack_rows):
        return [[{key: value for key, value in row.items() if key != "train_seconds"} for row in rows]
                for rows in stack_rows]
    assert strip(resumed) == strip(straight)


def test_an_interrupted_curriculum_stack_resumes_to_the_same_runs(tmp_path, monkeypatch):
    configs = [training.RunConfig(method, tau=1e-2, curriculum_start=2, curriculum_updates=20, clip_norm=0.5,
                                  **(SMALL | {"lr_decay_at": (15,)})) for method in ("act", "pondernet")]
    assert_resumes_to_the_same_runs(configs, tmp_path, monkeypatch, stop_at=9)


def test_the_stacked_step_is_each_models_step():
    torch.manual_seed(0)
    H = 7
    models = [ParityRNN(5, H, halt_bias=bias) for bias in (0.0, 1.0, -1.0)]
    stack = batched.StackedParityRNN(models)
    x = torch.randn(3, 4, 5)                                                   # (K, B, size)
    inputs = torch.baddbmm(stack.input_bias, x, stack.input_weight)           # (K, B, 3H)
    gates = (2 * H, H)
    first = [part + flag for part, flag in zip(inputs.split(gates, -1), stack.flag_weight.split(gates, -1))]
    heads, hidden = stack.step(stack.weights(), first, None)
    heads, hidden = stack.step(stack.weights(2), [part[:2] for part in inputs.split(gates, -1)], hidden[:2])
    for k, model in enumerate(models[:2]):
        logits, halt_logit, state = model.step(model.initial_state(x[k]))
        logits, halt_logit, state = model.step(state)
        torch.testing.assert_close(heads[k], torch.cat([logits, halt_logit.unsqueeze(1)], dim=1))
        torch.testing.assert_close(hidden[k], state[1])
    fresh = ParityRNN(5, H)
    assert all(torch.equal(a, b) for a, b in zip(stack.write_into(2, fresh).state_dict().values(),
                                                 models[2].state_dict().values()))


def test_only_runs_whose_rule_draws_nothing_share_a_call_of_it():
    halting = training.RunConfig("dact", tau=1e-3, **SMALL).halting()
    assert batched.mixing_key(halting) == batched.mixing_key(dataclasses.replace(halting, tau=0.5))
    assert batched.mixing_key(halting) != batched.mixing_key(dataclasses.replace(halting, max_steps=3))
    assert batched.mixing_key(training.RunConfig("pact", **SMALL).halting()) is None     # its relaxed sample
    assert batched.may_stop_early(training.RunConfig("act", **SMALL).halting())
    assert not any(batched.may_stop_early(training.RunConfig(method, **SMALL).halting())
                   for method in ("fixed", "dact", "pact", "pondernet"))


def test_a_grid_is_cut_into_stacks_of_runs_that_agree():
    configs = grid("dact") + grid("fixed") + [training.RunConfig("act", **(SMALL | {"lr": 1e-3}))]
    parts = batched.stacks(configs, count=2)
    assert sorted(position for part in parts for position in part) == list(range(len(configs)))
    assert [6] in parts                                               # its own learning rate: its own stack
    for part in parts:
        assert len({batched.stack_key(configs[position]) for position in part}) == 1
        assert [batched.stack_order(configs[p]) for p in part] == sorted(batched.stack_order(configs[p]) for p in part)
    shares = [sum(configs[position].max_steps for position in part) for part in parts if part != [6]]
    assert shares == [12, 10]


def test_an_interrupted_stack_resumes_to_the_same_runs(tmp_path, monkeypatch):
    configs = grid("pact")[:2]
    assert_resumes_to_the_same_runs(configs, tmp_path, monkeypatch, stop_at=7)


def test_two_worker_processes_train_what_one_process_trains():
    configs = grid("dact")[:2] + grid("fixed")[:1]
    strip = [{key: value for key, value in row.items() if key != "train_seconds"}
             for row in batched.train_batched(configs, workers=1)]
    assert [{key: value for key, value in row.items() if key != "train_seconds"}
            for row in batched.train_batched(configs, workers=2)] == strip


@pytest.mark.parametrize("call, message", [
    (lambda: batched.train_batched([]), r"configs must be a non-empty sequence of RunConfig"),
    (lambda: batched.train_batched(grid("dact") + ["dact"]), r"configs\[3\] is str 'dact'"),
    (lambda: batched.train_stack(grid("dact")[0]), r"configs must be a non-empty sequence of RunConfig"),
    (lambda: batched.train_batched(grid("dact"), workers=0), r"workers must be an integer >= 1, got 0"),
    (lambda: batched.train_batched(grid("dact"), checkpoint_every=0), r"checkpoint_every must be an integer >= 1"),
    (lambda: batched.train_batched(grid("dact"), device="cpu:7"), r"the CPU takes no index"),
    (lambda: batched.train_stack(grid("dact"), device="gpu"), r"device must name a torch device"),
    (lambda: batched.train_stack(grid("dact") + [training.RunConfig("act", **(SMALL | {"hidden": 8, "lr": 1e-3}))]),
     r"must agree in size, hidden, batch_size, lr, lr_decay_at, lr_decay, updates, eval_every, input_every_step; "
     r"these differ: hidden, lr"),
    (lambda: batched.train_stack([training.RunConfig("act", **SMALL),
                                  training.RunConfig("act", **(SMALL | {"lr_decay_at": (10,)}))]),
     r"these differ: lr_decay_at"),
    (lambda: batched.StackedParityRNN([ParityRNN(4, 8), ParityRNN(4, 9)]),
     r"one \(size, hidden, classes, input_every_step\)"),
    (lambda: batched.StackedParityRNN([]), r"models must be a non-empty sequence of ParityRNN"),
])
def test_bad_input_is_refused_before_any_training(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_runs_that_see_the_input_at_the_first_step_only_are_the_runs_trained_alone(tmp_path):
    configs = [training.RunConfig(method, tau=1e-2, seed=seed, input_every_step=False, **SMALL)
               for method, seed in (("act", 0), ("dact", 1), ("pondernet", 0))]
    alone = [training.train(config, checkpoint_dir=tmp_path / "alone", progress=False) for config in configs]
    together = batched.train_stack(configs, checkpoint_dir=tmp_path / "stack")
    for config, rows, stacked_rows, parameters in zip(configs, alone, together,
                                                      stacked_parameters(tmp_path / "stack", configs)):
        assert_same_run(rows, stacked_rows)
        assert_same_parameters(final_parameters(tmp_path / "alone", config), parameters)
    assert batched.stack_key(configs[0]) != batched.stack_key(training.RunConfig("act", **SMALL))
