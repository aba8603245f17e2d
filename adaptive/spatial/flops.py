"""FLOPs in the SACT convention, for plain networks and for units run at active positions only.

The convention of the SACT authors' code (Figurnov et al. 2017), also used by PSACT
(Figurnov, Sobolev & Vetrov 2018, sec. 6: "the number of floating point operations
required to evaluate the positions with non-zero values in the active positions mask, as
done in [SACT]"):

* a convolution costs ``2 x (counted output positions) x C_out x k_h x k_w x C_in / groups``
  per image: one multiply-add counts as 2 FLOPs;
* the final linear layer costs ``2 x in x out``;
* biases, batch norm, activations, pooling, the residual additions and option-A
  shortcuts cost nothing;
* halting branches count like any other convolution or linear layer; they are added by
  whoever adds halting (``spatial_halting_flops``, ``pooled_halting_flops``).

Every convolution is counted, the first one (the stem) included. For the CIFAR
ResNets of ``adaptive.spatial.resnet`` each 3x3 convolution at stride 1 costs
``2 * 9 * H W C^2 = 4,718,592`` in all three blocks (H W C^2 is the same at 32x32x16,
16x16x32 and 8x8x64); the two stride-2 ones cost half of that, the stem
``2 * 9 * 32 * 32 * 3 * 16 = 884,736`` and the classifier ``2 * 64 * 10 = 1,280``, so
for depth 6n + 2::

    FLOPs = 4,718,592 (6n - 1) + 884,736 + 1,280

ResNet-20 81,102,080 (8.11e7), ResNet-32 137,725,184 (1.377e8), ResNet-56 250,971,392
(2.51e8), ResNet-110 505,775,360 (5.058e8): the numbers the SACT code reports. Leaving out the
stem would give 8.02e7 and 5.049e8, which do not match, so the stem is counted; the
classifier is too small to show at 4 significant digits (the SACT code counts it).

``torch.utils.flop_counter.FlopCounterMode`` uses the same convention for the operations
it counts: convolutions as 2 x multiply-adds over every output element, ``addmm`` (the
linear layer) as 2 x the matrix product without the bias, and nothing for batch norm,
ReLU, pooling, padding or additions. For a plain network and a batch of B images it
therefore reports exactly ``B * plain_flops(model)``.

In SACT only the positions that are still active are computed (SACT slides, "perforated
conv. layer"; PSACT eq. 27). For a unit ``x + f(x)`` whose output is needed at the
active positions, the last convolution of f computes just those, but the convolution
before it must supply every input the last one reads: for a 3x3 convolution at stride
1, the 3x3 neighbourhood of each active position (the mask dilated by a 3x3 max-pool).
``unit_flops`` propagates the mask backwards through the unit's convolutions that way.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import _checks


def conv_flops(conv: nn.Conv2d, positions):
    """``2 * positions * C_out * k_h * k_w * C_in / groups``: a convolution at ``positions`` outputs.

    Args:
        conv: the convolution.
        positions: number of spatial output positions computed, an int or an integer tensor.
    Returns:
        FLOPs, of the same type as ``positions``.
    """
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"conv must be a torch.nn.Conv2d, got {type(conv).__name__}")
    kernel_h, kernel_w = conv.kernel_size
    per_position = 2 * conv.out_channels * kernel_h * kernel_w * (conv.in_channels // conv.groups)
    return per_position * positions


def linear_flops(linear: nn.Linear) -> int:
    """``2 * in * out``: one application of a linear layer (the bias is not counted)."""
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
    return 2 * linear.in_features * linear.out_features


def _input_size(input_size) -> tuple[int, int, int]:
    if (not isinstance(input_size, (tuple, list)) or len(input_size) != 3
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in input_size)):
        raise ValueError(f"input_size must be (channels, height, width), three integers >= 1, "
                         f"got {input_size!r}")
    return tuple(input_size)


def module_flops(model: nn.Module, input_size=(3, 32, 32)) -> dict[str, int]:
    """FLOPs per image of every convolution and linear layer of ``model``, by qualified name.

    Runs ``model`` once on a zero image of shape ``(1, *input_size)`` with forward hooks
    recording each layer's output size, in evaluation mode and without gradients (so the
    batch-norm running statistics are untouched; the training flags are restored). A
    layer applied several times is counted each time. Layers of other types cost 0.

    Args:
        model: any module built from ``nn.Conv2d`` and ``nn.Linear`` (plus free layers).
        input_size: (channels, height, width) of one image.
    Returns:
        dict from module name to FLOPs, in the order the layers first ran.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    input_size = _input_size(input_size)
    counts: dict[str, int] = {}

    def record(name):
        def hook(module, inputs, output):
            per_image = output.numel() // output.shape[0]          # C_out * H_out * W_out, or out
            if isinstance(module, nn.Conv2d):
                kernel_h, kernel_w = module.kernel_size
                flops = 2 * per_image * kernel_h * kernel_w * (module.in_channels // module.groups)
            else:
                flops = 2 * per_image * module.in_features
            counts[name] = counts.get(name, 0) + flops
        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in model.named_modules()
               if isinstance(module, (nn.Conv2d, nn.Linear))]
    modes = {module: module.training for module in model.modules()}
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else None
    dtype = reference.dtype if reference is not None else torch.float32
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_size), device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return counts


