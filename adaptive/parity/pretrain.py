"""Chapter 3's pretrained grids: runs too long for a default build, trained once and shipped.

A grid is a named set of ``RunConfig``: its methods, its seeds and the settings they share.
``python -m adaptive.parity.pretrain <grid>`` trains it with the package's own trainer
(``adaptive.parity.batched.train_batched``: its runs in stacks, resumable from the checkpoints
under ``--checkpoint-dir``) and records every run in ``pretrained/`` through
``adaptive.infra.pretrained``: its weights, and a manifest entry with this command, its seed,
the commit, the machine and its learning curve. The chapter evaluates the recorded models in
its build (``evaluate_pretrained``), and retrains them with ``-p retrain True`` (``train``).

The command is all a model depends on: the grid fixes every setting, the stacks included
(``workers``), so rerunning it repeats the training bit for bit on the machine that made it.
``--updates N`` trains only the first N updates, which are the first N of the full run (no
setting depends on the run's length); that is how the tests check a recorded curve. Run::

    python -m adaptive.parity.pretrain rising16              # train and record the grid
    python -m adaptive.parity.pretrain rising16 --updates 500 --directory /tmp/p   # its beginning
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import _checks
from ..infra import checkpoint, pretrained
from .batched import StackedParityRNN, train_batched
from .model import ParityRNN
from .task import Parity
from .train import RunConfig, evaluate, result_row


@dataclass(frozen=True)
class Grid:
    """A named set of runs: every method at every seed, with the settings they share.

    Args:
        description: what the grid is for, in one line.
        methods: per method, the ``RunConfig`` fields that are its own (method, tau, eval_modes, ...).
        seeds: the seeds every method is trained with.
        common: the settings all runs share (size, hidden, max_steps, updates, lr, ...).
        workers: the processes (and stacks) the runs are trained in.
    """

    description: str
    methods: tuple[dict, ...]
    seeds: tuple[int, ...]
    common: dict = field(default_factory=dict)
    workers: int = 2

    def configs(self, updates: int | None = None) -> list[RunConfig]:
        """The grid's runs, every method at every seed; ``updates`` trains only their beginning."""
        length = {} if updates is None else {"updates": _checks.positive_int("updates", updates)}
        return [RunConfig(**{**self.common, **method, "seed": seed, **length})
                for method in self.methods for seed in self.seeds]


SEEDS = (0, 1, 2)
GRIDS: dict[str, Grid] = {
    "rising16": Grid(
        "16 entries, L = 16: a fixed one-step network, ACT, DACT, PACT and PonderNet, 3 seeds each",
        methods=({"method": "fixed", "max_steps": 1}, {"method": "act", "tau": 1e-3}, {"method": "dact", "tau": 1e-3},
                 {"method": "pact", "tau": 1e-3, "eval_modes": ("thresholded", "discrete")},
                 {"method": "pondernet", "tau": 1e-2, "eval_modes": ("discrete", "thresholded")}),
        seeds=SEEDS, common={"size": 16, "max_steps": 16, "hidden": 64, "updates": 30000, "eval_every": 1000,
                             "curriculum_start": 2, "curriculum_updates": 6000, "lr_decay_at": (20000,),
                             "lr_decay": 0.3}),
    "first16": Grid(
        "16 entries, L = 16, the input at the first step only: ACT, DACT and PonderNet, 3 seeds each",
        methods=({"method": "act", "tau": 1e-3}, {"method": "dact", "tau": 1e-3},
                 {"method": "pondernet", "tau": 1e-2, "eval_modes": ("discrete", "thresholded")}),
        seeds=SEEDS, common={"size": 16, "max_steps": 16, "hidden": 64, "updates": 20000, "eval_every": 1000,
                             "curriculum_start": 2, "curriculum_updates": 6000, "lr_decay_at": (15000,),
                             "lr_decay": 0.3, "input_every_step": False}),
    "uniform16": Grid(
        "16 entries, L = 16, the input at the first step only, every difficulty from the first update (no "
        "curriculum): ACT, DACT and PonderNet, 3 seeds each",
        methods=({"method": "act", "tau": 1e-3}, {"method": "dact", "tau": 1e-3},
                 {"method": "pondernet", "tau": 1e-2, "eval_modes": ("discrete", "thresholded")}),
        seeds=SEEDS, common={"size": 16, "max_steps": 16, "hidden": 64, "updates": 20000, "eval_every": 1000,
                             "lr_decay_at": (15000,), "lr_decay": 0.3, "input_every_step": False}),
    "extrapolation16": Grid(
        "16 entries, trained on 1..8 non-zeros, tested on 1..16: ACT, DACT and PonderNet, 3 seeds each",
        methods=({"method": "act", "tau": 1e-3}, {"method": "dact", "tau": 1e-3},
                 {"method": "pondernet", "tau": 1e-2, "prior": 0.1, "eval_modes": ("discrete", "thresholded")}),
        seeds=SEEDS, common={"size": 16, "max_steps": 20, "hidden": 64, "updates": 15000, "eval_every": 1000,
                             "train_max_nonzero": 8}),
}
# The levers tried on first16's ACT and DACT, whose ponder time does not rise with difficulty:
# each grid changes one setting of first16 (seed 0). Chapter 3 evaluates them next to first16.
LEVERS = {"nocurriculum": ("no curriculum", {"curriculum_start": None, "curriculum_updates": 0}),
          "nodecay": ("no learning-rate cut", {"lr_decay_at": ()}),
          "clip1": ("gradient norm clipped at 1", {"clip_norm": 1.0}),
          "hidden128": ("a GRU of 128 units", {"hidden": 128}),
          "longer": ("40,000 updates, the cut at 30,000", {"updates": 40000, "lr_decay_at": (30000,)})}
