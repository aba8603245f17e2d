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


def check_device(value) -> torch.device:
    """A notebook's ``device`` parameter as a ``torch.device``, refused before any compute if unusable.

    The error names the value, what is allowed and what to do: ``cuda`` where torch sees no GPU,
    ``cuda:3`` on a machine with fewer GPUs, or ``cpu:7`` (the CPU takes no index).
    """
    if not isinstance(value, str):
        raise ValueError(f"device must be a string such as 'cpu', 'cuda' or 'cuda:1', got {value!r}")
    try:
        device = torch.device(value)
    except RuntimeError:
        raise ValueError(f"device must name a torch device ('cpu', 'cuda', 'cuda:1'), got {value!r}") from None
    if device.type == "cpu":
        if device.index not in (None, 0):
            raise ValueError(f"device {value!r}: the CPU takes no index; pass -p device cpu")
    elif device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device is {value!r}, but torch sees no CUDA GPU (torch {torch.__version__}); "
                             f"pass -p device cpu, or install a CUDA build of torch on a GPU machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device is {value!r}, but torch sees {torch.cuda.device_count()} GPU(s): "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    else:
        raise ValueError(f"device must be 'cpu' or 'cuda' (optionally 'cuda:N'), got {value!r}")
    return device


def check_output(path, name: str = "results_path", folder: bool = False):
    """Create an output file's folder (or the folder itself) and test-write it, before any compute.

    Returns the path as a ``pathlib.Path``; a path that cannot be written is refused with its name.
    """
    from pathlib import Path

    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{name} must be a path, got {path!r}")
    path = Path(path)
    target = path if folder else path.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"{name} = {str(path)!r} cannot be written ({error.strerror or error}); "
                         f"choose a path in a writable folder") from None
    return path
