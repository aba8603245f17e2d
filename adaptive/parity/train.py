"""Training and evaluating step functions on the parity task, one run or a grid.

``train`` runs one configuration: Adam (constant learning rate) on fresh batches from a
seeded stream, a learning curve on the fixed held-out set, a final evaluation with early
exit, atomic checkpoints and resume (the loop, the evaluation schedule and the checkpoint
policy are ``adaptive.infra.trainer``'s). A checkpoint is named after the configuration
without its length (``RunConfig.key``), so a run asked for more updates than a finished one
holds extends it, and the result is the longer run's, bit for bit: nothing in an update
depends on ``updates``, and the learning curve's evaluations draw from their own generator,
never from the training's. ``train_grid`` runs many configurations, in parallel processes
when asked, with a progress bar. CLI::

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

from .. import _checks, loop, pact
from ..infra import cli, pool
from ..infra.trainer import Trainer
from ..numerics import flush_denormals
from .model import ParityRNN
from .task import Parity

RESUMABLE = ("updates",)                     # may change when a run is resumed: a longer run extends it


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

    def halting(self, eval_mode: str | None = None) -> loop.Halting:
        return loop.Halting(self.method, self.max_steps, tau=self.tau, eps=self.eps,
                            temperature=self.temperature, prior=self.prior,
                            eval_mode=eval_mode or self.modes()[0])

    def modes(self) -> tuple[str, ...]:
        """Evaluation modes: those of ``eval_modes`` the method's rule distinguishes (PACT's and
        PonderNet's), or thresholded alone."""
        known = loop.RULES[_checks.choice("method", self.method, loop.METHODS)].eval_modes
        return tuple(mode for mode in self.eval_modes if mode in known) or ("thresholded",)

    def comparable(self) -> dict:
        """The settings a checkpoint must share to be resumed: all but ``RESUMABLE``."""
        return {key: value for key, value in asdict(self).items() if key not in RESUMABLE}

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
    task = Parity(config.size)
    x_val, y_val, d_val = (t.to(device) for t in task.fixed_set(config.eval_size, config.eval_seed))
    halt_bias = config.halt_bias if config.halt_bias is not None else config.halting().rule.initial_halt_bias
    model = ParityRNN(config.size, config.hidden, halt_bias=halt_bias).to(device)
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
        """One Adam update on a fresh batch; its loop output."""
        x, target, _ = (t.to(device) for t in task.sample(config.batch_size, stream))
        out = loop.run(model.step, model.initial_state(x), halting, target=target, generator=noise)
        if not torch.isfinite(out.loss):
            raise FloatingPointError(
                f"{config.key()}: the loss became {out.loss.item()} at update {index + 1}; "
                f"lower lr (now {config.lr:g}) or tau (now {config.tau:g}), or change seed")
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
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
        rows.append({"method": config.method, "eval_mode": mode, "tau": config.tau,
                     "penalty_name": halting.rule.penalty_name, "seed": config.seed,
                     **scores, "max_steps": config.max_steps, "train_seconds": state["seconds"],
                     "curve": state["curve"], "config": asdict(config)})
    return rows


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