def plain_flops(model: nn.Module, input_size=(3, 32, 32)) -> int:
    """FLOPs per image of the plain (non-adaptive) network: every conv and linear layer once.

    ``plain_flops(cifar_resnet(32)) == 137_725_184`` (1.377e8, as the SACT code reports).

    Args:
        model: the network.
        input_size: (channels, height, width) of one image.
    """
    return sum(module_flops(model, input_size).values())


def flops_by_part(model: nn.Module, input_size=(3, 32, 32)) -> dict:
    """Plain FLOPs of a ``PreActResNet`` split into what an adaptive loop adds up.

    Returns:
        ``{"stem": int, "units": [[int per unit] per block], "head": int}``, summing to
        ``plain_flops(model, input_size)``. An SACT total is ``stem + head`` plus, per
        unit, ``unit_flops`` at its active positions plus the halting branch.
    """
    for part in ("stem", "blocks", "head"):
        if not hasattr(model, part):
            raise ValueError(f"model must expose stem, blocks and head (a PreActResNet), lacks {part!r}")
    counts = module_flops(model, input_size)

    def total(prefix):
        return sum(flops for name, flops in counts.items() if name.startswith(prefix))

    units = [[total(f"blocks.{k}.{l}.") for l in range(len(block))]
             for k, block in enumerate(model.blocks)]
    return {"stem": total("stem."), "units": units, "head": total("head.")}


def _active_mask(name: str, active: torch.Tensor) -> torch.Tensor:
    if not isinstance(active, torch.Tensor) or active.dtype != torch.bool or active.dim() != 3:
        got = (f"{active.dtype} tensor of shape {tuple(active.shape)}"
               if isinstance(active, torch.Tensor) else type(active).__name__)
        raise ValueError(f"{name} must be a bool tensor of shape (B, H, W), got {got}")
    return active


def _output_hw(conv: nn.Conv2d, hw: tuple[int, int]) -> tuple[int, int]:
    """Output height and width of ``conv`` on an input of height and width ``hw``."""
    return tuple((size + 2 * pad - dil * (k - 1) - 1) // stride + 1
                 for size, pad, dil, k, stride in zip(hw, conv.padding, conv.dilation,
                                                      conv.kernel_size, conv.stride))


def preserves_size(conv: nn.Conv2d) -> bool:
    """Stride 1 and "same" padding: output size = input size for any input."""
    return all(stride == 1 and 2 * pad == dil * (k - 1)
               for stride, pad, dil, k in zip(conv.stride, conv.padding, conv.dilation, conv.kernel_size))


