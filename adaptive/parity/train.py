"""Training and evaluating step functions on the parity task, one run or a grid.

``train`` runs one configuration: Adam on fresh batches from a seeded stream, a learning curve
on the fixed held-out set, a final evaluation with early exit, atomic checkpoints and resume
(the loop, the evaluation schedule and the checkpoint policy are ``adaptive.infra.trainer``'s).

What a run trains on and how, beyond the defaults (each off unless asked for, and each a
function of the update's index alone, never of ``updates``):

* ``train_max_nonzero``: training inputs hold 1..m non-zero entries, while the held-out set
  still covers every difficulty 1..size (PonderNet's extrapolation: train on the easy half,
  test on the unseen hard half);
* a curriculum over difficulty: the largest difficulty of a training batch grows linearly
  from ``curriculum_start`` to m over the first ``curriculum_updates`` updates
  (``RunConfig.largest_difficulty``), easy parities first;
* ``clip_norm``: the gradient's L2 norm is clipped to at most this;
* ``lr_decay_at``: the learning rate is multiplied by ``lr_decay`` after each of these updates.

A checkpoint is named after the configuration without its length (``RunConfig.key``), so a
run asked for more updates than a finished one holds extends it, and the result is the longer
run's, bit for bit: nothing in an update depends on ``updates``, and the learning curve's
evaluations draw from their own generator, never from the training's. ``train_grid`` runs
many configurations, in parallel processes when asked, with a progress bar. CLI::

    python -m adaptive.parity.train --method dact --tau 0.01 --checkpoint-dir build/parity
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .. import _checks, loop, pact
from ..infra import cli, pool
from ..infra.trainer import Trainer
from ..numerics import flush_denormals
from .model import ParityRNN
from .task import Parity

RESUMABLE = ("updates",)                     # may change when a run is resumed: a longer run extends it
LATER = ("train_max_nonzero", "curriculum_start", "curriculum_updates", "clip_norm", "lr_decay_at", "lr_decay",
         "input_every_step")


def _in_range(name: str, value, low: int, high: int, allowed: str) -> int:
    """Check an integer in low..high (``allowed`` says which names bound it)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {allowed} = {low}..{high}, got {value!r}")
    return value


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run (recorded in every result)."""

    method: str
    tau: float = 0.0
    seed: int = 0
    size: int = 8
    hidden: int = 64
    max_steps: int = 8
    updates: int = 2000                      # Adam updates
    batch_size: int = 128
    lr: float = 3e-3
    eval_size: int = 2000
    eval_every: int = 250
    eval_seed: int = 12345
    eps: float = 0.01
    temperature: float = 1.0
    prior: float = 0.2
    halt_bias: float | None = None           # None: the rule's (1 for ACT, as Graves; 0 otherwise)
    eval_modes: tuple[str, ...] = ()         # PACT / PonderNet: modes to evaluate in
    train_max_nonzero: int | None = None     # training inputs hold 1..this many non-zeros (None: size)
    curriculum_start: int | None = None      # None: no curriculum; else the first batches' largest difficulty
    curriculum_updates: int = 0              # updates over which that grows linearly to the training maximum
    clip_norm: float | None = None           # None: no clipping; else the largest L2 norm of the gradient
    lr_decay_at: tuple[int, ...] = ()        # updates after which the learning rate is multiplied by lr_decay
    lr_decay: float = 0.1
    input_every_step: bool = True            # False: the step sees the input at its first step only

    def __post_init__(self):
        self.halting()                       # validates method, tau, eps, ...
        for name in ("seed", "eval_seed"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"{name} must be an integer, got {getattr(self, name)!r}")
        for name in ("size", "hidden", "updates", "batch_size", "eval_size", "eval_every"):
            _checks.positive_int(name, getattr(self, name))
        _checks.positive("lr", self.lr)
        for mode in self.eval_modes:
            _checks.choice("eval_modes", mode, pact.MODES)
        if self.train_max_nonzero is not None:
            _in_range("train_max_nonzero", self.train_max_nonzero, 1, self.size, "1..size")
        if self.curriculum_start is None:
            if self.curriculum_updates != 0:
                raise ValueError(f"curriculum_updates must be 0 without a curriculum (curriculum_start=None), "
                                 f"got {self.curriculum_updates!r}; set curriculum_start to start one")
        else:
            _in_range("curriculum_start", self.curriculum_start, 1, self.training_max_nonzero(),
                      "1..train_max_nonzero" if self.train_max_nonzero is not None else "1..size")
            _checks.positive_int("curriculum_updates", self.curriculum_updates)
        if self.clip_norm is not None:
            _checks.positive("clip_norm", self.clip_norm)
        if not isinstance(self.lr_decay_at, tuple) or not all(
                isinstance(at, int) and not isinstance(at, bool) and at >= 1 for at in self.lr_decay_at) or \
                list(self.lr_decay_at) != sorted(set(self.lr_decay_at)):
            raise ValueError(f"lr_decay_at must be a tuple of increasing integers >= 1 (updates), "
                             f"got {self.lr_decay_at!r}")
        _checks.positive("lr_decay", self.lr_decay)
        if not isinstance(self.input_every_step, bool):
            raise ValueError(f"input_every_step must be True or False, got {self.input_every_step!r}")

    def halting(self, eval_mode: str | None = None) -> loop.Halting:
        return loop.Halting(self.method, self.max_steps, tau=self.tau, eps=self.eps,
                            temperature=self.temperature, prior=self.prior,
                            eval_mode=eval_mode or self.modes()[0])

    def modes(self) -> tuple[str, ...]:
        """Evaluation modes: those of ``eval_modes`` the method's rule distinguishes (PACT's and
        PonderNet's), or thresholded alone."""
        known = loop.RULES[_checks.choice("method", self.method, loop.METHODS)].eval_modes
        return tuple(mode for mode in self.eval_modes if mode in known) or ("thresholded",)

    def model(self, halt_bias: float = 0.0) -> ParityRNN:
        """A fresh ``ParityRNN`` of this run's shape (initialised from torch's global generator)."""
        return ParityRNN(self.size, self.hidden, halt_bias=halt_bias, input_every_step=self.input_every_step)

    def training_max_nonzero(self) -> int:
        """The most non-zero entries a training input holds (``train_max_nonzero``, or the size)."""
        return self.size if self.train_max_nonzero is None else self.train_max_nonzero

    def largest_difficulty(self, update: int) -> int:
        """The largest difficulty of the training batch of update ``update`` (0-based).

        Without a curriculum, ``training_max_nonzero``. With one, it grows linearly from
        ``curriculum_start`` at update 0 to ``training_max_nonzero`` at update ``curriculum_updates``
        (rounded down), and stays there.
        """
        high = self.training_max_nonzero()
        if self.curriculum_start is None or update >= self.curriculum_updates:
            return high
        return self.curriculum_start + (high - self.curriculum_start) * update // self.curriculum_updates

    def training_task(self, update: int) -> Parity:
        """The task the training batch of update ``update`` (0-based) is drawn from: 1..``largest_difficulty``."""
        return Parity(self.size, 1, self.largest_difficulty(update))

    def learning_rate(self, update: int) -> float:
        """The learning rate of update ``update`` (0-based): ``lr``, times ``lr_decay`` for each
        ``lr_decay_at`` already passed."""
        return self.lr * self.lr_decay ** sum(update >= at for at in self.lr_decay_at)

    def comparable(self) -> dict:
        """The settings a checkpoint must share to be resumed: all but ``RESUMABLE``. The fields
        added after the first checkpoints (``LATER``) are left out while at their defaults, so that
        those checkpoints keep their names and still resume."""
        defaults = RunConfig.__dataclass_fields__
        return {key: value for key, value in asdict(self).items()
                if key not in RESUMABLE and not (key in LATER and value == defaults[key].default)}

    def key(self) -> str:
        """A file name unique to this configuration but for its length (``comparable``)."""
        digest = hashlib.sha1(json.dumps(self.comparable(), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.method}-tau{self.tau:g}-L{self.max_steps}-seed{self.seed}-{digest}"


def evaluate(model: ParityRNN, halting: loop.Halting, x: torch.Tensor, target: torch.Tensor,
             difficulty: torch.Tensor, generator: torch.Generator | None = None) -> dict:
    """Accuracy and steps with per-sample early exit, overall and per difficulty."""
    was_training = model.training
    model.eval()
    out = loop.run(model.step, model.initial_state(x), halting, training=False, generator=generator)
    model.train(was_training)
    correct = (out.probs.argmax(dim=1) == target).float()                   # (n,)
    steps = out.steps.float()
    levels = difficulty.unique().tolist()
    return {
        "accuracy": correct.mean().item(),
        "mean_steps": steps.mean().item(),
        "observed_max_steps": int(out.steps.max()),
        "steps_by_difficulty": {int(d): steps[difficulty == d].mean().item() for d in levels},
        "accuracy_by_difficulty": {int(d): correct[difficulty == d].mean().item() for d in levels},
    }


@torch.no_grad()
def settling_steps(model: ParityRNN, x: torch.Tensor, target: torch.Tensor, difficulty: torch.Tensor,
                   max_steps: int) -> dict:
    """When the network's answer is settled: for each input, the first step from which the answer of
    every step up to ``max_steps`` is the right one, whatever any halting rule would decide.

    This measures the computation, not the halting: ponder time can only rise with difficulty if
    harder inputs need more steps before their answer settles. It is meaningful for a network trained
    to answer well at every step (PonderNet's loss weighs every step's answer; ACT's and DACT's
    answers after their halting step are untrained).

    Returns:
        ``settled_by_difficulty``: the mean settling step of the inputs that settle; ``settled_fraction``:
        the share of inputs of each difficulty that settle at all (their answer at ``max_steps`` is right).
    """
    _checks.positive_int("max_steps", max_steps)
    was_training = model.training
    model.eval()
    state, answers = model.initial_state(x), []
    for _ in range(max_steps):
        logits, _, state = model.step(state)
        answers.append(logits.argmax(dim=1))
    model.train(was_training)
    right = torch.stack(answers, dim=1) == target.unsqueeze(1)                       # (n, L)
    right_to_the_end = right.flip(1).int().cumprod(dim=1).flip(1).bool()            # (n, L)
    settled = right_to_the_end[:, -1]                                                # (n,)
    step = max_steps + 1 - right_to_the_end.sum(dim=1)                               # (n,) 1-based
    levels = difficulty.unique().tolist()
    return {"settled_by_difficulty": {int(d): step[(difficulty == d) & settled].float().mean().item()
                                      for d in levels},
            "settled_fraction": {int(d): settled[difficulty == d].float().mean().item() for d in levels}}


@flush_denormals()
def train(config: RunConfig, device: str = "cpu", checkpoint_dir: str | Path | None = None,
          progress: bool = True, checkpoint_every: int = 500) -> list[dict]:
    """Train one configuration; return one result row per evaluation mode.

    With ``checkpoint_dir``, the run saves itself to ``<checkpoint_dir>/<config.key()>.pt``
    every ``checkpoint_every`` updates and at the end, and a later call with the same
    configuration resumes from where it stopped (or returns the finished run's results); one
    with more ``updates`` trains only the updates still to do, one with fewer is refused.
    """
    _checks.positive_int("checkpoint_every", checkpoint_every)
    device = _checks.device(device)
    torch.manual_seed(config.seed)
    task = Parity(config.size)                                              # held out: every difficulty
    x_val, y_val, d_val = (t.to(device) for t in task.fixed_set(config.eval_size, config.eval_seed))
    halt_bias = config.halt_bias if config.halt_bias is not None else config.halting().rule.initial_halt_bias
    model = config.model(halt_bias).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    stream = torch.Generator().manual_seed(config.seed)                     # training batches
    noise = torch.Generator(device=device).manual_seed(config.seed + 1)     # PACT / PonderNet draws
    halting = config.halting()
    trainer = Trainer(Path(checkpoint_dir) / f"{config.key()}.pt" if checkpoint_dir else None, config.comparable(),
                      total=config.updates, eval_every=config.eval_every, checkpoint_every=checkpoint_every,
                      progress=progress, description=config.key().rsplit("-", 1)[0])
    if trainer.saved:
        model.load_state_dict(trainer.saved["model"])
        optimizer.load_state_dict(trainer.saved["optimizer"])
        stream.set_state(trainer.saved["stream"])
        noise.set_state(trainer.saved["noise"].to(noise.get_state().device))

    def train_unit(index: int) -> loop.Output:
        """One Adam update on a fresh batch (of the update's difficulties); its loop output."""
        x, target, _ = (t.to(device) for t in config.training_task(index).sample(config.batch_size, stream))
        out = loop.run(model.step, model.initial_state(x), halting, target=target, generator=noise)
        if not torch.isfinite(out.loss):
            raise FloatingPointError(
                f"{config.key()}: the loss became {out.loss.item()} at update {index + 1}; "
                f"lower lr (now {config.lr:g}) or tau (now {config.tau:g}), or change seed")
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if config.clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate(index)
        optimizer.step()
        return out

    def evaluate_point(out: loop.Output) -> dict:
        """The last update's losses, and the held-out scores with draws of their own (not ``noise``'s)."""
        scores = evaluate(model, halting, x_val, y_val, d_val,
                          torch.Generator(device=device).manual_seed(config.eval_seed))
        return {"train_loss": out.loss.item(), "task_loss": out.task_loss.item(),
                "accuracy": scores["accuracy"], "mean_steps": scores["mean_steps"]}

    def payload() -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "stream": stream.get_state(), "noise": noise.get_state()}

    state = trainer.run(train_unit, evaluate_point, payload)
    rows = []
    for mode in config.modes():
        scores = evaluate(model, config.halting(mode), x_val, y_val, d_val,
                          torch.Generator(device=device).manual_seed(config.eval_seed))
        rows.append(result_row(config, mode, scores, state["curve"], state["seconds"]))
    return rows


