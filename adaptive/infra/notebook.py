"""What the chapters' notebooks share: measured numbers glued into the text, figures saved on request.

A chapter states no number it did not measure: ``Checks.record`` keeps each measured number
for the results file and glues it (myst-nb's ``glue``) so the text can show it. ``finish``
lays out a figure, saves it as a PNG when the notebook's ``fig_dir`` parameter asks for it,
and shows it. These need the book's packages (``pip install adaptive[book]``).

Every chapter's set-up cell, the code cell after its parameters, checks what it was given
before any compute: ``mode_default`` settles the parameters whose default depends on quick
mode, ``check_parameters`` checks every parameter's type and range, ``check_device`` and
``check_output`` the device and the output paths, and ``warn_if_long`` warns with an estimate
when the work asked for is far above the default's.
"""
from __future__ import annotations

import ast
import math
import numbers
import os
import typing
import warnings

import numpy as np
import torch

from .. import _checks


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
    """A notebook's ``device`` parameter as a ``torch.device``, refused before any compute if unusable
    (``adaptive._checks.device``: ``cuda`` where torch sees no GPU, ``cuda:3`` on a machine with
    fewer GPUs, ``cpu:7``, a non-string)."""
    return _checks.device(value)


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


# ----------------------------------------------------------------------------------------------
# The parameters cell, checked before any compute

def mode_default(quick: bool, value, full, quick_value):
    """A parameter's value in this mode: the one passed (``-p name value``) if any, else the default.

    A parameter whose default depends on quick mode is None in the parameters cell (its comment
    gives both defaults), and the set-up cell settles it with ``value = mode_default(quick,
    value, full, quick_value)`` before ``check_parameters``, so quick mode never replaces a
    value the user passed.
    """
    if value is not None:
        return value
    return quick_value if quick else full


def _type_name(annotation) -> str:
    """``int``, ``list of float``: an annotation as the error messages say it."""
    if typing.get_origin(annotation) is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    return annotation.__name__


def _has_type(value, annotation) -> bool:
    """Whether ``value`` fits ``annotation`` (bool, int, float, str or list[X])."""
    if typing.get_origin(annotation) is list:
        item = typing.get_args(annotation)[0]
        return isinstance(value, (list, tuple)) and all(_has_type(entry, item) for entry in value)
    if annotation is bool:
        return isinstance(value, (bool, np.bool_))
    if annotation is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if annotation is float:
        return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
                and math.isfinite(value))
    return isinstance(value, annotation)


def _parsed_list(text: str):
    """``"[0.1, 0.2]"`` (what papermill's ``-p`` passes for a list) as a list; other text unchanged."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return list(value) if isinstance(value, (list, tuple)) else text


def _how_to_pass(name: str, annotation) -> str:
    """How to set parameter ``name`` with papermill."""
    if typing.get_origin(annotation) is list:
        return f"pass a list, e.g. -p {name} '[1, 2]' or -y '{name}: [1, 2]'"
    return f"pass one with -p {name} VALUE"


def _refused(name: str, value, allowed: str, how: str) -> ValueError:
    return ValueError(f"parameter {name} = {value!r}: must be {allowed}; {how}")


def at_least(minimum):
    """A rule for ``check_parameters``: a number (or every number of a list) >= ``minimum``."""
    return lambda value: None if value >= minimum else f">= {minimum}"


def greater_than(minimum):
    """A rule for ``check_parameters``: a number (or every number of a list) > ``minimum``."""
    return lambda value: None if value > minimum else f"> {minimum}"


def below(maximum):
    """A rule for ``check_parameters``: a number (or every number of a list) < ``maximum``."""
    return lambda value: None if value < maximum else f"< {maximum}"


def at_most(maximum):
    """A rule for ``check_parameters``: a number (or every number of a list) <= ``maximum``."""
    return lambda value: None if value <= maximum else f"<= {maximum}"


def one_of(*allowed):
    """A rule for ``check_parameters``: a value (or every value of a list) among ``allowed``."""
    return lambda value: None if value in allowed else "one of " + ", ".join(map(repr, allowed))


def check_parameters(namespace: dict, optional: tuple[str, ...] = (), **rules) -> None:
    """Refuse, before any compute, a parameter of the wrong type or outside what the chapter allows.

    Every parameter the notebook's parameters cell annotates (``namespace["__annotations__"]``:
    IPython records each annotated assignment there) must fit its annotation: bool, int, float
    (an int is a float, a bool is neither, NaN and infinity are refused), str, or a non-empty
    list[X]. A list passed as text (``-p taus "[0.1, 0.2]"``) is read as a Python literal and stored back.
    None is refused except for the names in ``optional``. ``rules`` then maps a parameter's name
    to a rule or a tuple of rules (``at_least(1)``, ``one_of("mini", "clevr")``...), applied to
    each element of a list. The error names the parameter, the value it got, what is allowed and
    how to pass a value.
    """
    annotations = namespace.get("__annotations__", {})
    for name, annotation in annotations.items():
        value = namespace[name]
        if isinstance(value, str) and typing.get_origin(annotation) is list:
            value = namespace[name] = _parsed_list(value)
        if value is None and name in optional:
            continue
        if not _has_type(value, annotation):
            raise ValueError(f"parameter {name} = {value!r} ({type(value).__name__}): must be "
                             f"{_type_name(annotation)}{' or None' if name in optional else ''}; "
                             f"{_how_to_pass(name, annotation)}")
        if isinstance(value, (list, tuple)) and not value:
            raise _refused(name, value, "a list of at least one value", _how_to_pass(name, annotation))
    for name, checks in rules.items():
        if name not in annotations:
            raise KeyError(f"check_parameters has a rule for {name!r}, which is no parameter of this notebook")
        value = namespace[name]
        if value is None:
            continue
        for check in checks if isinstance(checks, tuple) else (checks,):
            for item in value if isinstance(value, (list, tuple)) else [value]:
                allowed = check(item)
                if allowed is not None:
                    what = allowed if item is value else f"a list of values each {allowed} (it holds {item!r})"
                    raise _refused(name, value, what, _how_to_pass(name, annotations[name]))


def warn_if_long(requested: dict[str, float], default: dict[str, float], factor: float = 10.0) -> float:
    """Warn, before the compute, when the work asked for is more than ``factor`` times the default's.

    ``requested`` and ``default`` map each quantity the work is proportional to (updates, runs,
    steps, images...) to its value in this run and in the chapter's default run. The warning
    gives the estimate: this run's time is about the product of the ratios times the default
    run's (the course guide's table of run times gives that, measured). Returns the ratio.
    """
    ratio = math.prod(requested[name] / default[name] for name in default)
    if ratio > factor:
        larger = ", ".join(f"{name} {requested[name]:g} (default {default[name]:g})" for name in default
                           if requested[name] > default[name])
        warnings.warn(f"this run asks for about {ratio:,.0f} times the work of the chapter's default run "
                      f"({larger}), so expect it to take about {ratio:,.0f} times as long as the default "
                      f"(see the course guide's table of run times); interrupt the kernel and pass smaller "
                      f"values, or quick=True, for a short run", stacklevel=2)
    return ratio
