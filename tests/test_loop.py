"""The adaptive loop: training what each paper trains, evaluating with real per-sample early exit."""
import numpy as np
import pytest
import torch

from adaptive import act, loop, pact
from adaptive.parity import Parity
from adaptive.parity.model import ParityRNN


class CountingStep:
    """Wraps a step function and counts the sample-steps it computes."""

    def __init__(self, step):
        self.step, self.rows = step, 0

    def __call__(self, state):
        self.rows += state[0].shape[0]
        return self.step(state)


def model_and_batch(seed, size=6, batch=64, halt_bias=0.0, hidden=16):
    torch.manual_seed(seed)
    model = ParityRNN(size, hidden, halt_bias=halt_bias)
    # spread the halting logits so that samples halt at many different steps
    torch.nn.init.normal_(model.halt.weight, std=2.0)
    x, target, _ = Parity(size).sample(batch, torch.Generator().manual_seed(seed))
    return model, x, target


@pytest.mark.parametrize("seed", range(20))
def test_dact_early_exit_predicts_what_all_steps_predict(seed):
    model, x, target = model_and_batch(seed, halt_bias=-1.0)
    halting = loop.Halting("dact", max_steps=10)
    with torch.no_grad():
        full = loop.run(model.step, model.initial_state(x), halting, training=True)
    early = loop.run(model.step, model.initial_state(x), halting, training=False)
    assert torch.equal(early.probs.argmax(1), full.probs.argmax(1))
    assert (early.steps <= 10).all() and (early.steps >= 1).all()


@pytest.mark.slow
def test_dact_early_exit_saves_steps_on_some_model():
    saved = 0
    for seed in range(10):
        model, x, _ = model_and_batch(seed, halt_bias=-3.0)
        out = loop.run(model.step, model.initial_state(x), loop.Halting("dact", 10), training=False)
        saved += int((out.steps < 10).sum())
    assert saved > 0, "the bound never allowed an early exit: the test above would prove nothing"


@pytest.mark.parametrize("method", ["act", "dact", "pact", "pondernet"])
def test_halted_samples_cost_nothing(method):
    model, x, _ = model_and_batch(3, halt_bias=0.5)
    counting = CountingStep(model.step)
    out = loop.run(counting, model.initial_state(x), loop.Halting(method, 8, early_exit=True), training=False,
                   generator=torch.Generator().manual_seed(0))
    assert counting.rows == int(out.steps.sum()) and out.early_exit
    assert out.steps.float().mean() < 8, "no sample halted early; the test needs a model that halts"


def test_act_evaluation_matches_training_computation():
    model, x, _ = model_and_batch(5, halt_bias=0.0)
    halting = loop.Halting("act", 8, eps=0.05)
    with torch.no_grad():
        trained = loop.run(model.step, model.initial_state(x), halting, training=True)
    evaluated = loop.run(model.step, model.initial_state(x), halting, training=False)
    _, _, N = act.halting_distribution(trained.halt, 0.05)
    assert torch.equal(evaluated.steps, N)
    assert torch.allclose(evaluated.probs, trained.probs, atol=1e-6)


def test_pact_thresholded_halts_at_first_probability_above_half():
    model, x, _ = model_and_batch(7)
    halting = loop.Halting("pact", 8, eval_mode="thresholded")
    with torch.no_grad():
        trained = loop.run(model.step, model.initial_state(x), halting, training=True)
    evaluated = loop.run(model.step, model.initial_state(x), halting, training=False)
    z = pact.halting_distribution(trained.halt, "thresholded")
    assert torch.equal(evaluated.steps, z.argmax(1) + 1)
    last_logits = trained.logits[torch.arange(x.shape[0]), evaluated.steps - 1]
    assert torch.allclose(evaluated.probs, last_logits.softmax(-1), atol=1e-6)


@pytest.mark.parametrize("method", ["pact", "pondernet"])
def test_discrete_evaluation_is_reproducible_with_a_generator(method):
    model, x, _ = model_and_batch(2)
    halting = loop.Halting(method, 8, eval_mode="discrete")
    runs = [loop.run(model.step, model.initial_state(x), halting, training=False,
                     generator=torch.Generator().manual_seed(11)).steps for _ in range(2)]
    assert torch.equal(*runs)


def test_relaxed_evaluation_and_fixed_run_every_step():
    model, x, _ = model_and_batch(1)
    for halting in (loop.Halting("pact", 6, eval_mode="relaxed"), loop.Halting("fixed", 6)):
        out = loop.run(model.step, model.initial_state(x), halting, training=False)
        assert (out.steps == 6).all()