def read_positions(conv: nn.Conv2d, needed: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
    """The input positions ``conv`` reads to compute the output positions in ``needed``.

    An input position is read when it falls in the k x k window of a needed output
    (zero padding is not an input position). For a 3x3 convolution at stride 1 and
    padding 1 this is ``max_pool2d(needed, 3, stride=1, padding=1)``, the dilation of
    the SACT code; in general it is a transposed convolution of the mask with a kernel
    of ones.

    Args:
        conv: the convolution (``padding_mode="zeros"``).
        needed: (B, H_out, W_out) bool, output positions to compute.
        input_hw: (H_in, W_in), the size of ``conv``'s input.
    Returns:
        (B, H_in, W_in) bool.
    """
    _active_mask("needed", needed)
    expected = _output_hw(conv, input_hw)
    if tuple(needed.shape[1:]) != expected:
        raise ValueError(f"needed must have spatial size {expected} (the output of conv on an "
                         f"input of size {tuple(input_hw)}), got {tuple(needed.shape[1:])}")
    ones = torch.ones(1, 1, *conv.kernel_size, device=needed.device)
    base = [(size - 1) * stride - 2 * pad + dil * (k - 1) + 1
            for size, stride, pad, dil, k in zip(expected, conv.stride, conv.padding,
                                                 conv.dilation, conv.kernel_size)]
    output_padding = [want - got for want, got in zip(input_hw, base)]
    touched = F.conv_transpose2d(needed[:, None].float(), ones, stride=conv.stride,
                                 padding=conv.padding, output_padding=output_padding,
                                 dilation=conv.dilation)                      # (B, 1, H_in, W_in)
    return touched[:, 0] > 0


def unit_flops(unit: nn.Module, active: torch.Tensor, input_hw: Sequence[int] | None = None) -> torch.Tensor:
    """FLOPs per image of a residual unit computed at the active output positions only.

    SACT convention (module docstring): the last convolution of the residual branch is
    counted at the active positions; each earlier convolution at the positions its
    successor reads, so for the CIFAR unit conv2 counts ``active`` and conv1 the mask
    dilated by a 3x3 max-pool (a single active position away from the border costs 9
    positions in conv1 and 1 in conv2). A projection shortcut counts the active
    positions; option A and the addition are free. An all-True mask gives the unit's
    plain FLOPs, an all-False mask 0.

    Args:
        unit: a unit of ``adaptive.spatial.resnet`` (exposing ``residual_convs()`` and
            ``shortcut_convs()``).
        active: (B, H, W) bool, the unit's output positions to compute.
        input_hw: (H_in, W_in) of the unit's input. Needed only when a convolution after
            the first one changes the size (the first bottleneck unit of blocks 2-4); a
            unit whose first convolution carries the stride (CIFAR) needs none.
    Returns:
        (B,) int64 FLOPs per image.
    """
    for method in ("residual_convs", "shortcut_convs"):
        if not callable(getattr(unit, method, None)):
            raise ValueError(f"unit must be a residual unit of adaptive.spatial.resnet exposing {method}(), "
                             f"got {type(unit).__name__}")
    _active_mask("active", active)
    convs = unit.residual_convs()
    output_hw = tuple(active.shape[1:])
    # conv_inputs[i]: spatial size of convs[i]'s input, needed for every conv but the first
    if input_hw is not None:
        if (len(input_hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                      for v in input_hw)):
            raise ValueError(f"input_hw must be (height, width), two integers >= 1, got {input_hw!r}")
        conv_inputs = [tuple(input_hw)]
        for conv in convs:
            conv_inputs.append(_output_hw(conv, conv_inputs[-1]))
        if conv_inputs[-1] != output_hw:
            raise ValueError(f"active has spatial size {output_hw}, but the unit maps input_hw = "
                             f"{tuple(input_hw)} to {conv_inputs[-1]}")
    else:
        if not all(preserves_size(conv) for conv in convs[1:]):
            raise ValueError("input_hw is required for this unit: a convolution after its first "
                             "changes the spatial size")
        conv_inputs = [None] + [output_hw] * len(convs)

    needed = active                                                        # (B, H, W) outputs of convs[-1]
    flops = torch.zeros(active.shape[0], dtype=torch.int64, device=active.device)
    for index in range(len(convs) - 1, -1, -1):
        conv = convs[index]
        flops += conv_flops(conv, needed.sum(dim=(1, 2)))
        if index > 0:
            needed = read_positions(conv, needed, conv_inputs[index])     # outputs of convs[index - 1]
    for conv in unit.shortcut_convs():
        flops += conv_flops(conv, active.sum(dim=(1, 2)))
    return flops


def spatial_halting_flops(channels: int, active: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """FLOPs per image of SACT's halting branch after one unit, at the active positions.

    SACT slides, "We can ACT better: SACT": ``H^l(x) = sigmoid(W~ * x + W pool(x) + b)``
    with ``*`` a k x k convolution from ``channels`` to 1, evaluated at the counted
    positions: ``2 k^2 C`` per position, plus the linear term on the pooled features,
    ``2 C`` per image (pooling, bias and sigmoid are free). No halting branch runs after
    the last unit of a block (``h^L = 1``).

    Args:
        channels: C, channels of the unit's output.
        active: (B, H, W) bool, positions where the halting score is computed.
        kernel_size: k of the halting convolution (3 in the SACT paper).
    Returns:
        (B,) int64.
    """
    _checks.positive_int("channels", channels)
    _checks.positive_int("kernel_size", kernel_size)
    _active_mask("active", active)
    return 2 * kernel_size * kernel_size * channels * active.sum(dim=(1, 2)) + pooled_halting_flops(channels)


def pooled_halting_flops(channels: int) -> int:
    """FLOPs per image of ACT's halting branch ``sigmoid(W pool(x) + b)``: ``2 C`` (SACT slides, ACT)."""
    _checks.positive_int("channels", channels)
    return 2 * channels
