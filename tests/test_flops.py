"""Tests for adaptive.spatial.flops: the SACT FLOP convention.

References: targets.md, "SACT and PSACT on ResNets" (the convention and the plain CIFAR
numbers); SACT slides, "perforated conv. layer" and the SACT halting branch; PSACT sec. 6
(FLOPs of the positions with a non-zero active mask).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from adaptive.spatial import flops, resnet

# targets.md: plain CIFAR networks in the SACT convention, with their significant digits
TARGETS = {20: (8.11e7, 3), 32: (1.377e8, 4), 56: (2.51e8, 3), 110: (5.058e8, 4)}


def rounded(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}")


def full_conv(n: int) -> int:
    """By hand: 4,718,592 (6n - 1) + stem 884,736 + linear 1,280 (flops module docstring)."""
    return 2 * 9 * 32 * 32 * 16 * 16 * (6 * n - 1) + 2 * 9 * 32 * 32 * 3 * 16 + 2 * 64 * 10


@pytest.fixture(scope="module")
def resnet20():
    torch.manual_seed(0)
    return resnet.cifar_resnet(20)


@pytest.fixture(scope="module")
def resnet101():
    torch.manual_seed(0)
    return resnet.imagenet_resnet101().eval()


# --------------------------------------------------------------------------- plain networks

@pytest.mark.slow
@pytest.mark.parametrize("depth", sorted(TARGETS))
def test_plain_flops_match_targets(depth):
    target, digits = TARGETS[depth]
    value = flops.plain_flops(resnet.cifar_resnet(depth))
    assert value == full_conv((depth - 2) // 6)
    assert rounded(value, digits) == target


@pytest.mark.slow
def test_the_stem_must_be_counted():
    """Leaving out the first conv breaks the match for ResNet-20 and ResNet-110 (the convention)."""
    for depth in (20, 110):
        parts = flops.flops_by_part(resnet.cifar_resnet(depth))
        target, digits = TARGETS[depth]
        total = parts["stem"] + sum(map(sum, parts["units"])) + parts["head"]
        assert rounded(total, digits) == target
        assert rounded(total - parts["stem"], digits) != target
        assert parts["head"] == 2 * 64 * 10


def test_flops_by_part_sums_to_plain(resnet20):
    parts = flops.flops_by_part(resnet20)
    assert parts["stem"] == 2 * 32 * 32 * 16 * 9 * 3
    assert [len(units) for units in parts["units"]] == [3, 3, 3]
    full, half = 2 * 2 * 9 * 32 * 32 * 16 * 16, 2 * 9 * 32 * 32 * 16 * 16 * 3 // 2
    assert parts["units"][0] == [full] * 3
    assert parts["units"][1][0] == half and parts["units"][1][1:] == [full] * 2
    total = parts["stem"] + sum(map(sum, parts["units"])) + parts["head"]
    assert total == flops.plain_flops(resnet20)


def test_module_flops_leaves_the_model_as_it_was(resnet20):
    resnet20.train()
    before = {k: v.clone() for k, v in resnet20.state_dict().items()}
    flops.module_flops(resnet20)
    assert resnet20.training and all(m.training for m in resnet20.modules())
    after = resnet20.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("input_size", [(3, 32), (3, 0, 32), "32", (3, 32.0, 32), (True, 32, 32)])
def test_input_size_validation(resnet20, input_size):
    with pytest.raises(ValueError, match="input_size"):
        flops.plain_flops(resnet20, input_size)


@pytest.mark.slow
def test_resnet101_plain_flops_at_224(resnet101):
    """7.8e9 multiply-adds: 1.56e10 FLOPs; the SACT ImageNet model's 1.11e10 is ~71 % of it."""
    assert rounded(flops.plain_flops(resnet101, (3, 224, 224)), 3) == 1.56e10


# --------------------------------------------------------------------------- FlopCounterMode

def flop_counter(model, x):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    by_op = {str(op): count for op, count in counter.get_flop_counts()["Global"].items()}
    return counter.get_total_flops(), by_op