GRIDS.update({f"first16-{lever}": Grid(f"first16's ACT and DACT with {what}, seed 0",
                                       methods=GRIDS["first16"].methods[:2], seeds=(0,),
                                       common={**GRIDS["first16"].common, **changes})
              for lever, (what, changes) in LEVERS.items()})
# The one lever that met both targets in its seed (DACT, twice the updates), over three seeds and
# every method; then ACT's and DACT's runs again at a tenth of the penalty.
LONG16 = {**GRIDS["first16"].common, **LEVERS["longer"][1]}
GRIDS["long16"] = Grid("first16 trained twice as long (40,000 updates, the cut at 30,000): ACT, DACT, PACT and "
                       "PonderNet, 3 seeds each",
                       methods=GRIDS["rising16"].methods[1:], seeds=SEEDS, common=LONG16)
GRIDS["long16-tau1e-4"] = Grid("long16's ACT and DACT with a tenth of its penalty (tau = 1e-4), 3 seeds each",
                               methods=({"method": "act", "tau": 1e-4}, {"method": "dact", "tau": 1e-4}),
                               seeds=SEEDS, common=LONG16)
# The runs that fail stop pondering before the hard inputs are learnt. ACT's rule starts its halting
# unit at a bias of +1 (h = 0.73: about 2 steps) and DACT's at 0 (continuing with 0.5); a bias of
# -3 starts both at all 16 steps (ACT's h = 0.05, DACT's continuing probability 0.95).
GRIDS["long16-haltbias"] = Grid("long16's ACT and DACT with the halting unit's bias at -3: pondering long from "
                                "the first update, 3 seeds each",
                                methods=tuple({**method, "halt_bias": -3.0} for method in GRIDS["long16"].methods[:2]),
                                seeds=SEEDS, common=LONG16)
# With the bias at -3 every run learnt every difficulty, but steps rose in 2 runs of 6. A slower
# curriculum (the hardest inputs arrive at update 20,000, not 6,000) gives the penalty longer to
# cut the easy inputs' steps before the hard ones are seen at all.
GRIDS["long16-haltbias-slow"] = Grid("long16-haltbias with a curriculum over 20,000 updates, not 6,000: "
                                     "ACT and DACT, 3 seeds each",
                                     methods=GRIDS["long16-haltbias"].methods, seeds=SEEDS,
                                     common={**LONG16, "curriculum_updates": 20000})


def name_of(grid: str, config: RunConfig) -> str:
    """The manifest name of one run of a grid, e.g. ``parity/rising16/act-tau0.001-seed0``."""
    return f"parity/{grid}/{config.method}-tau{config.tau:g}-seed{config.seed}"


def command(grid: str) -> str:
    """The command that trains and records ``grid``, as the manifest records it."""
    return shlex.join(["python", "-m", "adaptive.parity.pretrain", grid])


def grid_named(grid: str) -> Grid:
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {', '.join(sorted(GRIDS)) or 'none'}; got {grid!r}")
    return GRIDS[grid]


def trained_models(configs: list[RunConfig], checkpoint_dir: str | Path) -> list[ParityRNN]:
    """Each run's trained ``ParityRNN``, read from the stack checkpoints ``train_batched`` left in ``checkpoint_dir``.

    A stack's checkpoint names its runs (``{"config": {"runs": [comparable, ...]}}``, in the stack's
    order) and holds the stacked weights, so run k of a stack is ``StackedParityRNN.write_into(k, ...)``.
    """
    where: dict[str, tuple[Path, int]] = {}
    for path in sorted(Path(checkpoint_dir).glob("stack-*.pt")):
        for k, comparable in enumerate(checkpoint.read(path)["config"]["runs"]):
            where[json.dumps(comparable, sort_keys=True)] = (path, k)
    models = []
    for config in configs:
        key = json.dumps(config.comparable(), sort_keys=True)
        if key not in where:
            raise ValueError(f"no stack checkpoint in {checkpoint_dir} holds the run {config.key()}; train it first")
        path, k = where[key]
        payload = checkpoint.read(path)
        runs = len(payload["config"]["runs"])
        stack = StackedParityRNN([config.model() for _ in range(runs)])
        stack.load_state_dict(payload["model"])
        models.append(stack.write_into(k, config.model()))
    return models