def result_row(config: RunConfig, eval_mode: str, scores: dict, curve: list[dict], train_seconds: float | None) -> dict:
    """A run's results row (CONTRIBUTING.md's fields) for one evaluation mode: what it is, its scores
    (``evaluate``'s, by difficulty too), its learning curve and training time, its whole configuration.
    ``task`` is ``"parity-extrapolation"`` for a run trained on fewer non-zeros than it is tested on."""
    task = "parity-extrapolation" if config.training_max_nonzero() < config.size else "parity"
    return {"method": config.method, "eval_mode": eval_mode, "task": task, "size": config.size,
            "tau": config.tau, "penalty_name": config.halting().rule.penalty_name,
            "seed": config.seed, **scores, "max_steps": config.max_steps, "train_seconds": train_seconds,
            "curve": curve, "config": asdict(config)}


def train_grid(configs: list[RunConfig], device: str = "cpu", checkpoint_dir: str | Path | None = None,
               workers: int = 1) -> list[dict]:
    """Train every configuration, one result row per evaluation mode, in the order of ``configs``;
    ``workers`` > 1 trains that many at once in separate processes (one thread each), which
    suits small CPU models (``adaptive.infra.pool``)."""
    quiet = functools.partial(train, device=device, checkpoint_dir=checkpoint_dir, progress=False)
    return [row for rows in pool.map_in_processes(quiet, configs, workers) for row in rows]