@pytest.mark.parametrize("method", ["act", "dact", "pact", "pondernet"])
def test_training_loss_reaches_the_halting_unit(method):
    model, x, target = model_and_batch(4)
    out = loop.run(model.step, model.initial_state(x), loop.Halting(method, 6, tau=0.1), target=target,
                   generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert model.halt.weight.grad is not None and model.halt.weight.grad.abs().sum() > 0
    assert torch.isfinite(out.loss)
    assert torch.allclose(out.probs.sum(1), torch.ones(x.shape[0]), atol=1e-5)


def test_act_training_stops_once_every_sample_halted():
    model, x, target = model_and_batch(4, halt_bias=8.0)      # h ~ 1: every sample halts at step 1
    counting = CountingStep(model.step)
    out = loop.run(counting, model.initial_state(x), loop.Halting("act", 8), target=target)
    assert counting.rows == x.shape[0] and (out.steps == 1).all()


def test_penalty_is_tau_times_mean_ponder_cost():
    model, x, target = model_and_batch(4)
    out = loop.run(model.step, model.initial_state(x), loop.Halting("dact", 6, tau=0.25), target=target)
    assert torch.allclose(out.penalty, 0.25 * out.ponder.mean())
    assert torch.allclose(out.loss, out.task_loss + out.penalty)


def test_state_may_be_a_dict_or_list():
    rows = torch.tensor([True, False, True])
    state = {"a": torch.arange(3), "b": [torch.arange(6).view(3, 2)]}
    picked = loop.select(state, rows)
    assert picked["a"].tolist() == [0, 2] and picked["b"][0].tolist() == [[0, 1], [4, 5]]
    with pytest.raises(ValueError, match="state"):
        loop.select("not a tensor", rows)


@pytest.mark.parametrize("kwargs, name", [
    (dict(method="ponder"), "method"), (dict(max_steps=0), "max_steps"), (dict(tau=-1.0), "tau"),
    (dict(eps=1.0), "eps"), (dict(temperature=0.0), "temperature"), (dict(eval_mode="greedy"), "eval_mode"),
    (dict(prior=0.0), "prior"),
])
def test_bad_halting_settings_name_the_parameter(kwargs, name):
    settings = dict(method="dact", max_steps=4) | kwargs
    with pytest.raises(ValueError, match=name):
        loop.Halting(**settings)


def test_run_refuses_something_that_is_not_a_halting():
    model, x, _ = model_and_batch(0)
    with pytest.raises(ValueError, match="halting"):
        loop.run(model.step, model.initial_state(x), "dact")


# ----------------------------------------------------------------------------- the rules


def test_loop_names_no_mechanism():
    """loop.py dispatches through the registry: no mechanism's name appears in its code."""
    import ast
    import inspect

    from adaptive import registry

    tree = ast.parse(inspect.getsource(loop))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.alias):
            words.add(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.add(node.value)
    assert registry.MECHANISMS and not words & set(registry.MECHANISMS)


def test_methods_are_fixed_then_the_registry():
    from adaptive import registry

    assert loop.METHODS == ("fixed", *registry.MECHANISMS)
    assert all(loop.RULES[name].name == name for name in loop.METHODS)
    assert loop.Halting("pondernet", 4).rule.penalty_name == "beta"
    assert loop.Halting("dact", 4).rule.penalty_name == "tau"


def test_a_new_mechanism_is_one_rule_and_one_registry_entry(monkeypatch):
    """A rule registered under a new name runs through the loop with nothing else changed."""
    from adaptive.rule import HaltingRule, Training

    class HalfWay(HaltingRule):
        """Answers with step ceil(L / 2), in training and in evaluation."""

        name = "halfway"

        def train(self, logits, h, halting, generator):
            middle = (halting.max_steps + 1) // 2
            zero = torch.zeros(h.shape[0])
            return Training(torch.log_softmax(logits[:, middle - 1], dim=-1), ponder=zero, penalty=zero)

        def halt(self, step, halting):
            halted = torch.full_like(step.h, step.n == (halting.max_steps + 1) // 2, dtype=torch.bool)
            return halted, lambda mask: torch.softmax(step.logits[mask], dim=-1)

    monkeypatch.setitem(loop.RULES, "halfway", HalfWay())
    model, x, target = model_and_batch(0)
    halting = loop.Halting("halfway", max_steps=5)
    trained = loop.run(model.step, model.initial_state(x), halting, target=target)
    trained.loss.backward()
    early = loop.run(model.step, model.initial_state(x), halting, training=False)
    assert early.steps.tolist() == [3] * len(x)
    assert torch.allclose(early.probs, trained.probs.detach(), atol=1e-6)


@pytest.mark.parametrize("number", [np.float32(0.05), torch.tensor(0.05), 0.05])
def test_halting_takes_numbers_of_any_real_type_and_stores_floats(number):
    halting = loop.Halting("act", np.int64(4), tau=number, eps=number, temperature=number + 1, prior=number)
    assert halting.max_steps == 4 and type(halting.max_steps) is int
    assert all(type(getattr(halting, name)) is float for name in ("tau", "eps", "temperature", "prior"))
    assert halting.eps == pytest.approx(0.05)
    with pytest.raises(ValueError, match="eps"):
        loop.Halting("act", 4, eps=torch.tensor([0.1, 0.2]))         # not a number: a 1-d tensor


# ----------------------------------------------------------------------------- the step-function protocol


def broken_step(model, *, halt_shape=None, logits_1d=False, drop_batch=False):
    """The model's step, broken in one way."""
    def step(state):
        logits, halt_logit, new_state = model.step(state)
        if halt_shape == "column":
            halt_logit = halt_logit.unsqueeze(1)                           # (b, 1)
        if logits_1d:
            logits = logits[:, 0]                                          # (b,)
        if drop_batch:
            new_state = tuple(part[:-1] for part in new_state)             # one row lost
        return logits, halt_logit, new_state
    return step


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("broken, match", [
    (dict(halt_shape="column"), r"halting logit per sample, shape \(b,\).*squeeze"),
    (dict(logits_1d=True), r"logits of shape \(b, C\)"),
    (dict(drop_batch=True), r"next state batch first"),
])
def test_a_broken_step_function_is_named_at_the_first_step(broken, match, training):
    model, x, target = model_and_batch(0)
    halting = loop.Halting("dact", max_steps=4)
    with pytest.raises(ValueError, match=match):
        loop.run(broken_step(model, **broken), model.initial_state(x), halting,
                 target=target if training else None, training=training)


def test_states_that_are_not_batch_first_or_empty_are_refused():
    model, x, target = model_and_batch(0)
    halting = loop.Halting("act", max_steps=4)
    with pytest.raises(ValueError, match="same batch size"):
        loop.run(model.step, (x, torch.zeros(3, 16), x.new_ones(len(x), 1)), halting, target=target)
    with pytest.raises(ValueError, match="empty"):
        loop.run(model.step, model.initial_state(x[:0]), halting, training=False)
    with pytest.raises(ValueError, match="tuple/list/dict of tensors"):
        loop.run(model.step, (x, "hidden"), halting, training=False)


def test_bad_targets_are_named():
    model, x, target = model_and_batch(0)
    halting = loop.Halting("pact", max_steps=3)
    with pytest.raises(ValueError, match="target must be"):
        loop.run(model.step, model.initial_state(x), halting, target=target.float())
    with pytest.raises(ValueError, match=r"class indices in 0..1"):
        loop.run(model.step, model.initial_state(x), halting, target=target + 5)


def test_nan_logits_at_evaluation_are_reported():
    model, x, _ = model_and_batch(0)
    x = x.clone()
    x[0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN"):
        loop.run(model.step, model.initial_state(x), loop.Halting("fixed", max_steps=2), training=False)


@pytest.mark.parametrize("generator", ["seed 0", 0, np.random.default_rng(0)])
@pytest.mark.parametrize("training", [True, False])
def test_a_generator_that_is_no_torch_generator_is_named(generator, training):
    model, x, target = model_and_batch(0)[:3]
    halting = loop.Halting("pondernet", 4, tau=0.01)
    with pytest.raises(ValueError, match="generator must be a torch.Generator or None, got"):
        loop.run(model.step, model.initial_state(x), halting, target=target, training=training, generator=generator)
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        pact.sample_halt(torch.rand(3, 4), "discrete", generator=generator)


@pytest.mark.parametrize("method, mode", [("fixed", "thresholded"), ("act", "thresholded"), ("dact", "thresholded"),
                                          ("pact", "thresholded"), ("pact", "relaxed"),
                                          ("pondernet", "thresholded")])
def test_evaluation_without_early_exit_decides_as_early_exit_does(method, mode):
    """Halting(early_exit=False) computes every step for the whole batch and applies the rule's
    decisions afterwards (rule.decide): the same steps and answers as dropping halted samples."""
    model, x, _ = model_and_batch(3, batch=256)
    outputs = [loop.run(model.step, model.initial_state(x), loop.Halting(method, 8, tau=0.01, eval_mode=mode,
                                                                          early_exit=early_exit),
                        training=False, generator=torch.Generator().manual_seed(1)) for early_exit in (True, False)]
    assert torch.equal(outputs[0].steps, outputs[1].steps)
    assert len(outputs[0].steps.unique()) >= (1 if method == "fixed" or mode == "relaxed" else 3)
    assert torch.allclose(outputs[0].probs, outputs[1].probs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method, mode", [("act", "thresholded"), ("dact", "thresholded"), ("pact", "relaxed"),
                                          ("pondernet", "thresholded")])
@pytest.mark.parametrize("share, falls_back", [(0.0, True), (float("inf"), False)])
def test_auto_early_exit_falls_back_to_every_step_with_the_same_answers(method, mode, share, falls_back,
                                                                       monkeypatch):
    """early_exit="auto" falls back after step 2 where the bookkeeping costs more than BOOKKEEPING_SHARE of
    the step (0: always, inf: never); either way the steps and answers are early exit's, and
    Output.early_exit says which ran. A run that fell back computes every remaining step for the rows
    still running after step 2."""
    monkeypatch.setattr(loop, "BOOKKEEPING_SHARE", share)
    model, x, _ = model_and_batch(3, batch=256, halt_bias=0.5)
    counting = CountingStep(model.step)
    auto, exact = [loop.run(step, model.initial_state(x), loop.Halting(method, 8, tau=0.01, eval_mode=mode,
                                                                       early_exit=early_exit),
                            training=False, generator=torch.Generator().manual_seed(1))
                   for step, early_exit in ((counting, "auto"), (model.step, True))]
    assert torch.equal(auto.steps, exact.steps)
    assert torch.allclose(auto.probs, exact.probs, atol=1e-6, rtol=0)
    assert auto.early_exit is not falls_back and exact.early_exit
    last = int(exact.steps.max()) if method == "act" else 8      # ACT stops unrolling once every sample halted
    expected = (len(x) + int((exact.steps >= 2).sum()) + int((exact.steps > 2).sum()) * (last - 2) if falls_back
                else int(exact.steps.sum()))
    assert counting.rows == expected


def test_auto_early_exit_keeps_early_exit_for_discrete_draws(monkeypatch):
    """Discrete draws differ between early exit and every step, so "auto" never switches between them."""
    monkeypatch.setattr(loop, "BOOKKEEPING_SHARE", 0.0)
    model, x, _ = model_and_batch(3, batch=64, halt_bias=0.5)
    outputs = [loop.run(model.step, model.initial_state(x), loop.Halting("pondernet", 8, eval_mode="discrete",
                                                                          early_exit=early_exit),
                        training=False, generator=torch.Generator().manual_seed(1)) for early_exit in ("auto", True)]
    assert outputs[0].early_exit and torch.equal(outputs[0].steps, outputs[1].steps)


def test_early_exit_must_be_a_bool_or_auto():
    with pytest.raises(ValueError, match="early_exit must be True, False or 'auto', got 'no'"):
        loop.Halting("act", 4, early_exit="no")


@pytest.mark.parametrize("method, mode", [("act", "thresholded"), ("dact", "thresholded"), ("pact", "discrete"),
                                          ("pact", "relaxed"), ("pondernet", "discrete")])
def test_compacting_later_changes_neither_answers_nor_steps_nor_draws(method, mode):
    """Halting(compact_at=c) keeps computing halted rows until a share c of the batch has halted;
    the rule sees the running samples only, so the outcome (random draws included) is the same."""
    model, x, _ = model_and_batch(3, batch=256)
    outputs, computed = [], []
    for compact_at in (0.0, 0.3, 0.9):
        counting = CountingStep(model.step)
        halting = loop.Halting(method, 8, tau=0.01, eval_mode=mode, compact_at=compact_at, early_exit=True)
        outputs.append(loop.run(counting, model.initial_state(x), halting, training=False,
                                generator=torch.Generator().manual_seed(1)))
        computed.append(counting.rows)
    for out in outputs[1:]:
        assert torch.equal(out.steps, outputs[0].steps)
        assert torch.allclose(out.probs, outputs[0].probs, atol=1e-6, rtol=0)
    assert computed[0] == int(outputs[0].steps.sum())            # compacting at once: halted rows cost nothing
    if mode != "relaxed":
        assert computed[0] <= computed[1] <= computed[2] and computed[0] < computed[2]   # later: more rows


@pytest.mark.parametrize("value", [-0.1, 1.0, "half", True])
def test_compact_at_outside_its_range_is_named(value):
    with pytest.raises(ValueError, match=r"compact_at .* must be a number in \[0, 1\), got"):
        loop.Halting("act", 4, compact_at=value)
