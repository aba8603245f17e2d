"""Pre-activation residual networks, built so an adaptive loop can run them unit by unit.

The networks are the pre-activation ResNets of He et al. (2016b, "Identity Mappings in
Deep Residual Networks"), the base models of SACT (Figurnov et al. 2017) and PSACT
(Figurnov, Sobolev & Vetrov 2018, sec. 4.1):

* ``cifar_resnet(depth)``: ResNet-20/32/56/110 for CIFAR, depth = 6n + 2, three blocks
  of n basic units with widths 16/32/64 at 32x32, 16x16 and 8x8 (PSACT sec. 4.1);
* ``imagenet_resnet101()``: ResNet-101 with bottleneck units (3, 4, 23, 3), widths
  64/128/256/512 times 4 at the output (SACT slides, "Stage one: ResNet").

The contract an adaptive version relies on
-------------------------------------------
A ``PreActResNet`` is three parts, and its plain ``forward`` is exactly::

    x = model.stem(images)                 # (B, 3, H, W) -> (B, C_0, H_0, W_0)
    for block in model.blocks:             # nn.ModuleList of blocks
        for unit in block:                 # each block an nn.ModuleList of units
            x = unit(x)                    # x^l = F^l(x^{l-1})
    logits = model.head(x)                 # BN-ReLU, global average pool, linear

Every unit is a residual unit ``F^l(x) = x + f^l(x)`` (SACT slides, "ACT going deeper";
PSACT eq. 27 writes ``u^l = u^{l-1} + f^l(u^{l-1})``) and exposes the two terms:

* ``unit.residual(x)`` = ``f^l(x)``, the residual branch;
* ``unit.shortcut(x)``: the identity for every unit but the first of a block, so
  ``unit(x) == x + unit.residual(x)`` for l >= 2.

Only the first unit of a block may change the resolution (stride 2) or the width; its
shortcut then subsamples and zero-pads the channels (CIFAR, He et al. 2016a option A) or
is a strided 1x1 projection (ResNet-101). ACT and SACT start every block with all
positions active (the cumulative halting score is 0 before unit 1), so the first unit
is always run whole, as ``unit(x)``; the halting score ``h^l`` is computed from its
output onwards. For units l >= 2 an SACT loop runs ``x + unit.residual(x) * active``
(PSACT eq. 27), and ``adaptive.spatial.flops.unit_flops(unit, active)`` counts what that
costs when only the active positions are computed.

Call ``unit(x)`` rather than ``shortcut(x) + residual(x)`` for a unit with a projection
shortcut: both terms start from the same pre-activation ``relu(bn1(x))``, so calling them
separately in training mode would update ``bn1``'s running statistics twice.

Details
-------
* Pre-activation unit (He et al. 2016b, fig. 4e): BN-ReLU-conv3x3-BN-ReLU-conv3x3; the
  stride sits in the first convolution. The network ends with BN-ReLU before pooling,
  since the last unit's output is not normalised.
* Option A shortcut (He et al. 2016a, sec. 4.2): parameter-free; keep every
  ``stride``-th row and column, then append ``C_out - C_in`` channels of zeros. (The
  SACT reference code instead averages 2x2 windows and pads the channels on both sides;
  neither holds parameters or costs FLOPs in the SACT convention.)
* Bottleneck unit (He et al. 2016a, fig. 5, pre-activation order): BN-ReLU-conv1x1,
  BN-ReLU-conv3x3 (carrying the stride), BN-ReLU-conv1x1 to 4x the width. The shortcut
  is a 1x1 projection of the pre-activated input where the shape changes.
* ResNet-101 stem: conv7x7 stride 2 to 64 channels, then 3x3 max-pool stride 2
  (input stride 4, as on the slides); no BN-ReLU in the stem, since every unit
  pre-activates its input.
* Convolutions have no bias (a BN follows each one); He (fan-out) initialisation.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import _checks

CIFAR_WIDTHS = (16, 32, 64)
RESNET101_UNITS = (3, 4, 23, 3)
RESNET101_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """A 3x3 convolution with padding 1 ("same" at stride 1) and no bias."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """A 1x1 convolution with no bias."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ShortcutA(nn.Module):
    """He et al. (2016a) option A: a parameter-free shortcut that may change the shape.

    Keeps every ``stride``-th row and column and appends ``out_channels - in_channels``
    zero channels, so channel c < in_channels of the output is channel c of the input.
    With stride 1 and equal widths it is the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        _checks.positive_int("in_channels", in_channels)
        _checks.positive_int("out_channels", out_channels)
        _checks.positive_int("stride", stride)
        if out_channels < in_channels:
            raise ValueError(f"out_channels must be >= in_channels = {in_channels} for an option-A "
                             f"shortcut (it can only pad channels), got {out_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]                  # (B, C_in, H/s, W/s)
        extra = self.out_channels - self.in_channels
        if extra:
            x = F.pad(x, (0, 0, 0, 0, 0, extra))                       # (B, C_out, H/s, W/s)
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class BasicUnit(nn.Module):
    """Pre-activation basic unit: ``x -> shortcut(x) + f(x)``, f = BN-ReLU-conv3x3-BN-ReLU-conv3x3.

    He et al. (2016b), fig. 4e; the CIFAR unit of SACT and PSACT (sec. 4.1: "f is a
    sub-network consisting of two convolutional layers").

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (>= in_channels).
        stride: stride of the first convolution (2 at the first unit of blocks 2 and 3).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.shortcut = ShortcutA(in_channels, out_channels, stride)  # validates the sizes
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)``: (B, C_in, H, W) -> (B, C_out, H/s, W/s)."""
        x = self.conv1(F.relu(self.bn1(x)))
        return self.conv2(F.relu(self.bn2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.residual(x)

    def residual_convs(self) -> tuple[nn.Conv2d, ...]:
        """The convolutions of ``f`` in the order they run."""
        return (self.conv1, self.conv2)

    def residual_layers(self) -> tuple[tuple[nn.BatchNorm2d, nn.Conv2d], ...]:
        """``f`` as (batch norm, convolution) pairs: f = conv2(relu(bn2(conv1(relu(bn1(x))))))."""
        return ((self.bn1, self.conv1), (self.bn2, self.conv2))

    def shortcut_convs(self) -> tuple[nn.Conv2d, ...]:
        """Convolutions of the shortcut: none (option A is parameter-free)."""
        return ()


class BottleneckUnit(nn.Module):
    """Pre-activation bottleneck unit: BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1.

    He et al. (2016a) fig. 5 in the pre-activation order of He et al. (2016b). The output
    has ``4 * width`` channels; the 3x3 convolution carries the stride. Where the shape
    changes, the shortcut is a strided 1x1 projection of the pre-activated input
    ``relu(bn1(x))``, which it shares with the residual branch.

    Args:
        in_channels: channels of the input.
        width: channels of the bottleneck (output has ``4 * width``).
        stride: stride of the 3x3 convolution.
    """

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        _checks.positive_int("in_channels", in_channels)
        _checks.positive_int("width", width)
        _checks.positive_int("stride", stride)
        out_channels = BOTTLENECK_EXPANSION * width
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv1x1(in_channels, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        if stride != 1 or in_channels != out_channels:
            self.projection = conv1x1(in_channels, out_channels, stride)
        else:
            self.projection = None

    def _preact(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn1(x))

    def _residual_from_preact(self, a: torch.Tensor) -> torch.Tensor:
        a = self.conv1(a)                                        # (B, w, H, W)
        a = self.conv2(F.relu(self.bn2(a)))                      # (B, w, H/s, W/s)
        return self.conv3(F.relu(self.bn3(a)))                   # (B, 4w, H/s, W/s)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)``: (B, C_in, H, W) -> (B, 4w, H/s, W/s)."""
        return self._residual_from_preact(self._preact(x))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """The identity, or the 1x1 projection of ``relu(bn1(x))`` where the shape changes."""
        return x if self.projection is None else self.projection(self._preact(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self._preact(x)                                      # computed once: bn1 updates once
        shortcut = x if self.projection is None else self.projection(a)
        return shortcut + self._residual_from_preact(a)

    def residual_convs(self) -> tuple[nn.Conv2d, ...]:
        """The convolutions of ``f`` in the order they run."""
        return (self.conv1, self.conv2, self.conv3)

    def residual_layers(self) -> tuple[tuple[nn.BatchNorm2d, nn.Conv2d], ...]:
        """``f`` as (batch norm, convolution) pairs, each conv applied to relu(bn(previous))."""
        return ((self.bn1, self.conv1), (self.bn2, self.conv2), (self.bn3, self.conv3))

    def shortcut_convs(self) -> tuple[nn.Conv2d, ...]:
        """The projection convolution, if any."""
        return () if self.projection is None else (self.projection,)


class CifarStem(nn.Module):
    """The first layer of the CIFAR ResNets: conv3x3 from 3 to 16 channels, no BN-ReLU."""

    def __init__(self, in_channels: int = 3, out_channels: int = CIFAR_WIDTHS[0]):
        super().__init__()
        self.conv = conv3x3(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)                                       # (B, 16, H, W)


class ImageNetStem(nn.Module):
    """conv7x7 stride 2 to 64 channels, then 3x3 max-pool stride 2: input stride 4."""

    def __init__(self, in_channels: int = 3, out_channels: int = RESNET101_WIDTHS[0]):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 7, stride=2, padding=3, bias=False)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))                            # (B, 64, H/4, W/4)