@pytest.mark.slow
@pytest.mark.parametrize("depth", [20, 32])
def test_flop_counter_mode_agrees_exactly(depth):
    """FlopCounterMode counts conv and addmm as 2 x multiply-adds and nothing else we ignore."""
    model = resnet.cifar_resnet(depth).eval()
    batch = 2
    total, by_op = flop_counter(model, torch.randn(batch, 3, 32, 32))
    assert set(by_op) == {"aten.convolution", "aten.addmm"}     # no BN, ReLU, pooling, padding
    assert total == batch * flops.plain_flops(model)
    assert by_op["aten.addmm"] == batch * 2 * 64 * 10           # the linear layer, bias not counted


@pytest.mark.slow
def test_flop_counter_mode_agrees_resnet101(resnet101):
    total, _ = flop_counter(resnet101, torch.randn(1, 3, 64, 64))
    assert total == flops.plain_flops(resnet101, (3, 64, 64))


# --------------------------------------------------------------------------- masked units

def test_all_active_equals_plain_and_empty_costs_nothing(resnet20):
    parts = flops.flops_by_part(resnet20)
    for k, (block, size) in enumerate(zip(resnet20.blocks, (32, 16, 8))):
        for l, unit in enumerate(block):
            full = flops.unit_flops(unit, torch.ones(2, size, size, dtype=torch.bool))
            empty = flops.unit_flops(unit, torch.zeros(2, size, size, dtype=torch.bool))
            assert full.dtype == torch.int64 and full.tolist() == [parts["units"][k][l]] * 2
            assert empty.tolist() == [0, 0]


def test_single_active_position_dilated_for_conv1(resnet20):
    unit = resnet20.blocks[0][1]
    middle = torch.zeros(1, 32, 32, dtype=torch.bool)
    middle[0, 10, 20] = True
    expected = flops.conv_flops(unit.conv1, 9) + flops.conv_flops(unit.conv2, 1)
    assert flops.unit_flops(unit, middle).tolist() == [expected]
    assert expected == 2 * 16 * 16 * 9 * (9 + 1)
    corner = torch.zeros(1, 32, 32, dtype=torch.bool)
    corner[0, 0, 0] = True                                      # the neighbourhood is cut by the border
    assert flops.unit_flops(unit, corner).tolist() == [2 * 16 * 16 * 9 * (4 + 1)]


