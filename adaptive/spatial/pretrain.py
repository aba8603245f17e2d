"""Chapter 6's shipped models: the longer recipe, over three seeds, evaluated in every build.

Fine-tuned for 150 updates (the chapter's τ grid), SACT and PSACT learn how deep each block
should be, and little about where: most ponder maps are flat. Fine-tuned for 1,000 updates
from the same 800-update plain network, their maps follow the objects (a total ponder map
AUC of about 0.95 in the first pilot). Three seeds of that take longer than a default build
can afford (about 35 minutes on 2 cores), so ``LONGER`` ships them through
``adaptive.infra.pretrained``: per seed, the plain network continued for as many updates (the
fair baseline), SACT and relaxed PSACT at one penalty, their weights only (about 1.1 MB each).
The chapter evaluates every one of them on its test images, and ``-p retrain True`` trains them
again with the recorded command::

    python -m adaptive.spatial.pretrain              # every seed: pre-train, then the three fine-tunes

The fine-tunes learn at 0.03, not at the pre-training's 0.1. At 0.1 (commit 01aab31, recorded on
an AVX2 AMD EPYC) seed 2's SACT settled on 7 units at every position from its first evaluation
on (total ponder map AUC 0.50) and its PSACT on 6 (AUC 0.70), while seeds 0 and 1 reached 0.94
to 0.96. On an AVX512 EPYC held to AVX2 kernels (see CONTRIBUTING), which repeated the recorded
pre-trainings bit for bit, τ = 0.2 left seed 2 as flat (SACT 0.50, PSACT 0.875); learning at 0.03
gave its SACT an AUC of 0.96 (0.988 accurate at 0.49 of the plain network's FLOPs), at 0.01 0.95
but 0.971 accurate.

The plain pre-training of a seed is the chapter's own at its defaults (800 updates), kept under
``--checkpoint-dir`` only, since nothing but the fine-tunes starts from it; every entry records
its configuration and learning curve (``pretrain``, ``pretrain_curve``).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from ..infra import checkpoint, cli, pretrained
from . import halting as spatial
from .train import CHECKPOINT, SpatialConfig, build, train_many

CHECKPOINT_DIR = "build/checkpoints/pretrain/spatial"
COMMAND = "python -m adaptive.spatial.pretrain"


@dataclass(frozen=True)
class Longer:
    """The longer fine-tuning recipe of chapter 6, at every seed.

    Args:
        seeds: data, initialisation and halting samples of each seed's runs.
        tau: the penalty of SACT and PSACT.
        pretrain_updates: updates of the plain network every fine-tune starts from.
        updates: fine-tuning updates of every variant (the learning rate drops at 60/75/90 %).
        finetune_lr: the fine-tunes' SGD learning rate (the pre-training's is ``common``'s).
        workers: processes training at once, one torch thread each.
        common: the ``SpatialConfig`` fields every run shares (the chapter's defaults).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    tau: float = 0.1
    pretrain_updates: int = 800
    updates: int = 1000
    finetune_lr: float = 0.03
    workers: int = 2
    common: tuple[tuple[str, object], ...] = (("train_size", 6000), ("test_size", 1000), ("batch_size", 64),
                                              ("lr", 0.1), ("depth", 20))

    def pretrain(self, seed: int) -> SpatialConfig:
        """The plain pre-training of ``seed``."""
        return SpatialConfig(method="fixed", tau=0.0, seed=seed, updates=self.pretrain_updates,
                             eval_every=self.pretrain_updates // 4, **dict(self.common))

    def variants(self, seed: int, checkpoint_dir: str | Path | None = CHECKPOINT_DIR
                 ) -> list[tuple[str, SpatialConfig]]:
        """(label, config) of the fine-tunes of ``seed``, each from ``seed``'s pre-training under
        ``checkpoint_dir`` (the config checks that it is there); None: no start (``init_from = None``),
        the configs to evaluate the shipped models with."""
        start = None if checkpoint_dir is None else str(Path(checkpoint_dir) / f"seed{seed}" / "pretrain" / CHECKPOINT)
        tuning = dict(seed=seed, updates=self.updates, eval_every=self.updates // 4, init_from=start,
                      **{**dict(self.common), "lr": self.finetune_lr})
        return [("fixed", SpatialConfig(method="fixed", tau=0.0, **tuning)),
                ("SACT", SpatialConfig(method="sact", tau=self.tau, eval_modes=("act", "thresholded"), **tuning)),
                ("PSACT", SpatialConfig(method="psact", tau=self.tau,
                                        eval_modes=("thresholded", "discrete", "relaxed"), **tuning))]

    def entry(self, config: SpatialConfig) -> str:
        """The manifest entry of a shipped fine-tune, e.g. ``spatial/longer/sact-tau0.1-seed0``."""
        return f"spatial/longer/{config.method}-tau{config.tau:g}-seed{config.seed}"


LONGER = Longer()


def train(grid: Longer = LONGER, checkpoint_dir: str | Path = CHECKPOINT_DIR,
          directory: str | Path = pretrained.DIRECTORY, record: bool = True) -> list[dict]:
    """Train (or resume) every seed's pre-training, then every fine-tune, ``grid.workers`` at a time,
    and record each fine-tune's weights in ``directory``; the fine-tunes' results rows, seed by seed."""
    root = Path(checkpoint_dir)
    train_many([(grid.pretrain(seed), root / f"seed{seed}" / "pretrain") for seed in grid.seeds],
               workers=grid.workers)
    configs = [config for seed in grid.seeds for _, config in grid.variants(seed, root)]
    rows = train_many([(config, folder(config, root)) for config in configs], workers=grid.workers)
    if record:
        for config, row in zip(configs, rows):
            weights = checkpoint.read(folder(config, root) / CHECKPOINT)["model"]
            start = checkpoint.read(root / f"seed{config.seed}" / "pretrain" / CHECKPOINT)["state"]
            pretrained.record(grid.entry(config), {"config": config.as_dict(), "state": weights},
                              command=COMMAND, seed=config.seed, curve=row["curve"], directory=directory,
                              extra={"train_seconds": row["train_seconds"], "threads": 1, "workers": grid.workers,
                                     "pretrain": grid.pretrain(config.seed).as_dict(),
                                     "pretrain_curve": start["curve"], "pretrain_seconds": start["seconds"]})
    return rows


def folder(config: SpatialConfig, root: str | Path = CHECKPOINT_DIR) -> Path:
    """Where a fine-tune of the recipe checkpoints: ``root/seed<s>/<method>-tau<tau>``."""
    return Path(root) / f"seed{config.seed}" / f"{config.method}-tau{config.tau:g}"


def load_model(config: SpatialConfig, directory: str | Path = pretrained.DIRECTORY,
               grid: Longer = LONGER) -> tuple[spatial.AdaptiveResNet, dict]:
    """The shipped fine-tune of ``config`` (its hash checked) in evaluation mode, and its manifest entry.

    Raises:
        ValueError: nothing is shipped for ``config``, or the shipped run differs from it in a
            field other than ``init_from`` (a path of the machine that trained it).
    """
    payload, entry = pretrained.load(grid.entry(config), directory)
    shipped = {**payload["config"], "init_from": None}
    differences = [f"{key}: {value!r} != {shipped[key]!r}" for key, value in
                   dataclasses.asdict(dataclasses.replace(config, init_from=None)).items() if shipped[key] != value]
    if differences:
        raise ValueError(f"the shipped model {grid.entry(config)} was trained with other settings: "
                         f"{'; '.join(differences)} (ours != shipped)")
    model = build(cli.config_from(SpatialConfig, shipped))
    model.load_state_dict(payload["state"])
    return model.eval(), entry


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptive.spatial.pretrain",
                                     description="Train chapter 6's longer fine-tunes at every seed and record "
                                                 "them in the pretrained folder.")
    parser.add_argument("--checkpoint-dir", default=CHECKPOINT_DIR,
                        help=f"where the runs checkpoint and resume from (default {CHECKPOINT_DIR})")
    pretrained.add_directory_argument(parser)
    args = parser.parse_args(argv)
    for row in train(LONGER, args.checkpoint_dir, args.directory):
        print(f"{LONGER.entry(cli.config_from(SpatialConfig, {**row['config'], 'init_from': None}))}: accuracy "
              f"{row['accuracy']:.4f} at {row['flops_ratio']:.3f} of the FLOPs ({row['train_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
