"""What the chapters' notebooks share: measured numbers glued into the text, figures saved on request.

A chapter states no number it did not measure: ``Checks.record`` keeps each measured number
for the results file and glues it (myst-nb's ``glue``) so the text can show it. ``finish``
lays out a figure, saves it as a PNG when the notebook's ``fig_dir`` parameter asks for it,
and shows it. These need the book's packages (``pip install adaptive[book]``).
"""
from __future__ import annotations

import numbers
import os

import numpy as np
import torch


class Checks(dict):
    """Measured numbers by name, for the results file; ``record`` also glues each into the text."""

    def record(self, name: str, value) -> bool | int | float:
        """Keep ``value`` (a Python, NumPy or 0-d torch number) under ``name`` and glue it; return it."""
        from myst_nb import glue

        if isinstance(value, torch.Tensor):
            value = value.item()
        if isinstance(value, (bool, np.bool_)):
            value = bool(value)
        elif isinstance(value, numbers.Integral):
            value = int(value)
        else:
            value = float(value)
        self[name] = value
        glue(name, value, display=False)
        return value


def finish(fig, name: str, fig_dir: str = "") -> None:
    """Lay out ``fig``, save it as ``fig_dir/name.png`` when ``fig_dir`` is not empty, and show it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    if fig_dir:
        os.makedirs(fig_dir, exist_ok=True)
        fig.savefig(os.path.join(fig_dir, f"{name}.png"), dpi=110, bbox_inches="tight")
    plt.show()


def generator(seed: int, offset: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator seeded by ``seed + offset``, so each section of a chapter is reproducible alone."""
    return torch.Generator(device=device).manual_seed(seed + offset)
