"""The skeleton every chapter's trainer runs: resume, the loop over units, evaluations, checkpoints.

A run is counted in *units*: one optimiser update (parity, spatial) or one epoch (CLEVR).
``Trainer`` owns what the three chapters share and the chapter keeps what is its own
(models, optimisers, data, what one unit does, what an evaluation measures)::

    trainer = Trainer(path, config.comparable(), total=config.updates, eval_every=config.eval_every,
                      checkpoint_every=checkpoint_every)
    if trainer.saved:                                   # resuming: restore the chapter's objects
        model.load_state_dict(trainer.saved["model"])
    state = trainer.run(train_unit, evaluate, payload)  # state["curve"], state["seconds"], ...

What ``Trainer`` does:

* ``__init__`` reads the checkpoint at ``path`` if there is one (``adaptive.infra.checkpoint``)
  and refuses one that holds more units than ``total``;
* ``run`` calls ``train_unit(index)`` for index = units done, ..., total - 1; after every
  ``eval_every`` units and after the last it calls ``evaluate(report)`` and appends the point
  it returns to the learning curve; it saves the checkpoint atomically after every
  ``checkpoint_every`` units and at the end, on the main rank only;
* it keeps the training time across resumes: a finished run read back trains nothing, saves
  nothing and keeps its ``seconds``.

The checkpoint policy, the same in every chapter (parity, CLEVR, spatial):

* *The interval is a parameter.* Every trainer's ``train(..., checkpoint_every=...)`` and
  command line (``--checkpoint-every``) take it, in the chapter's unit. The end of a run is
  always saved, so a run shorter than the interval has its checkpoint too. The interval is no
  part of the configuration a checkpoint must match: a run resumes under another one.
* *A corrupt or foreign checkpoint is refused* (``checkpoint.read``): empty, truncated, not
  a torch file, damaged, or a torch file that is not a checkpoint of this package, with its
  path and the ``rm`` command that removes it. Checkpoints are read with ``torch.load(weights_only=True)``,
  so a foreign pickle is never run. A checkpoint made with another configuration is refused
  with the list of differences and the same command.
* *A longer run extends a finished one.* The configuration a checkpoint must match leaves out
  the run's length (``updates``, CLEVR's ``epochs``): asking for more units than a checkpoint
  holds trains only the rest, asking for fewer is refused. Extending gives what a longer
  fresh run gives, bit for bit, because no chapter's units depend on the planned length, with
  one exception the spatial trainer refuses: a learning-rate schedule set in fractions of
  ``updates``, where the longer run would have used other rates for the updates already done.
  ``eval_every`` must match, so that the curve keeps one spacing.
* *A resumed run repeats an uninterrupted one exactly* (same machine and thread count), killed
  anywhere, in the middle of an epoch too: the checkpoint holds every state a unit changes
  (weights, optimiser, schedule, generators or the numbers they are derived from).

The checkpoint is ``{"config": config, "state": state, **payload()}`` with
``state = {unit: units done, "curve": [points], "seconds": training seconds, **extra_state}``.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .. import _checks
from . import checkpoint


class Trainer:
    """The loop from the units done to ``total``, with its evaluations and checkpoints.

    Args:
        path: the checkpoint file (None: nothing is saved and nothing resumed).
        config: what a checkpoint must match to be resumed (a dict of plain values): the run's
            configuration without its length.
        total: units to have done when ``run`` returns; a checkpoint of fewer is extended.
        unit: the name of a unit, the counter's key in ``state`` and in every curve point
            (``"update"`` or ``"epoch"``).
        eval_every: evaluate after every this many units (and after the last).
        checkpoint_every: save after every this many units (and after the last).
        is_main: whether this process writes checkpoints and shows progress (rank 0).
        progress: show a progress bar over the units.
        description: the progress bar's label.
        extra_state: the chapter's own entries of ``state`` in a fresh run (e.g. the last
            evaluation); they are saved and restored with the rest, and the chapter updates them.
    """

    def __init__(self, path: str | os.PathLike | None, config: dict, *, total: int, unit: str = "update",
                 eval_every: int = 1, checkpoint_every: int = 1, is_main: bool = True,
                 progress: bool = True, description: str = "", extra_state: dict | None = None):
        _checks.positive_int("total", total)
        _checks.positive_int("eval_every", eval_every)
        _checks.positive_int("checkpoint_every", checkpoint_every)
        self.path = None if path is None else Path(path)
        self.config, self.total, self.unit = config, total, unit
        self.eval_every, self.checkpoint_every = eval_every, checkpoint_every
        self.is_main, self.progress, self.description = is_main, progress, description
        self.saved = None if self.path is None else checkpoint.load(self.path, config)   # None: a fresh run
        if self.saved is None:
            self.state = {unit: 0, "curve": [], "seconds": 0.0, **(extra_state or {})}
        else:
            self.state = self.saved["state"]
            if self.done > total:
                raise ValueError(f"the checkpoint {self.path} already holds {self.done} {unit}s, more than the "
                                 f"{total} {unit}s asked for; ask for at least {self.done} or use another "
                                 f"checkpoint directory")
        self._started = None             # set by ``run``: the clock, as if the run had never stopped

    @property
    def done(self) -> int:
        """Units done so far (restored from the checkpoint when resuming)."""
        return self.state[self.unit]

    def elapsed(self) -> float:
        """Training seconds so far, those of earlier calls included (while ``run`` runs)."""
        return time.perf_counter() - self._started

    def save(self, payload: Callable[[], dict]) -> None:
        """Write ``{"config", "state", **payload()}`` atomically (main rank only, and only with a path)."""
        self.state["seconds"] = self.elapsed()
        if self.path is not None and self.is_main:
            checkpoint.save(self.path, {"config": self.config, "state": self.state, **payload()})

    def run(self, train_unit: Callable[[int], Any], evaluate: Callable[[Any], dict],
            payload: Callable[[], dict] = dict) -> dict:
        """Train the units still to do; return ``state`` (``unit``, ``"curve"``, ``"seconds"``).

        Args:
            train_unit: ``train_unit(index)`` trains unit ``index`` (0-based, so ``index`` units
                are done before it) and returns a report, anything ``evaluate`` needs.
            evaluate: ``evaluate(report)`` with the last unit's report; returns the curve
                point's values (the skeleton adds the unit count as its first key).
            payload: ``payload()`` returns the chapter's part of the checkpoint (models,
                optimisers, generator states...).
        """
        first = saved_at = self.done
        self._started = time.perf_counter() - self.state["seconds"]
        bar = tqdm(total=self.total, initial=first, disable=not (self.progress and self.is_main),
                   desc=self.description, leave=False)
        while self.done < self.total:
            report = train_unit(self.done)
            self.state[self.unit] += 1
            bar.update(1)
            evaluating = self.done % self.eval_every == 0 or self.done == self.total
            if evaluating:
                point = {self.unit: self.done, **evaluate(report)}
                self.state["curve"].append(point)
                bar.set_postfix({key: f"{value:.3g}" for key, value in point.items()
                                 if key != self.unit and isinstance(value, float)})
            if self.done % self.checkpoint_every == 0:
                self.save(payload)
                saved_at = self.done
        bar.close()
        if saved_at < self.done:                 # units trained since the last save: a short run saves here
            self.save(payload)
        return self.state
