"""Input validation shared by every mechanism.

Each check raises ``ValueError`` naming the offending argument and what is
allowed, so a user never meets a silent wrong answer or a stack trace from
deep inside torch.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import numbers

import torch

# Whether the checks that read every value of a tensor run (shape and type checks always do).
_VALUES_CHECKED = contextvars.ContextVar("values_checked", default=True)


@contextlib.contextmanager
def values_trusted():
    """Within the block, ``probabilities`` and ``distributions`` trust their tensors.

    For loops that checked their first step at the boundary and then call the mechanisms'
    public functions step after step on values of the same origin (``adaptive.loop``'s
    evaluation): those value checks cost a pass over the data and a device sync each.
    """
    token = _VALUES_CHECKED.set(False)
    try:
        yield
    finally:
        _VALUES_CHECKED.reset(token)


def as_steps(name: str, values: torch.Tensor, *, min_dims: int = 2, dims: int | None = None) -> torch.Tensor:
    """Check that ``values`` is a floating tensor shaped ``(B, L, ...)`` with L >= 1.

    ``dims``: the exact number of dimensions, where a function takes no more (``(B, L)`` is 2),
    so that an extra trailing dimension is refused instead of broadcast.
    """
    if not isinstance(values, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (B, L), got {type(values).__name__}")
    if dims is not None and values.dim() != dims:
        shape = "(B, L)" if dims == 2 else "(B, L, C)" if dims == 3 else f"{dims} dimensions"
        raise ValueError(f"{name} must have shape {shape}, got {tuple(values.shape)}")
    if values.dim() < min_dims:
        raise ValueError(
            f"{name} must have at least {min_dims} dimensions (batch, steps, ...), "
            f"got shape {tuple(values.shape)}")
    if values.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one step (L >= 1), got shape {tuple(values.shape)}")
    if not values.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {values.dtype}")
    return values


def probabilities(name: str, values: torch.Tensor) -> torch.Tensor:
    """Check that every entry of ``values`` lies in [0, 1] and none is NaN."""
    if not isinstance(values, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    if not values.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {values.dtype}")
    if not _VALUES_CHECKED.get():
        return values
    with torch.no_grad():
        if bool(((values >= 0) & (values <= 1)).all()):      # one pass; False for NaN too
            return values
        if torch.isnan(values).any():
            raise ValueError(f"{name} contains NaN; halting values must lie in [0, 1]")
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{values.min().item():.4g}, "
            f"{values.max().item():.4g}]; apply a sigmoid to the halting logits first")


def real(value) -> float | None:
    """``value`` as a Python float if it is a real number (Python, NumPy or a 0-d tensor), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or value.is_complex() or value.dtype == torch.bool:
            return None
        return float(value.item())
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def open_unit(name: str, value: float) -> float:
    """Check a scalar strictly inside (0, 1); return it as a float."""
    number = real(value)
    if number is None or math.isnan(number) or not 0 < number < 1:
        raise ValueError(f"{name} must be a number in the open interval (0, 1), got {value!r}")
    return number


def positive(name: str, value: float) -> float:
    """Check a scalar strictly greater than zero; return it as a float."""
    number = real(value)
    if number is None or math.isnan(number) or number <= 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return number


def non_negative(name: str, value: float) -> float:
    """Check a scalar greater than or equal to zero; return it as a float."""
    number = real(value)
    if number is None or math.isnan(number) or number < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return number


def distributions(name: str, values: torch.Tensor, atol: float = 1e-3) -> torch.Tensor:
    """Check that every row of ``values`` (B, L) lies in [0, 1] and sums to 1 within ``atol``."""
    probabilities(name, values)
    if not _VALUES_CHECKED.get():
        return values
    with torch.no_grad():
        sums = values.sum(dim=1)
        if not bool(((sums - 1).abs() <= atol).all()):
            worst = sums[(sums - 1).abs().argmax()].item()
            raise ValueError(f"every row of {name} must be a distribution over the steps (sum to 1); "
                             f"a row sums to {worst:.4g}")
    return values


def positive_int(name: str, value: int) -> int:
    """Check an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def generator(value, device: torch.device | str | None = None) -> torch.Generator | None:
    """Check an optional ``generator`` argument: None, or a ``torch.Generator`` on ``device``'s type."""
    if value is None:
        return None
    if not isinstance(value, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(value).__name__} {value!r}; "
                         f"make one with torch.Generator().manual_seed(seed)")
    if device is not None and torch.device(device).type != value.device.type:
        raise ValueError(f"generator is on {value.device.type} but the tensors are on {torch.device(device).type}; "
                         f"make it with torch.Generator(device={torch.device(device).type!r})")
    return value


def choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """Check that ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def same_leading_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor, dims: int) -> None:
    """Check that the first ``dims`` dimensions of ``a`` and ``b`` agree."""
    if tuple(a.shape[:dims]) != tuple(b.shape[:dims]):
        raise ValueError(
            f"{name_a} and {name_b} must agree in their first {dims} dimension(s): "
            f"got {tuple(a.shape)} and {tuple(b.shape)}")


def device(value, name: str = "device") -> torch.device:
    """``value`` as a ``torch.device``, refused before any compute if this machine cannot use it.

    The error names the value, what is allowed and what to do: ``cuda`` where torch sees no GPU,
    ``cuda:3`` on a machine with fewer GPUs, or ``cpu:7`` (the CPU takes no index).
    """
    if isinstance(value, torch.device):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string such as 'cpu', 'cuda' or 'cuda:1', got {value!r}")
    try:
        chosen = torch.device(value)
    except RuntimeError:
        raise ValueError(f"{name} must name a torch device ('cpu', 'cuda', 'cuda:1'), got {value!r}") from None
    if chosen.type == "cpu":
        if chosen.index not in (None, 0):
            raise ValueError(f"{name} {value!r}: the CPU takes no index; use 'cpu'")
    elif chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} is {value!r}, but torch sees no CUDA GPU (torch {torch.__version__}); "
                             f"use 'cpu', or install a CUDA build of torch on a GPU machine")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ValueError(f"{name} is {value!r}, but torch sees {torch.cuda.device_count()} GPU(s): "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    else:
        raise ValueError(f"{name} must be 'cpu' or 'cuda' (optionally 'cuda:N'), got {value!r}")
    return chosen
