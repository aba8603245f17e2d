"""Many parity runs trained as one batched computation: K models stacked, one step for all of them.

A run of chapter 3 trains a small GRU (64 units) on batches of 128. Its operations are small,
and most of its time goes to what surrounds the arithmetic: dispatching each operation,
recording it for autograd, the mechanism's many small tensor operations, Adam's loop over
eight parameters. ``train_batched`` trains K runs at once. ``StackedParityRNN`` holds the K
models' parameters stacked along a first dimension of K, one step of all K models is a few
batched matrix products (``torch.baddbmm``) and elementwise operations on (K, B, ...) tensors,
and one Adam updates the stacked parameters: the cost of an operation is paid once for K runs.
(The matrix products themselves cost what they cost alone: a (128, 64) by (64, 192) product
already runs near a CPU core's peak. They bound what stacking can save.)

Each run gives the result it gives alone (``adaptive.parity.train.train``), to float tolerance:

* its model starts from the same parameters (``torch.manual_seed(seed)``, then ``ParityRNN``);
* it trains on the same batches, from its own stream ``torch.Generator().manual_seed(seed)``
  and of its update's difficulties (``RunConfig.training_task``): the stream depends on the
  seed, size, batch size and the difficulties of its batches alone (``stream_key``), so runs
  that share them share one stream, drawn once per update;
* its loss is what ``adaptive.loop.run`` computes for the run alone: as many steps (ACT's
  training stops once every sample of *its* batch has halted), its rule's ``train`` and
  ``task_loss``, its penalty weight, and its own noise generator (``seed + 1``) drawn in the
  same order and shapes (``run_losses``);
* the stack's loss is the sum of the runs' losses, and run k's parameters appear in its own
  loss only, so each receives its own run's gradient;
* where a run clips its gradient (``clip_norm``), the norm is its own parameters' alone;
* Adam is elementwise, so one Adam over the stacked parameters is K Adams with the same
  settings, which is why a stack holds runs of one learning rate and one schedule of it;
* it is evaluated alone, by ``adaptive.parity.train.evaluate`` on its own ``ParityRNN`` with
  its own generator, at the same updates, and its result rows are ``train``'s.

"To float tolerance" is all a different order of the same float operations can give, and
parity training amplifies it: the escape from the loss plateau at log 2 is chaotic, so that a
change of the learning rate by one part in a million moves a 2000-update ACT run's accuracy by
several points. A stacked run agrees with its lone twin to rounding for a few hundred
updates (the tests check 30); after 2000 they agree as two runs on two machines do, in
distribution, not digit for digit.

Runs of any methods, penalties, seeds and ``max_steps`` share a stack; what they must agree in
is ``STACKED``. A step computes the stack's runs up to the last one still computing, so the
stack shrinks as its runs finish; it is ordered so that they mostly finish from its end
(``stack_order``). A run that has finished before one behind it computes on; those extra steps
are no part of its run, and get no weight and no gradient.

A stack trains as one run of ``adaptive.infra.trainer.Trainer``, under the checkpoint policy,
with one checkpoint ``<checkpoint_dir>/stack-<digest>.pt`` named after its runs. ``workers`` > 1
cuts the runs into that many stacks, trained in parallel processes with one torch thread each
(``adaptive.infra.pool``); a grid resumes from its checkpoints with the same ``workers``.
``python -m adaptive.parity.benchmark`` measures it against ``train_grid``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .. import _checks, loop
from ..infra import pool
from ..infra.trainer import Trainer
from ..numerics import flush_denormals
from ..rule import Training
from .model import ParityRNN
from .task import Parity
from .train import RunConfig, evaluate, result_row

STACKED = ("size", "hidden", "batch_size", "lr", "lr_decay_at", "lr_decay", "updates", "eval_every",
           "input_every_step")                                                                  # one per stack


class StackedParityRNN(nn.Module):
    """K ``ParityRNN`` of one shape as one module, each parameter stacked along a first dimension of K.

    The weights are kept as (K, inputs, outputs), so that a layer of the K models is one batched
    product ``torch.baddbmm(bias, inputs, weight)`` of their (K, B, inputs) inputs. The GRU cell's
    input weight is split into the input vector's columns and the first-step flag's: the input is
    the same at every step, so its product is computed once per batch, and the flag (1 at the
    first step, 0 after) adds its column at the first step only. The output layer and the halting
    unit are one head of C + 1 columns.

    Args:
        models: K ``ParityRNN`` with the same input size, hidden units and classes.
    """

    def __init__(self, models: Sequence[ParityRNN]):
        super().__init__()
        if not models or not all(isinstance(model, ParityRNN) for model in models):
            raise ValueError(f"models must be a non-empty sequence of ParityRNN, got {models!r}")
        shapes = sorted({(m.cell.input_size - 1, m.hidden, m.output.out_features, m.input_every_step)
                         for m in models})
        if len(shapes) > 1:
            raise ValueError(f"the models of a stack must share one (size, hidden, classes, input_every_step); "
                             f"got {shapes}")
        self.hidden, self.classes = models[0].hidden, models[0].output.out_features
        self.input_every_step = models[0].input_every_step

        def stacked(tensors) -> nn.Parameter:
            return nn.Parameter(torch.stack([tensor.detach() for tensor in tensors]).contiguous())
        weight_ih = [m.cell.weight_ih for m in models]                                   # (3H, size + 1) each
        self.input_weight = stacked(weight.t()[:-1] for weight in weight_ih)            # (K, size, 3H)
        self.flag_weight = stacked(weight.t()[-1:] for weight in weight_ih)             # (K, 1, 3H)
        self.input_bias = stacked(m.cell.bias_ih.unsqueeze(0) for m in models)          # (K, 1, 3H)
        self.hidden_weight = stacked(m.cell.weight_hh.t() for m in models)              # (K, H, 3H)
        self.hidden_bias = stacked(m.cell.bias_hh.unsqueeze(0) for m in models)         # (K, 1, 3H)
        self.head_weight = stacked(torch.cat([m.output.weight, m.halt.weight]).t() for m in models)  # (K, H, C + 1)
        self.head_bias = stacked(torch.cat([m.output.bias, m.halt.bias]).unsqueeze(0) for m in models)  # (K, 1, C + 1)

    @torch.no_grad()
    def write_into(self, k: int, model: ParityRNN) -> ParityRNN:
        """Copy model k's parameters into ``model``, a ``ParityRNN`` of the stack's shape; return it."""
        C = self.classes
        model.cell.weight_ih.copy_(torch.cat([self.input_weight[k], self.flag_weight[k]]).t())
        model.cell.bias_ih.copy_(self.input_bias[k, 0])
        model.cell.weight_hh.copy_(self.hidden_weight[k].t())
        model.cell.bias_hh.copy_(self.hidden_bias[k, 0])
        model.output.weight.copy_(self.head_weight[k, :, :C].t())
        model.output.bias.copy_(self.head_bias[k, 0, :C])
        model.halt.weight.copy_(self.head_weight[k, :, C:].t())
        model.halt.bias.copy_(self.head_bias[k, 0, C:])
        return model

    def weights(self, k: int | None = None) -> tuple[torch.Tensor, ...]:
        """The recurrent weight and bias and the head's weight and bias of the first k models (None: all)."""
        weights = (self.hidden_weight, self.hidden_bias, self.head_weight, self.head_bias)
        return weights if k is None else tuple(weight[:k] for weight in weights)

    def step(self, weights: tuple[torch.Tensor, ...], inputs: tuple[torch.Tensor, torch.Tensor],
             hidden: torch.Tensor | None):
        """One step of k models: what ``ParityRNN.step`` computes (a GRU cell, then the heads), for each.

        Args:
            weights: the k models' ``weights``.
            inputs: the input's product with the cell's input weight, bias included, for the reset
                and update gates (k, B, 2H) and for the candidate (k, B, H).
            hidden: (k, B, H) the cell's state; None at the first step, where it is zero and its
                product with the recurrent weight is the recurrent bias alone.
        Returns:
            heads (k, B, C + 1): the step's class logits, then its halting logit; the new hidden (k, B, H).
        """
        hidden_weight, hidden_bias, head_weight, head_bias = weights
        H = self.hidden
        recurrent = hidden_bias if hidden is None else torch.baddbmm(hidden_bias, hidden, hidden_weight)
        inputs_rz, inputs_n = inputs
        recurrent_rz, recurrent_n = recurrent.split((2 * H, H), dim=-1)    # reset and update gates, candidate
        reset, update = torch.sigmoid(inputs_rz + recurrent_rz).chunk(2, dim=-1)       # (k, B, H) each
        candidate = torch.tanh(inputs_n + reset * recurrent_n)
        if hidden is None:
            hidden = candidate - update * candidate                         # (1 - z) n + z h, with h = 0
        else:
            hidden = candidate + update * (hidden - candidate)              # (1 - z) n + z h, as nn.GRUCell
        return torch.baddbmm(head_bias, hidden, head_weight), hidden

    def unroll(self, x: torch.Tensor, haltings: Sequence[loop.Halting]) -> tuple[torch.Tensor, list[int]]:
        """Every model on its batch, for the steps ``adaptive.loop.run`` takes in training alone.

        Run k takes ``haltings[k].max_steps`` steps, or fewer where its rule's ``unrolled_enough``
        says so (ACT, once every sample of its batch has halted). A step computes the stack's first
        runs up to the last one still computing; a run before it that has finished computes on,
        and those steps are not part of its run. So any order of the runs is right, and one in
        which they finish from the last to the first (``stack_order``) computes the least.

        Args:
            x: (K, B, size) each model's batch.
            haltings: K ``Halting``, one per model.
        Returns:
            heads (K, B, L, C + 1): each step's class logits and halting logit, L the most steps any
            run took, zero where a run computed no step; steps: K ints, the steps each run took.
        """
        K = x.shape[0]
        asked = [may_stop_early(halting) for halting in haltings]
        gates = (2 * self.hidden, self.hidden)                                         # (K, B, 2H), (K, B, H)
        inputs = torch.baddbmm(self.input_bias, x, self.input_weight).split(gates, dim=-1)
        first = tuple(part + flag for part, flag in zip(inputs, self.flag_weight.split(gates, dim=-1)))
        if not self.input_every_step:                  # later steps see zeros: the input's bias alone
            inputs = self.input_bias.split(gates, dim=-1)                              # (K, 1, 2H), (K, 1, H)
        hidden = None                                                                  # (K, B, H) zeros
        heads, h, steps = [], [[] for _ in haltings], [0] * K
        computing, weights = K, self.weights()                  # the first ``computing`` runs compute
        with contextlib.ExitStack() as later_steps:
            for n in range(1, max(halting.max_steps for halting in haltings) + 1):
                if n == 2:                          # later steps: the same origin, so skip the value checks
                    later_steps.enter_context(_checks.values_trusted())
                out, hidden = self.step(weights, first if n == 1 else inputs, hidden)       # (k, B, C + 1)
                heads.append(nn.functional.pad(out, (0, 0, 0, 0, 0, K - computing)))      # (K, B, C + 1)
                for k, halting in enumerate(haltings[:computing]):
                    if steps[k]:
                        continue
                    if asked[k]:
                        with torch.no_grad():
                            h[k].append(halting.rule.halting_values(out[k, :, -1]))     # (B,)
                    if n == halting.max_steps or (asked[k] and halting.rule.unrolled_enough(h[k], halting)):
                        steps[k] = n
                still = computing
                while still and steps[still - 1]:
                    still -= 1
                if not still:
                    break
                if still < computing:
                    computing, weights = still, self.weights(still)
                    inputs, hidden = tuple(part[:still] for part in inputs), hidden[:still]
        return torch.stack(heads, dim=2), steps