class Head(nn.Module):
    """Final BN-ReLU (the last unit's output is not normalised), global average pool, linear."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(features))                             # (B, C, H, W)
        x = x.mean(dim=(2, 3))                                    # (B, C)
        return self.fc(x)                                         # (B, num_classes)


class PreActResNet(nn.Module):
    """stem -> blocks of residual units -> head; see the module docstring for the contract.

    Args:
        stem: maps images (B, in_channels, H, W) to the first block's input.
        blocks: a sequence of blocks, each a sequence of residual units exposing
            ``residual(x)`` and ``shortcut(x)``.
        head: maps the last unit's output to logits.
        in_channels: channels the images must have.
    """

    def __init__(self, stem: nn.Module, blocks: Sequence[Sequence[nn.Module]], head: nn.Module,
                 in_channels: int = 3):
        super().__init__()
        if len(blocks) == 0 or any(len(block) == 0 for block in blocks):
            raise ValueError("blocks must hold at least one block, each with at least one unit")
        self.in_channels = _checks.positive_int("in_channels", in_channels)
        self.stem = stem
        self.blocks = nn.ModuleList(nn.ModuleList(block) for block in blocks)
        self.head = head
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def units_per_block(self) -> tuple[int, ...]:
        """Number of residual units L_k in each block k."""
        return tuple(len(block) for block in self.blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """stem and every unit in order: (B, in_channels, H, W) -> the head's input."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (B, {self.in_channels}, H, W), got {shape}")
        x = self.stem(x)
        for block in self.blocks:
            for unit in block:
                x = unit(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of images (B, in_channels, H, W)."""
        return self.head(self.features(x))


def cifar_units(depth: int) -> int:
    """Units per block n of a CIFAR ResNet of the given depth = 6n + 2 (He et al. 2016a, sec. 4.2)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError("depth must be 6n+2 with n >= 1 units per block (8, 14, 20, 32, 56, "
                         f"110, ...), got {depth!r}")
    return (depth - 2) // 6


def cifar_resnet(depth: int, num_classes: int = 10) -> PreActResNet:
    """Pre-activation CIFAR ResNet with option-A shortcuts (PSACT sec. 4.1; SACT CIFAR recipe).

    Three blocks of n = (depth - 2) / 6 basic units with widths 16, 32, 64; stride 2 at
    the first unit of blocks 2 and 3. ResNet-20/32/56/110 have n = 3/5/9/18. The depth
    counts the weighted layers: the first conv, 2 per unit, the linear layer.

    Args:
        depth: 6n + 2 for n >= 1.
        num_classes: outputs of the linear classifier.
    """
    units = cifar_units(depth)
    _checks.positive_int("num_classes", num_classes)
    blocks, in_channels = [], CIFAR_WIDTHS[0]
    for index, width in enumerate(CIFAR_WIDTHS):
        block = []
        for unit_index in range(units):
            stride = 2 if index > 0 and unit_index == 0 else 1
            block.append(BasicUnit(in_channels, width, stride))
            in_channels = width
        blocks.append(block)
    return PreActResNet(CifarStem(), blocks, Head(in_channels, num_classes))


def imagenet_resnet(units: Sequence[int] = RESNET101_UNITS, widths: Sequence[int] = RESNET101_WIDTHS,
                    num_classes: int = 1000) -> PreActResNet:
    """Pre-activation ImageNet-style ResNet with bottleneck units.

    Stem conv7x7/2 + max-pool/2, then one block per entry of ``units``; the first unit of
    every block but the first has stride 2. Output channels of block k are ``4 * widths[k]``.

    Args:
        units: residual units per block, each >= 1.
        widths: bottleneck width per block, same length as ``units``.
        num_classes: outputs of the linear classifier.
    """
    units, widths = tuple(units), tuple(widths)
    if len(units) == 0 or len(units) != len(widths):
        raise ValueError(f"units and widths must be non-empty and of equal length, got {len(units)} "
                         f"and {len(widths)}")
    for name, values in (("units", units), ("widths", widths)):
        for value in values:
            _checks.positive_int(name, value)
    _checks.positive_int("num_classes", num_classes)
    blocks, in_channels = [], widths[0]
    for index, (count, width) in enumerate(zip(units, widths)):
        block = []
        for unit_index in range(count):
            stride = 2 if index > 0 and unit_index == 0 else 1
            block.append(BottleneckUnit(in_channels, width, stride))
            in_channels = BOTTLENECK_EXPANSION * width
        blocks.append(block)
    return PreActResNet(ImageNetStem(out_channels=widths[0]), blocks, Head(in_channels, num_classes))


def imagenet_resnet101(num_classes: int = 1000) -> PreActResNet:
    """Pre-activation ResNet-101: bottleneck units (3, 4, 23, 3), widths 64/128/256/512 (x4 out)."""
    return imagenet_resnet(RESNET101_UNITS, RESNET101_WIDTHS, num_classes)
