"""Sparse evaluation: a residual unit computed only where the positions are still active.

Eq. 27 of the PACT paper (and the SACT slides' "perforated convolutional layer") applies a
unit as ``u + f(u) * mask``. During evaluation the masked-out positions need not be computed
at all. Computing single positions saves nothing on a CPU, though: gathering the 3x3 window
of every position and multiplying the windows by the weights costs about three times the
dense convolution per position. So ``block_residual`` works as SBNet does (Ren et al.,
"SBNet: Sparse Blocks Network for Fast Inference", CVPR 2018): it tiles the map into blocks,
gathers the blocks it needs together with the halo their convolutions read, runs the ordinary
dense convolution kernels on the stack of tiles and scatters the result back. Unlike SBNet's
single gather per unit, it gathers once per convolution, so that no halo is computed twice:
the first convolution of a 3x3-3x3 unit runs on the blocks within one pixel of an active
position, the second on the blocks that hold one.

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
# Block side. Smaller blocks follow the active region more closely: at 30 % active positions in
# blobs on 56x56 maps, 0.40 of the blocks of 4 hold one and 0.54 of the blocks of 8 (0.35 and 0.42
# on 112x112). They also read more halo per output (a 3x3 convolution reads (b + 2)^2 pixels for
# b^2 outputs), which costs copying, not convolving. At 30 % active blocks of 4 took 0.79 of the
# dense unit's time on 56x56 maps with 64 channels and 0.66 on 112x112 maps, blocks of 8 0.97 and
# 0.69 (channels-first maps); blocks of 8 were faster only where every block is computed.
BLOCK = 4
# Above this share of their blocks holding an active position the dense unit is faster: the block
# path's time over the dense unit's (blocks of 4, channels-last maps) crossed 1 between 0.61 and
# 0.79 of the blocks on 56x56 maps with 64 channels (0.93 and 1.17), between 0.56 and 0.75 on
# 112x112 maps with 64 (0.90 and 1.19), and at 0.75 with 128 (0.99).
BREAK_EVEN = 0.6
# Maps with a shorter side below this always run the dense unit (a break-even of 0): on CIFAR's
# 32x32, 16x16 and 8x8 maps (batch 128) the block path was faster only once, 0.93 of the dense
# time (32x32 with 16 channels at 10 % active, 0.21 of the blocks, rounds spread 0.13), and 1.0
# to 3.1 times it elsewhere.
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
    may reach past the map), and f runs one (batch norm, convolution) pair at a time, each
    on the blocks whose outputs the later layers read: a convolution of padding p reads p
    pixels around every output, so layer k computes the blocks that hold a position within
    ``reach`` (the sum of the later layers' paddings) of an active one, and the last layer
    the blocks with an active position. Each layer gathers its blocks from the previous
    layer's map together with their halo of p pixels, runs the ordinary dense convolution
    on the stack of tiles, without padding, and writes the ``block`` x ``block`` results
    into the next layer's map. Every block is thus computed once per layer, with no halo
    recomputed; the halo is only read.

    Batch norms use their running statistics: the first is applied to the whole map, the
    others are folded into the convolution before them (``_folded_layers``). The maps
    between layers are channels-last (each pixel's channels adjacent), so that a tile row is
    one contiguous run of memory and gathering or writing a tile copies a few long runs; they
    are zero outside the image, which is what the dense convolution's padding reads. The
    result equals the dense ``u + f(u) * mask`` to float rounding and has the memory format
    of ``u``. A channels-last ``u`` is the fast case: a channels-first one is copied into
    channels-last and back, which took about a tenth of the dense unit's time on 56x56 maps.

    FLOPs are still counted in the SACT convention (``flops.unit_flops``, the positions);
    the blocks compute more than that: every position of a computed block, and for the
    earlier layers the blocks around the active ones.

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
    rows, cols = math.ceil(height / block), math.ceil(width / block)
    paddings = [conv.padding[0] for _, conv in layers]

    x = _padded_channels_last(u, paddings[0], rows * block, cols * block, layers[0][0])  # (B, H'+2p, W'+2p, C)
    for k, (weight, bias) in enumerate(_folded_layers(layers)):
        pad, reach = paddings[k], sum(paddings[k + 1:])
        needed = mask if reach == 0 else F.max_pool2d(mask[:, None], 2 * reach + 1, 1, reach)[:, 0]
        n, i, j = active_blocks(needed, block).nonzero().T.contiguous()     # (N,) image, block row, block column
        tiles = _tile_rows(x, block + 2 * pad, block, n, i * block, j)      # (N, s, s C) with s = block + 2 pad
        tiles = tiles.view(len(n), block + 2 * pad, block + 2 * pad, x.shape[-1]).permute(0, 3, 1, 2)  # (N, C, s, s)
        y = F.conv2d(tiles, weight, bias).permute(0, 2, 3, 1)                # (N, b, b, C_out) channels-last
        if k == len(layers) - 1:
            break
        pad = paddings[k + 1]
        x = y.new_zeros(len(u), rows * block + 2 * pad, cols * block + 2 * pad, y.shape[-1])
        _tile_rows(x, block, block, n, i * block + pad, j, skip=pad, write=y.relu_().flatten(2))  # relu(bn(.))
        x[:, pad + height:], x[:, :, pad + width:] = 0, 0                  # blocks past the image: zeros

    # u + f(u) * mask on the computed blocks, in a channels-last copy of u
    out = _padded_channels_last(u, 0, rows * block, cols * block)            # (B, H', W', C)
    block_mask = _tile_rows(F.pad(mask, (0, cols * block - width, 0, rows * block - height))[..., None],
                            block, block, n, i * block, j)                   # (N, b, b)
    blocks = _tile_rows(out, block, block, n, i * block, j)                  # (N, b, b C) copy
    _tile_rows(out, block, block, n, i * block, j, write=blocks.add_((y * block_mask[..., None]).flatten(2)))
    out = out[:, :height, :width].permute(0, 3, 1, 2)                        # (B, C, H, W) view
    if u.is_contiguous(memory_format=torch.channels_last):
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()


def _padded_channels_last(x: torch.Tensor, pad: int, height: int, width: int,
                          bn: nn.BatchNorm2d | None = None) -> torch.Tensor:
    """(B, C, H, W) -> a new (B, height + 2 pad, width + 2 pad, C) contiguous tensor: x, or
    relu(bn(x)) with ``bn``, at [pad, pad], zeros around it."""
    batch, channels, h, w = x.shape
    out = x.new_empty(batch, height + 2 * pad, width + 2 * pad, channels)
    if pad or (h, w) != (height, width):
        out.zero_()
    inside = out[:, pad:pad + h, pad:pad + w]                                # (B, H, W, C) view
    if bn is None:
        inside.copy_(x.permute(0, 2, 3, 1))
    else:
        scale, shift = _fold_bn(bn)                                          # (C,) each
        torch.addcmul(shift, x.permute(0, 2, 3, 1), scale, out=inside).relu_()
    return out


def _tile_rows(x: torch.Tensor, side: int, step: int, n: torch.Tensor, top: torch.Tensor, j: torch.Tensor,
               skip: int = 0, write: torch.Tensor | None = None) -> torch.Tensor:
    """The ``side`` x ``side`` tiles of the channels-last map x (B, H, W, C) whose corners are at
    row ``top`` and column ``skip + j * step`` of image ``n`` (each (N,)), as (N, side, side C).

    A tile row is a contiguous run of side * C numbers, so indexing x as rows of such runs copies
    N * side runs. With ``write``, stores it in those tiles instead (the tiles must not overlap)."""
    batch, height, width, channels = x.shape
    runs = x.view(batch * height, width * channels)[:, skip * channels:]    # (B H, (W - skip) C) view
    runs = runs.unfold(1, side * channels, step * channels)                 # (B H, tiles per row, side C) view
    rows = (n * height + top)[:, None] + torch.arange(side, device=x.device)   # (N, side)
    if write is None:
        return runs[rows, j[:, None]]
    runs[rows, j[:, None]] = write
    return write


def _folded_layers(layers) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The convolutions of ``f`` with each following batch norm folded in: bn_{k+1}(conv_k(x)) =
    conv_k'(x), with weight scaled per output channel and a bias; the last convolution as it is."""
    folded = []
    for k, (_, conv) in enumerate(layers):
        weight, bias = conv.weight, conv.bias
        if k + 1 < len(layers):
            scale, shift = _fold_bn(layers[k + 1][0])                        # (C_out,) each
            weight = weight * scale[:, None, None, None]
            bias = shift if bias is None else bias * scale + shift
        folded.append((weight, bias))
    return folded


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