@functools.cache
def may_stop_early(halting: loop.Halting) -> bool:
    """Whether training under ``halting`` may stop before ``max_steps``: whether its rule's
    ``unrolled_enough`` says so after one step at which every sample halted for certain (h = 1)."""
    return halting.max_steps > 1 and halting.rule.unrolled_enough([torch.ones(1)], halting)


@functools.cache
def mixing_key(halting: loop.Halting) -> loop.Halting | None:
    """Runs whose losses one call of their rule computes (``run_losses``): those of one key; None: alone.

    A rule works sample by sample, and what its training reads of ``halting`` is neither ``tau``
    (the loop weighs the penalty the rule returns) nor ``eval_mode``; runs of one rule and
    otherwise equal settings may share a call, on their batches side by side. A rule whose
    training draws random numbers (PACT's relaxed sample of z) may not: each run draws from its
    own generator in its own shape, as it does alone.
    """
    probe = torch.Generator().manual_seed(0)
    before = probe.get_state()
    L = halting.max_steps
    halting.rule.train(torch.zeros(1, L, 2), torch.full((1, L), 0.5), halting, probe)
    if not torch.equal(before, probe.get_state()):
        return None
    return dataclasses.replace(halting, tau=0.0, eval_mode=loop.Halting.eval_mode)