def test_masked_flops_are_per_image_and_match_max_pool_dilation(resnet20):
    unit = resnet20.blocks[2][1]                                # 64 channels, 8x8
    torch.manual_seed(3)
    active = torch.rand(4, 8, 8) < torch.tensor([0.0, 0.1, 0.5, 1.0]).view(4, 1, 1)
    dilated = F.max_pool2d(active[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0
    expected = [flops.conv_flops(unit.conv1, int(d)) + flops.conv_flops(unit.conv2, int(a))
                for d, a in zip(dilated.sum(dim=(1, 2)), active.sum(dim=(1, 2)))]
    assert flops.unit_flops(unit, active).tolist() == expected
    assert torch.equal(flops.read_positions(unit.conv2, active, (8, 8)), dilated)


def brute_force_reads(conv, needed, input_hw):
    """Input positions read by the needed outputs, enumerated one output at a time."""
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    reads = torch.zeros(needed.shape[0], *input_hw, dtype=torch.bool)
    for b, i, j in needed.nonzero().tolist():
        for a in range(kh):
            for c in range(kw):
                y, x = i * sh - ph + a, j * sw - pw + c
                if 0 <= y < input_hw[0] and 0 <= x < input_hw[1]:
                    reads[b, y, x] = True
    return reads


@pytest.mark.parametrize("kernel, stride, padding, input_hw", [
    (3, 1, 1, (6, 7)), (3, 2, 1, (8, 8)), (3, 2, 1, (7, 9)), (1, 2, 0, (8, 6)), (7, 2, 3, (11, 10))])
def test_read_positions_matches_brute_force(kernel, stride, padding, input_hw):
    conv = torch.nn.Conv2d(1, 1, kernel, stride=stride, padding=padding)
    out_hw = conv(torch.zeros(1, 1, *input_hw)).shape[2:]
    torch.manual_seed(4)
    needed = torch.rand(2, *out_hw) < 0.3
    assert torch.equal(flops.read_positions(conv, needed, input_hw),
                       brute_force_reads(conv, needed, input_hw))


def test_bottleneck_units(resnet101):
    parts = flops.flops_by_part(resnet101, (3, 64, 64))
    unit = resnet101.blocks[1][1]                               # 8x8, stride 1, identity shortcut
    full = flops.unit_flops(unit, torch.ones(1, 8, 8, dtype=torch.bool))
    assert full.tolist() == [parts["units"][1][1]]
    one = torch.zeros(1, 8, 8, dtype=torch.bool)
    one[0, 4, 4] = True                                         # conv1 (1x1) must feed the 3x3 conv2
    expected = (flops.conv_flops(unit.conv1, 9) + flops.conv_flops(unit.conv2, 1)
                + flops.conv_flops(unit.conv3, 1))
    assert flops.unit_flops(unit, one).tolist() == [expected]

    first = resnet101.blocks[1][0]                              # 16x16 -> 8x8 in conv2, projection
    with pytest.raises(ValueError, match="input_hw is required"):
        flops.unit_flops(first, torch.ones(1, 8, 8, dtype=torch.bool))
    full = flops.unit_flops(first, torch.ones(1, 8, 8, dtype=torch.bool), input_hw=(16, 16))
    assert full.tolist() == [parts["units"][1][0]]
    with pytest.raises(ValueError, match="input_hw"):
        flops.unit_flops(first, torch.ones(1, 8, 8, dtype=torch.bool), input_hw=(32, 32))


def test_strided_cifar_unit_needs_no_input_size(resnet20):
    unit = resnet20.blocks[1][0]                                # the stride sits in conv1
    one = torch.zeros(1, 16, 16, dtype=torch.bool)
    one[0, 8, 8] = True
    expected = flops.conv_flops(unit.conv1, 9) + flops.conv_flops(unit.conv2, 1)
    assert flops.unit_flops(unit, one).tolist() == [expected]
    assert flops.unit_flops(unit, one, input_hw=(32, 32)).tolist() == [expected]


@pytest.mark.parametrize("active", [torch.ones(32, 32, dtype=torch.bool), torch.ones(1, 32, 32),
                                    torch.ones(1, 1, 32, 32, dtype=torch.bool), [[True]]])
def test_unit_flops_rejects_bad_masks(resnet20, active):
    with pytest.raises(ValueError, match=r"active must be a bool tensor of shape \(B, H, W\)"):
        flops.unit_flops(resnet20.blocks[0][0], active)


def test_unit_flops_rejects_non_units():
    with pytest.raises(ValueError, match="unit must be a residual unit"):
        flops.unit_flops(torch.nn.Conv2d(1, 1, 3), torch.ones(1, 4, 4, dtype=torch.bool))


# --------------------------------------------------------------------------- halting branches

def test_spatial_halting_flops():
    active = torch.zeros(2, 8, 8, dtype=torch.bool)
    active[0, :2, :3] = True                                    # 6 positions in image 0, none in image 1
    assert flops.spatial_halting_flops(64, active).tolist() == [2 * 9 * 64 * 6 + 2 * 64, 2 * 64]
    assert flops.spatial_halting_flops(64, active, kernel_size=1).tolist() == [2 * 64 * 6 + 2 * 64, 2 * 64]
    halting = torch.nn.Conv2d(64, 1, 3, padding=1)
    assert flops.conv_flops(halting, 6) == 2 * 9 * 64 * 6
    assert flops.pooled_halting_flops(64) == flops.linear_flops(torch.nn.Linear(64, 1)) == 128


def test_halting_flops_validation():
    active = torch.ones(1, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="channels"):
        flops.spatial_halting_flops(0, active)
    with pytest.raises(ValueError, match="kernel_size"):
        flops.spatial_halting_flops(16, active, kernel_size=0)
    with pytest.raises(ValueError, match="active"):
        flops.spatial_halting_flops(16, active.float())
    with pytest.raises(ValueError, match="channels"):
        flops.pooled_halting_flops(2.5)
    with pytest.raises(ValueError, match="conv"):
        flops.conv_flops(torch.nn.Linear(2, 2), 1)
