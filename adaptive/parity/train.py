"""Training and evaluating step functions on the parity task, one run or a grid.

``train`` runs one configuration: Adam on fresh batches from a seeded stream,
a learning curve on the fixed held-out set, a final evaluation with early
exit, atomic checkpoints and resume. ``train_grid`` runs many configurations,
in parallel processes when asked, with a progress bar.
"""
from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm import tqdm

from .. import _checks, loop, pact
from ..infra import checkpoint
from ..numerics import flush_denormals
from .model import ParityRNN
from .task import Parity


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run (recorded in every result)."""

    method: str
    tau: float = 0.0
    seed: int = 0
    size: int = 8
    hidden: int = 64
    max_steps: int = 8
    iterations: int = 2000
    batch_size: int = 128
    lr: float = 3e-3
    eval_size: int = 2000
    eval_every: int = 250
    eval_seed: int = 12345
    eps: float = 0.01
    temperature: float = 1.0
    prior: float = 0.2
    halt_bias: float | None = None           # None: 1 for ACT (Graves), 0 otherwise
    eval_modes: tuple[str, ...] = ()         # PACT / PonderNet: modes to evaluate in

    def __post_init__(self):
        self.halting()                       # validates method, tau, eps, ...
        for name in ("seed", "eval_seed"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"{name} must be an integer, got {getattr(self, name)!r}")
        for name in ("size", "hidden", "iterations", "batch_size", "eval_size", "eval_every"):
            _checks.positive_int(name, getattr(self, name))
        _checks.positive("lr", self.lr)
        for mode in self.eval_modes:
            _checks.choice("eval_modes", mode, pact.MODES)

    def halting(self, eval_mode: str | None = None) -> loop.Halting:
        return loop.Halting(self.method, self.max_steps, tau=self.tau, eps=self.eps,
                            temperature=self.temperature, prior=self.prior,
                            eval_mode=eval_mode or self.modes()[0])

    def modes(self) -> tuple[str, ...]:
        """Evaluation modes: PACT and PonderNet may use several, the others one."""
        if self.method in ("pact", "pondernet"):
            return self.eval_modes or ("thresholded",)
        return ("thresholded",)

    def key(self) -> str:
        """A file name unique to this configuration."""
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
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
        "most_steps": int(out.steps.max()),
        "steps_by_difficulty": {int(d): steps[difficulty == d].mean().item() for d in levels},
        "accuracy_by_difficulty": {int(d): correct[difficulty == d].mean().item() for d in levels},
    }


@flush_denormals()
def train(config: RunConfig, device: str = "cpu", checkpoint_dir: str | Path | None = None,
          progress: bool = True, checkpoint_every: int = 500) -> list[dict]:
    """Train one configuration; return one result row per evaluation mode.

    With ``checkpoint_dir``, the run saves itself every ``checkpoint_every``
    iterations and at the end, and a later call with the same configuration
    resumes from where it stopped (or returns the finished run's results).
    """
    torch.manual_seed(config.seed)
    task = Parity(config.size)
    x_val, y_val, d_val = (t.to(device) for t in task.fixed_set(config.eval_size, config.eval_seed))
    halt_bias = config.halt_bias if config.halt_bias is not None else (1.0 if config.method == "act" else 0.0)
    model = ParityRNN(config.size, config.hidden, halt_bias=halt_bias).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    stream = torch.Generator().manual_seed(config.seed)                     # training batches
    noise = torch.Generator(device=device).manual_seed(config.seed + 1)     # PACT / PonderNet draws
    halting = config.halting()
    state = {"iteration": 0, "curve": [], "seconds": 0.0}
    path = Path(checkpoint_dir) / f"{config.key()}.pt" if checkpoint_dir else None
    saved = checkpoint.load(path, asdict(config)) if path else None
    if saved:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        stream.set_state(saved["stream"])
        noise.set_state(saved["noise"].to(noise.get_state().device))
        state = saved["state"]

    def save():
        if path:
            checkpoint.save(path, {"config": asdict(config), "model": model.state_dict(),
                                   "optimizer": optimizer.state_dict(), "stream": stream.get_state(),
                                   "noise": noise.get_state(), "state": state})

    bar = tqdm(total=config.iterations, initial=state["iteration"], disable=not progress,
               desc=config.key().rsplit("-", 1)[0], leave=False)
    started = time.perf_counter() - state["seconds"]
    first_iteration = state["iteration"]
    while state["iteration"] < config.iterations:
        x, target, _ = (t.to(device) for t in task.sample(config.batch_size, stream))
        out = loop.run(model.step, model.initial_state(x), halting, target=target, generator=noise)
        if not torch.isfinite(out.loss):
            raise FloatingPointError(
                f"{config.key()}: the loss became {out.loss.item()} at iteration {state['iteration'] + 1}; "
                f"lower lr (now {config.lr:g}) or tau (now {config.tau:g}), or change seed")
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        state["iteration"] += 1
        bar.update(1)
        if state["iteration"] % config.eval_every == 0 or state["iteration"] == config.iterations:
            scores = evaluate(model, halting, x_val, y_val, d_val, noise)
            state["curve"].append({"iteration": state["iteration"], "train_loss": out.loss.item(),
                                   "task_loss": out.task_loss.item(),
                                   "accuracy": scores["accuracy"], "mean_steps": scores["mean_steps"]})
            bar.set_postfix(acc=f"{scores['accuracy']:.3f}", steps=f"{scores['mean_steps']:.2f}")
        if state["iteration"] % checkpoint_every == 0:
            state["seconds"] = time.perf_counter() - started
            save()
    bar.close()
    if state["iteration"] > first_iteration or not saved:        # a finished run keeps its time
        state["seconds"] = time.perf_counter() - started
        save()
    rows = []
    for mode in config.modes():
        scores = evaluate(model, config.halting(mode), x_val, y_val, d_val,
                          torch.Generator(device=device).manual_seed(config.eval_seed))
        rows.append({"method": config.method, "eval_mode": mode, "tau": config.tau, "seed": config.seed,
                     **scores, "max_steps": config.max_steps, "train_seconds": state["seconds"],
                     "curve": state["curve"], "config": asdict(config)})
    return rows


def _train_quietly(args) -> list[dict]:
    config, device, checkpoint_dir = args
    torch.set_num_threads(1)
    return train(config, device, checkpoint_dir, progress=False)


def train_grid(configs: list[RunConfig], device: str = "cpu", checkpoint_dir: str | Path | None = None,
               workers: int = 1) -> list[dict]:
    """Train every configuration; ``workers`` > 1 trains that many at once in
    separate processes (one thread each), which suits small CPU models."""
    _checks.positive_int("workers", workers)
    rows = []
    with tqdm(total=len(configs), desc="runs") as bar:
        if workers == 1:
            for config in configs:
                rows += train(config, device, checkpoint_dir)
                bar.update(1)
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                for result in pool.map(_train_quietly, [(c, device, checkpoint_dir) for c in configs]):
                    rows += result
                    bar.update(1)
    return rows