def run_losses(heads: torch.Tensor, steps: Sequence[int], haltings: Sequence[loop.Halting], target: torch.Tensor,
               noises: Sequence[torch.Generator]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each run's loss and task loss, as ``adaptive.loop.run`` computes them for the run alone.

    The runs of one ``mixing_key`` that took the same steps are mixed by one call of their rule;
    each run's rows of what it returns are its own, and its task loss and penalty are averaged
    over them alone.

    Args:
        heads: (K, B, L, C + 1) and steps (K ints), from ``StackedParityRNN.unroll``.
        haltings: K ``Halting``, one per run.
        target: (K, B) each run's class indices.
        noises: K generators, each run's random draws.
    Returns:
        K pairs of scalars: (task loss + tau * mean penalty, task loss).
    """
    batch, classes = heads.shape[1], heads.shape[-1] - 1
    calls: dict[tuple, list[int]] = {}                   # the runs of each call of a rule
    for k, halting in enumerate(haltings):
        key = mixing_key(halting)
        calls.setdefault((key, steps[k]) if key is not None else (k,), []).append(k)
    losses = [None] * len(haltings)
    for runs in calls.values():
        halting, rule, taken = haltings[runs[0]], haltings[runs[0]].rule, steps[runs[0]]
        logits, halt_logits = heads[runs, :, :taken].flatten(0, 1).split((classes, 1), dim=-1)  # (m B, L_k, C | 1)
        # a call of several runs draws nothing, so the first run's generator stands for all
        mixed = rule.train(logits, rule.halting_values(halt_logits.squeeze(-1)), halting, noises[runs[0]])
        for index, k in enumerate(runs):
            rows = slice(index * batch, (index + 1) * batch)                            # run k's samples
            own = Training(*(None if field is None else field[rows] for field in mixed))
            loss, task_loss, _ = rule.loss(logits[rows], own, target[k], haltings[k].tau)   # as loop.run's
            losses[k] = (loss, task_loss)
    return losses


def stream_key(config: RunConfig) -> tuple:
    """What decides a run's training batches besides ``STACKED``: its seed and the difficulties it trains on."""
    return config.seed, config.train_max_nonzero, config.curriculum_start, config.curriculum_updates


def clip_each(parameters: Sequence[torch.Tensor], clip_norms: torch.Tensor) -> None:
    """Clip each run's gradient to its own L2 norm, as ``torch.nn.utils.clip_grad_norm_`` clips a run alone.

    Args:
        parameters: the stack's parameters, each (K, ...) with its gradient.
        clip_norms: (K,) each run's largest norm (inf: no clipping).
    """
    squares = sum(parameter.grad.flatten(1).pow(2).sum(dim=1) for parameter in parameters)     # (K,)
    factor = (clip_norms / (squares.sqrt() + 1e-6)).clamp(max=1.0)                              # (K,)
    for parameter in parameters:
        parameter.grad.mul_(factor.view(-1, *[1] * (parameter.dim() - 1)))


def stack_key(config: RunConfig) -> tuple:
    """What runs must share to be trained in one stack (``STACKED``)."""
    return tuple(getattr(config, name) for name in STACKED)


def stack_order(config: RunConfig) -> tuple:
    """Where a run goes in its stack (``StackedParityRNN.unroll``): by ``max_steps``, longest first; among
    equal, the runs that may stop early last, so that the stack shrinks past them once they have; the
    runs of one method together."""
    return -config.max_steps, may_stop_early(config.halting()), config.method


def stacks(configs: Sequence[RunConfig], count: int = 1) -> list[list[int]]:
    """The positions of ``configs``, cut into stacks: one per ``stack_key``, each cut into up to
    ``count`` stacks of about equal ``max_steps`` in all, of neighbours in ``stack_order``."""
    _checks.positive_int("count", count)
    groups: dict[tuple, list[int]] = {}
    for position, config in enumerate(configs):
        groups.setdefault(stack_key(config), []).append(position)
    parts = []
    for positions in groups.values():
        ordered = sorted(positions, key=lambda position: stack_order(configs[position]))
        total, done, cuts = sum(configs[position].max_steps for position in ordered), 0, [[]]
        for position in ordered:
            if done * count >= total * len(cuts):                     # this cut has its share: start the next
                cuts.append([])
            cuts[-1].append(position)
            done += configs[position].max_steps
        parts += cuts
    return parts


def run_configs(configs: Sequence[RunConfig]) -> list[RunConfig]:
    """``configs`` as a list, checked: a non-empty sequence of ``RunConfig``."""
    if isinstance(configs, RunConfig) or not isinstance(configs, Sequence) or not configs:
        raise ValueError(f"configs must be a non-empty sequence of RunConfig, got {configs!r}")
    for index, config in enumerate(configs):
        if not isinstance(config, RunConfig):
            raise ValueError(f"configs must be a non-empty sequence of RunConfig; configs[{index}] is "
                             f"{type(config).__name__} {config!r}")
    return list(configs)


@flush_denormals()
def train_stack(configs: Sequence[RunConfig], device: str = "cpu", checkpoint_dir: str | Path | None = None,
                progress: bool = False, checkpoint_every: int = 500) -> list[list[dict]]:
    """Train runs that agree in ``STACKED`` as one stack; return each run's rows, as ``train`` does.

    Args:
        configs: the runs, in any order.
        device: torch device.
        checkpoint_dir: where the stack saves itself every ``checkpoint_every`` updates and at the
            end, and resumes from (None: no checkpoint).
        progress: show a progress bar over the updates.
        checkpoint_every: updates between checkpoints.
    Returns:
        for each config, in the order given, its rows (one per evaluation mode).
    """
    configs = run_configs(configs)
    differing = [name for name in STACKED if len({getattr(config, name) for config in configs}) > 1]
    if differing:
        raise ValueError(f"the runs of one stack must agree in {', '.join(STACKED)}; these differ: "
                         f"{', '.join(differing)} (train_batched makes a stack of each group of runs that agree)")
    _checks.positive_int("checkpoint_every", checkpoint_every)
    device = _checks.device(device)
    order = sorted(range(len(configs)), key=lambda position: stack_order(configs[position]))
    runs = [configs[position] for position in order]
    shared, haltings = runs[0], [config.halting() for config in runs]
    task = Parity(shared.size)                                               # held out: every difficulty
    models = []
    for config, halting in zip(runs, haltings):                        # as ``train`` makes each model
        torch.manual_seed(config.seed)
        halt_bias = config.halt_bias if config.halt_bias is not None else halting.rule.initial_halt_bias
        models.append(config.model(halt_bias).to(device))
    stack = StackedParityRNN(models).to(device)
    optimizer = torch.optim.Adam(stack.parameters(), lr=shared.lr, fused=True)     # one kernel a tensor
    drawn = list(dict.fromkeys(stream_key(config) for config in runs))         # one stream each, drawn once
    drawers = [next(config for config in runs if stream_key(config) == key) for key in drawn]
    streams = [torch.Generator().manual_seed(config.seed) for config in drawers]   # training batches
    stream_of = torch.tensor([drawn.index(stream_key(config)) for config in runs], device=device)  # (K,)
    clipping = any(config.clip_norm is not None for config in runs)
    clip_norms = torch.tensor([config.clip_norm or float("inf") for config in runs], device=device)  # (K,)
    noises = [torch.Generator(device=device).manual_seed(config.seed + 1) for config in runs]
    held_out = {where: tuple(t.to(device) for t in task.fixed_set(*where))
                for where in dict.fromkeys((config.eval_size, config.eval_seed) for config in runs)}
    comparable = {"runs": [config.comparable() for config in runs]}
    digest = hashlib.sha1(json.dumps(comparable, sort_keys=True).encode()).hexdigest()[:10]
    trainer = Trainer(Path(checkpoint_dir) / f"stack-{digest}.pt" if checkpoint_dir else None, comparable,
                      total=shared.updates, eval_every=shared.eval_every, checkpoint_every=checkpoint_every,
                      progress=progress, description=f"stack of {len(runs)} runs")
    if trainer.saved:
        stack.load_state_dict(trainer.saved["model"])
        optimizer.load_state_dict(trainer.saved["optimizer"])
        for generator, state in zip(streams + noises, trainer.saved["streams"] + trainer.saved["noise"]):
            generator.set_state(state.to(generator.get_state().device))

    def train_unit(index: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One Adam update of every run on its fresh batch; each run's (loss, task loss)."""
        batches = [config.training_task(index).sample(shared.batch_size, stream)
                   for config, stream in zip(drawers, streams)]
        x = torch.stack([batch[0] for batch in batches]).to(device)[stream_of]            # (K, B, size)
        target = torch.stack([batch[1] for batch in batches]).to(device)[stream_of]       # (K, B)
        heads, steps = stack.unroll(x, haltings)                                           # (K, B, L, C + 1)
        losses = run_losses(heads, steps, haltings, target, noises)
        total = sum(loss for loss, _ in losses)
        if not torch.isfinite(total):
            k = next(k for k, (loss, _) in enumerate(losses) if not torch.isfinite(loss))
            raise FloatingPointError(
                f"{runs[k].key()}: the loss became {losses[k][0].item()} at update {index + 1}; "
                f"lower lr (now {shared.lr:g}) or tau (now {runs[k].tau:g}), or change seed")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if clipping:
            clip_each(list(stack.parameters()), clip_norms)
        for group in optimizer.param_groups:
            group["lr"] = shared.learning_rate(index)
        optimizer.step()
        return losses

    def scores(k: int, halting: loop.Halting) -> dict:
        """Run k evaluated alone, as ``train`` evaluates it, with draws of its own."""
        config = runs[k]
        return evaluate(stack.write_into(k, models[k]), halting, *held_out[config.eval_size, config.eval_seed],
                        torch.Generator(device=device).manual_seed(config.eval_seed))

    def evaluate_point(losses: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
        """Every run's point of its learning curve: its last losses and its held-out scores."""
        points = []
        for k, (loss, task_loss) in enumerate(losses):
            held_out_scores = scores(k, haltings[k])
            points.append({"train_loss": loss.item(), "task_loss": task_loss.item(),
                           "accuracy": held_out_scores["accuracy"], "mean_steps": held_out_scores["mean_steps"]})
        return {"runs": points}

    def payload() -> dict:
        return {"model": stack.state_dict(), "optimizer": optimizer.state_dict(),
                "streams": [generator.get_state() for generator in streams],
                "noise": [generator.get_state() for generator in noises]}

    state = trainer.run(train_unit, evaluate_point, payload)
    rows: list[list[dict]] = [[] for _ in runs]
    for k, (config, halting) in enumerate(zip(runs, haltings)):
        curve = [{"update": point["update"], **point["runs"][k]} for point in state["curve"]]
        for mode in config.modes():
            rows[order[k]].append(result_row(config, mode, scores(k, config.halting(mode)), curve,
                                             state["seconds"] / len(runs)))
    return rows


def train_batched(configs: Sequence[RunConfig], device: str = "cpu", checkpoint_dir: str | Path | None = None,
                  workers: int = 1, progress: bool = False, checkpoint_every: int = 500) -> list[dict]:
    """Train every configuration in stacks (``train_stack``); the rows ``train_grid`` returns, in its order.

    Runs that agree in ``STACKED`` share a stack; ``workers`` > 1 cuts them into that many stacks,
    trained at once in separate processes with one torch thread each. A row's ``train_seconds``
    is its share of its stack's training time.
    """
    configs = run_configs(configs)
    _checks.positive_int("workers", workers)
    _checks.positive_int("checkpoint_every", checkpoint_every)
    _checks.device(device)                                  # refused here, before any process starts
    parts = stacks(configs, workers)
    train_one = functools.partial(train_stack, device=device, checkpoint_dir=checkpoint_dir, progress=progress,
                                  checkpoint_every=checkpoint_every)
    trained = pool.map_in_processes(train_one, [[configs[position] for position in part] for part in parts],
                                    workers, desc="stacks")
    rows: list[list[dict]] = [[] for _ in configs]
    for part, stack_rows in zip(parts, trained):
        for position, run_rows in zip(part, stack_rows):
            rows[position] = run_rows
    return [row for run_rows in rows for row in run_rows]
