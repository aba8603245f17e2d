"""Sparse evaluation: a residual unit computed only at the positions still active.

Eq. 27 of the PACT paper (and the SACT slides' "perforated convolutional layer") applies a
unit as ``u + f(u) * mask``. During evaluation the masked-out positions need not be computed
at all. ``apply_unit`` picks the cheapest exact way: the dense unit when every position is
active, the dense unit on the remaining images when whole images are active, and
``perforated_residual`` otherwise, which gathers the active positions (and the neighbours
their 3x3 convolutions read) and computes only those.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import flops


def _fold_bn(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation-mode batch norm as ``x * scale + shift`` per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _conv_at(conv: nn.Conv2d, padded: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """A stride-1 "same" convolution at the positions ``where`` only.

    Args:
        padded: (B, H + k - 1, W + k - 1, C_in) channels-last input, zero-padded.
        where: (P, 3) int64 rows of (image, row, column) output positions.
    Returns:
        (P, C_out): ``P * C_out * k * k * C_in`` multiply-adds, nothing elsewhere.
    """
    k_h, k_w = conv.kernel_size
    batch, padded_h, padded_w, channels = padded.shape
    # the window of output (i, j) starts at padded (i, j); one gather of its k*k pixels
    start = (where[:, 0] * padded_h + where[:, 1]) * padded_w + where[:, 2]             # (P,)
    offsets = (torch.arange(k_h, device=where.device)[:, None] * padded_w
               + torch.arange(k_w, device=where.device)[None, :]).flatten()             # (k k,)
    pixels = padded.reshape(-1, channels).index_select(0, (start[:, None] + offsets).flatten())
    weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1)           # (C_out, k k C_in)
    return pixels.view(len(where), -1) @ weight.t()                                    # (P, C_out)


def perforated_residual(unit: nn.Module, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``u + f(u) * mask``, computing f only where it is needed (evaluation mode).

    The SACT slides' "perforated convolutional layer", made exact: the last convolution of
    f runs at the active positions; each earlier one at the positions its successor reads
    (``flops.read_positions``, the 3x3 dilation of the mask), so the result equals the dense
    ``u + f(u) * mask`` and costs ``flops.unit_flops(unit, mask > 0)``. Batch norms use their
    running statistics. Units whose convolutions are stride 1 with "same" padding (every
    unit after the first of a block) are supported.

    Args:
        unit: a residual unit of ``adaptive.spatial.resnet`` (``residual_layers()``).
        u: (B, C, H, W) the unit's input.
        mask: (B, H, W) floating, >= 0; the active positions are where it is > 0 (0/1 for
            ACT and SACT, PSACT's relaxed ``r [r > delta]``).
    Returns:
        (B, C, H, W).
    """
    layers = unit.residual_layers()
    if any(not flops.preserves_size(conv) or conv.groups != 1 or conv.dilation != (1, 1)
           for _, conv in layers):
        raise ValueError("perforated_residual needs stride-1, 'same'-padded, ungrouped convolutions "
                         "(units 2..L of a block); run the first unit of a block densely")
    size = tuple(u.shape[2:])
    active = mask > 0
    if not bool(active.any()):
        return u
    needed = [active]                                                  # outputs needed, last conv first
    for _, conv in reversed(layers[1:]):
        needed.insert(0, flops.read_positions(conv, needed[0], size))
    values = u.permute(0, 2, 3, 1)                                     # (B, H, W, C) view
    for (bn, conv), where_mask in zip(layers, needed):
        scale, shift = _fold_bn(bn)
        inputs = F.relu(values * scale + shift)                        # pre-activation
        pad_h, pad_w = conv.padding
        padded = F.pad(inputs, (0, 0, pad_w, pad_w, pad_h, pad_h))     # (B, H+2p, W+2p, C)
        where = where_mask.nonzero()                                   # (P, 3)
        computed = _conv_at(conv, padded, where)                       # (P, C_out)
        values = u.new_zeros(*u.shape[:1], *size, conv.out_channels)   # unread positions stay 0
        values[where[:, 0], where[:, 1], where[:, 2]] = computed
    out = u.permute(0, 2, 3, 1).clone()                                # (B, H, W, C)
    out[where[:, 0], where[:, 1], where[:, 2]] += computed * mask[where[:, 0], where[:, 1], where[:, 2], None]
    return out.permute(0, 3, 1, 2)


def apply_unit(unit: nn.Module, u: torch.Tensor, mask: torch.Tensor, sparse: bool) -> torch.Tensor:
    """Eq. 27, ``u + f(u) * mask`` with mask (B, H, W); sparse: compute only where mask > 0."""
    if not sparse:
        return u + unit.residual(u) * mask[:, None]
    active = mask > 0
    images = active.flatten(1).any(dim=1)                              # (B,)
    if bool(active.all()):
        return u + unit.residual(u) * mask[:, None]
    if bool(active[images].all()):                                     # whole images: run just those
        out = u.clone()
        out[images] = u[images] + unit.residual(u[images]) * mask[images][:, None]
        return out
    return perforated_residual(unit, u, mask)