def row_of(rows: list[dict], config: RunConfig) -> dict:
    """The first of ``rows`` that ``config`` trained."""
    return next(row for row in rows if row["config"] == dataclasses.asdict(config))


def train(grid: str, updates: int | None = None, checkpoint_dir: str | Path = "build/checkpoints/pretrain",
          directory: str | Path = pretrained.DIRECTORY, device: str = "cpu", record: bool = True) -> list[dict]:
    """Train ``grid`` (resuming from ``checkpoint_dir``) and record every run in ``directory``; its rows.

    Args:
        grid: a name in ``GRIDS``.
        updates: train only the first ``updates`` (None: the grid's own).
        checkpoint_dir: where the stacks save themselves and resume from.
        directory: the pretrained folder the models and their manifest entries go to.
        device: torch device.
        record: write the models and manifest entries (False: only train, and return the rows).
    """
    spec = grid_named(grid)
    configs = spec.configs(updates)
    rows = train_batched(configs, device=device, checkpoint_dir=Path(checkpoint_dir) / grid,
                         workers=spec.workers, progress=False)
    if record:
        models = trained_models(configs, Path(checkpoint_dir) / grid)
        for config, model in zip(configs, models):
            curve = row_of(rows, config)["curve"]
            pretrained.record(name_of(grid, config),
                              {"config": dataclasses.asdict(config), "state": model.state_dict()},
                              command=command(grid), seed=config.seed, curve=curve, directory=directory,
                              extra={"train_seconds": row_of(rows, config)["train_seconds"]})
    return rows


def load_model(name: str, directory: str | Path = pretrained.DIRECTORY) -> tuple[ParityRNN, RunConfig, dict]:
    """A recorded parity model (its hash checked), its ``RunConfig`` and its manifest entry."""
    payload, entry = pretrained.load(name, directory)
    saved = payload["config"]
    config = RunConfig(**{key: tuple(value) if isinstance(value, list) else value for key, value in saved.items()})
    model = config.model()
    model.load_state_dict(payload["state"])
    return model, config, entry


def evaluate_pretrained(grid: str, directory: str | Path = pretrained.DIRECTORY, device: str = "cpu",
                        eval_size: int | None = None) -> list[dict]:
    """Every recorded run of ``grid`` evaluated now, on its held-out set; rows as ``train`` returns them.

    A row is what training the run here would give, with its curve and training time from the
    manifest and ``"pretrained"``: the entry's name and commit. ``eval_size`` overrides the
    held-out set's size (a quick build evaluates fewer vectors).
    """
    device = _checks.device(device)
    rows = []
    for config in grid_named(grid).configs():
        name = name_of(grid, config)
        model, saved, entry = load_model(name, directory)
        model.to(device)
        task = Parity(saved.size)
        held_out = task.fixed_set(eval_size or saved.eval_size, saved.eval_seed)
        x, target, difficulty = (t.to(device) for t in held_out)
        for mode in saved.modes():
            generator = torch.Generator(device=device).manual_seed(saved.eval_seed)
            scores = evaluate(model, saved.halting(mode), x, target, difficulty, generator)
            rows.append({**result_row(saved, mode, scores, entry["curve"], entry.get("train_seconds")),
                         "pretrained": pretrained.origin(name, entry)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptive.parity.pretrain",
                                     description="Train one of chapter 3's pretrained grids and record its "
                                                 "models in the pretrained folder.")
    parser.add_argument("grid", help=f"the grid: {', '.join(sorted(GRIDS))}")
    parser.add_argument("--updates", type=int, default=None, help="train only the first updates (default: all)")
    parser.add_argument("--checkpoint-dir", default="build/checkpoints/pretrain",
                        help="where the stacks save themselves and resume from (default build/checkpoints/pretrain)")
    pretrained.add_directory_argument(parser)
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    args = parser.parse_args(argv)
    grid_named(args.grid)
    rows = train(args.grid, args.updates, args.checkpoint_dir, args.directory, args.device)
    for row in rows:
        print(f"{row['method']:10s} {row['eval_mode']:12s} tau={row['tau']:<8g} seed={row['seed']} "
              f"accuracy={row['accuracy']:.3f} mean_steps={row['mean_steps']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
