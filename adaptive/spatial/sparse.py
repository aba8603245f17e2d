"""Sparse evaluation: a residual unit computed only where the positions are still active.

Eq. 27 of the PACT paper (and the SACT slides' "perforated convolutional layer") applies a
unit as ``u + f(u) * mask``. During evaluation the masked-out positions need not be computed
at all. Computing single positions saves nothing on a CPU, though: gathering the 3x3 window
of every position and multiplying the windows by the weights costs about three times the
dense convolution per position. So ``block_residual`` does what SBNet does (Ren et al.,
"SBNet: Sparse Blocks Network for Fast Inference", CVPR 2018): it tiles the map into blocks,
gathers the blocks that hold an active position together with the halo their convolutions
read, runs the ordinary dense convolution kernels on the stack of tiles and scatters the
result back.

``apply_unit`` picks the cheapest exact way (``uses_blocks``): ``block_residual``, or the
dense unit on the images with an active position where every position of them is active
(whole images, or all), where more than ``BREAK_EVEN`` of their blocks would be computed, and
on maps smaller than ``MIN_SIDE``, where the blocks never paid.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import _checks
from . import flops

# The constants below were measured with ``python -m adaptive.spatial.benchmark --sparsity-sweep``
# on a 2-core AMD EPYC (torch 2.13 on its 2 threads, float32, blob masks, one 3x3-3x3 unit, glibc
# told to keep freed memory: see that benchmark's docstring).
#
# Block side. Larger blocks re-compute less halo (the first 3x3 convolution computes (b + 2)^2
# positions for b^2 outputs), smaller ones follow the active region more closely. At 30 % active
# on 56x56 maps with 64 channels, blocks of 4 took 0.95 of the dense unit's time and blocks of 8
# 0.91-0.95 (two runs); on 112x112 maps with 64 channels blocks of 16 took 0.85 and blocks of 8
# 0.76-0.77: 8 was as fast or faster at every active fraction up to 30 % on both.
BLOCK = 8
# Above this share of their blocks holding an active position the dense unit is faster: the block
# path's time over the dense unit's crossed 1 at 0.56 of the blocks on 56x56 maps (0.95 at 0.53,
# 1.24 at 0.73), at 0.56 on 112x112 maps with 64 channels (0.77 at 0.42, 1.12 at 0.63) and at
# 0.63 with 128 (0.66 at 0.42, 0.99 at 0.62).
BREAK_EVEN = 0.55
# Maps with a shorter side below this always run the dense unit (a break-even of 0): on CIFAR's
# 32x32, 16x16 and 8x8 maps (batch 128) the block path was never faster, 0.98 of the dense time
# at best (32x32 with 16 channels at 10 % active, 0.39 of the blocks) and 1.4 to 2.3 elsewhere.
MIN_SIDE = 48


def default_break_even(height: int, width: int) -> float:
    """The measured break-even for a map of ``height`` x ``width``: ``BREAK_EVEN``, 0 below ``MIN_SIDE``."""
    return BREAK_EVEN if min(height, width) >= MIN_SIDE else 0.0


def active_blocks(mask: torch.Tensor, block: int) -> torch.Tensor:
    """(B, H, W) mask -> (B, ceil(H / block), ceil(W / block)) bool: the blocks with a position > 0."""
    return F.max_pool2d(mask[:, None].float(), block, ceil_mode=True)[:, 0] > 0


def block_residual(unit: nn.Module, u: torch.Tensor, mask: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """``u + f(u) * mask``, computing f on the blocks that hold an active position (evaluation mode).

    The map is tiled into ``block`` x ``block`` blocks (the last row and column of blocks
    may reach past the map). Every block with an active position is gathered with a halo of
    ``halo`` = the sum of the convolutions' paddings (2 for the CIFAR unit's two 3x3
    convolutions), and each (batch norm, convolution) pair of f runs on the stack of tiles
    as BN-ReLU, then the dense convolution without padding, so the tiles shrink by the
    convolution's padding on every side until the centre ``block`` x ``block`` is left.
    The dense convolution pads its input with zeros *after* BN-ReLU, so the tile positions
    outside the map are set to zero after BN-ReLU, every layer: the result equals the dense
    ``u + f(u) * mask`` to float rounding. Batch norms use their running statistics. The
    tiles are channels-last (each pixel's channels adjacent), which makes gathering and
    scattering them cheap; the output has the memory format of ``u``.

    FLOPs are still counted in the SACT convention (``flops.unit_flops``, the positions);
    the blocks compute more than that: the whole block and its halo.

    Args:
        unit: a residual unit of ``adaptive.spatial.resnet`` (``residual_layers()``) whose
            convolutions are stride 1, "same"-padded, square and ungrouped: every unit after
            the first of a block.
        u: (B, C, H, W) the unit's input.
        mask: (B, H, W) floating, >= 0; the active positions are where it is > 0 (0/1 for
            ACT and SACT, PSACT's relaxed ``r [r > delta]``).
        block: the block side.
    Returns:
        (B, C, H, W).
    """
    layers = unit.residual_layers()
    if any(not flops.preserves_size(conv) or conv.groups != 1 or conv.kernel_size[0] != conv.kernel_size[1]
           for _, conv in layers):
        raise ValueError("block_residual needs stride-1, 'same'-padded, square, ungrouped convolutions "
                         "(units 2..L of a block); run the first unit of a block densely")
    _checks.positive_int("block", block)
    height, width = u.shape[2:]
    halo = sum(conv.padding[0] for _, conv in layers)
    tile = block + 2 * halo
    rows, cols = math.ceil(height / block), math.ceil(width / block)
    n, i, j = active_blocks(mask, block).nonzero().unbind(1)          # (N,) image, block row, block column

    # gather: the map channels-last, zero-padded by the halo (and up to whole blocks), cut into tiles
    padded = F.pad(u.permute(0, 2, 3, 1),
                   (0, 0, halo, halo + cols * block - width, halo, halo + rows * block - height))
    windows = padded.unfold(1, tile, block).unfold(2, tile, block)     # (B, rows, cols, C, tile, tile) view
    x = windows.permute(0, 1, 2, 4, 5, 3)[n, i, j].permute(0, 3, 1, 2)  # (N, C, tile, tile) channels-last copy
    # which tile positions lie on the map: the dense convolutions see zeros everywhere else
    offsets = torch.arange(tile, device=u.device) - halo                # (tile,)
    on_rows = (i[:, None] * block + offsets >= 0) & (i[:, None] * block + offsets < height)   # (N, tile)
    on_cols = (j[:, None] * block + offsets >= 0) & (j[:, None] * block + offsets < width)    # (N, tile)
    on_map = (on_rows[:, None, :, None] & on_cols[:, None, None, :]).to(u.dtype)              # (N, 1, tile, tile)

    # f on the tiles: BN-ReLU, zeros off the map, the dense kernel without padding
    for bn, conv in layers:
        crop = (tile - x.shape[-1]) // 2                               # what earlier convolutions took off
        scale, shift = _fold_bn(bn)                                    # (C_in,) each
        x = x.mul_(scale[:, None, None]).add_(shift[:, None, None]).relu_()   # in place: x is our own copy
        x = x.mul_(on_map[:, :, crop:tile - crop, crop:tile - crop])
        x = F.conv2d(x, conv.weight, conv.bias)                        # (N, C_out, s - 2 p, s - 2 p) from side s

    # scatter: u + f(u) * mask on each computed block, in place in the padded copy of u
    interior = padded[:, halo:halo + rows * block, halo:halo + cols * block]          # (B, rows b, cols b, C) view
    blocks = _as_blocks(interior, block)                                              # (B, rows, cols, b, b, C) view
    block_mask = _as_blocks(F.pad(mask, (0, cols * block - width, 0, rows * block - height)), block)[n, i, j]
    blocks[n, i, j] += x.permute(0, 2, 3, 1) * block_mask[..., None]                # (N, b, b, C)
    return torch.empty_like(u).copy_(padded[:, halo:halo + height, halo:halo + width].permute(0, 3, 1, 2))


def _as_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """(B, rows * block, cols * block, ...) -> the view (B, rows, cols, block, block, ...)."""
    return x.unflatten(1, (x.shape[1] // block, block)).unflatten(3, (x.shape[2] // block, block)).transpose(2, 3)


def _fold_bn(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation-mode batch norm as ``x * scale + shift`` per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def uses_blocks(mask: torch.Tensor, block: int, break_even: float) -> bool:
    """Whether sparse evaluation runs ``block_residual`` for this (B, H, W) mask.

    The dense unit on the images with an active position is as fast or faster where no image
    has one left, where every position of those that have one is active (whole images, or all)
    and where more than ``break_even`` of their blocks hold one (``break_even`` 0: everywhere).
    """
    if break_even == 0:
        return False                                                   # the dense unit, whatever the mask
    blocks = active_blocks(mask, block)                                # (B, rows, cols)
    images = int(blocks.flatten(1).any(dim=1).sum())                   # images with work left
    whole_images = int((mask > 0).sum()) == images * mask[0].numel()
    return not whole_images and int(blocks.sum()) <= break_even * images * blocks[0].numel()


def apply_unit(unit: nn.Module, u: torch.Tensor, mask: torch.Tensor, sparse: bool,
               block: int = BLOCK, break_even: float | None = None) -> torch.Tensor:
    """Eq. 27, ``u + f(u) * mask`` with mask (B, H, W); sparse: compute only where it pays.

    Sparse evaluation runs ``block_residual`` (blocks of ``block``) where ``uses_blocks`` says
    so, and the dense unit on the images with an active position otherwise. ``break_even``:
    ``default_break_even(H, W)`` if None; 1 takes the block path wherever it can, 0 never.
    """
    if not sparse:
        return u + unit.residual(u) * mask[:, None]
    _checks.positive_int("block", block)
    break_even = default_break_even(*u.shape[2:]) if break_even is None else break_even
    if not 0 <= break_even <= 1:
        raise ValueError(f"break_even must be a share of blocks in [0, 1], got {break_even!r}")
    if uses_blocks(mask, block, break_even):
        return block_residual(unit, u, mask, block)
    images = (mask > 0).flatten(1).any(dim=1)                          # (B,)
    if bool(images.all()):
        return u + unit.residual(u) * mask[:, None]
    out = u.clone()                                                    # the dense unit on those images only
    out[images] = u[images] + unit.residual(u[images]) * mask[images][:, None]
    return out