# ----------------------------------------------------------------------------------------------
# Command line

_HELP = {
    "method": "act, dact, pact, pondernet or fixed", "tau": "ponder penalty weight",
    "max_steps": "L, the most steps a sample may take", "updates": "Adam updates",
    "eval_every": "updates between evaluations on the held-out set",
    "halt_bias": "initial bias of the halting unit (default: 1 for ACT, 0 otherwise)",
    "eval_modes": "PACT / PonderNet: the evaluation modes (default: thresholded)",
    "train_max_nonzero": "training inputs hold 1..this many non-zeros; evaluation covers 1..size (default: size)",
    "curriculum_start": "a curriculum: the first batches' largest difficulty (default: no curriculum)",
    "curriculum_updates": "updates over which the curriculum's bound grows to the training maximum",
    "clip_norm": "clip the gradient's L2 norm to this (default: no clipping)",
    "lr_decay_at": "updates after which the learning rate is multiplied by --lr-decay",
    "lr_decay": "the learning rate's factor at each of --lr-decay-at",
    "input_every_step": "the step sees the input at every step (--no-input-every-step: at the first step only)",
}


def main(argv=None) -> list[dict]:
    """Train one ``RunConfig`` into a checkpoint folder and print a JSON summary of its rows."""
    parser = argparse.ArgumentParser(prog="python -m adaptive.parity.train",
                                     description="Train one step function on parity (ACT, DACT, PACT, "
                                                 "PonderNet or a fixed number of steps).")
    cli.add_config_arguments(parser, RunConfig, help_texts=_HELP, choices={"eval_modes": pact.MODES})
    parser.add_argument("--checkpoint-dir", default="build/parity",
                        help="folder of the checkpoint <key>.pt (default build/parity)")
    parser.add_argument("--checkpoint-every", type=int, default=500,
                        help="updates between checkpoints; the end is always saved (default 500)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = vars(parser.parse_args(argv))
    config = cli.config_from(RunConfig, args)
    rows = train(config, args["device"], args["checkpoint_dir"], progress=not args["quiet"],
                 checkpoint_every=args["checkpoint_every"])
    summary = {"checkpoint": str(Path(args["checkpoint_dir"]) / f"{config.key()}.pt"),
               "runs": [{key: row[key] for key in ("method", "eval_mode", "tau", "seed", "accuracy", "mean_steps",
                                                   "observed_max_steps", "max_steps", "train_seconds")}
                        for row in rows]}
    print(json.dumps(summary))
    return rows


if __name__ == "__main__":
    main()
