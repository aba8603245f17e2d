"""Tests for adaptive.spatial.resnet: pre-activation ResNets run unit by unit.

References: He et al. (2016a) sec. 4.2 (CIFAR ResNets, depth 6n + 2, option-A shortcuts),
He et al. (2016b) (pre-activation units), PSACT sec. 4.1 and the SACT slides (block and
unit structure, ResNet-101 with (3, 4, 23, 3) units).
"""
from __future__ import annotations

import pytest
import torch

from adaptive.spatial import resnet


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def cifar_params_by_hand(n: int, classes: int = 10) -> int:
    """Parameters of the pre-activation CIFAR ResNet with 3 blocks of n units, counted by hand."""
    convs = 3 * 16 * 9                                          # stem
    convs += 2 * n * 16 * 16 * 9                                # block 1
    convs += 16 * 32 * 9 + (2 * n - 1) * 32 * 32 * 9            # block 2
    convs += 32 * 64 * 9 + (2 * n - 1) * 64 * 64 * 9            # block 3
    bn = 2 * (n * 2 * 16 + (16 + 32) + (n - 1) * 2 * 32 + (32 + 64) + (n - 1) * 2 * 64 + 64)
    return convs + bn + 64 * classes + classes


def run_unit_by_unit(model, x):
    """The contract of the module docstring, written out."""
    h = model.stem(x)
    for block in model.blocks:
        for unit in block:
            h = unit(h)
    return model.head(h)


@pytest.fixture(scope="module")
def resnet101():
    torch.manual_seed(0)
    return resnet.imagenet_resnet101().eval()


# --------------------------------------------------------------------------- CIFAR structure

@pytest.mark.parametrize("depth, n", [(20, 3), (32, 5), (56, 9), (110, 18)])
def test_cifar_units_per_block(depth, n):
    model = resnet.cifar_resnet(depth)
    assert model.units_per_block == (n, n, n)
    assert resnet.cifar_units(depth) == n
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) + len(linears) == depth                   # weighted layers = depth


def test_cifar_output_shape_and_resolutions():
    torch.manual_seed(0)
    model = resnet.cifar_resnet(20, num_classes=7)
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 7)
    h = model.stem(x)
    assert h.shape == (2, 16, 32, 32)
    expected = [(16, 32), (32, 16), (64, 8)]
    for block, (channels, size) in zip(model.blocks, expected):
        for unit in block:
            h = unit(h)
            assert h.shape == (2, channels, size, size)


def test_cifar_strides_only_at_first_unit_of_blocks_2_and_3():
    model = resnet.cifar_resnet(32)
    for k, block in enumerate(model.blocks):
        for l, unit in enumerate(block):
            want = 2 if (k > 0 and l == 0) else 1
            assert unit.conv1.stride == (want, want)
            assert unit.conv2.stride == (1, 1)


# --------------------------------------------------------------------------- the unit-by-unit contract

@pytest.mark.parametrize("train", [False, True])
def test_unit_by_unit_reproduces_forward_cifar(train):
    torch.manual_seed(1)
    model = resnet.cifar_resnet(20).train(train)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(run_unit_by_unit(model, x), model(x))


def test_residual_and_shortcut_decompose_every_unit_cifar():
    torch.manual_seed(2)
    model = resnet.cifar_resnet(20).eval()
    h = model.stem(torch.randn(2, 3, 32, 32))
    with torch.no_grad():
        for block in model.blocks:
            for l, unit in enumerate(block):
                out = unit(h)
                assert torch.equal(out, unit.shortcut(h) + unit.residual(h))
                if l > 0:                                   # identity shortcut after the first unit
                    assert torch.equal(out, h + unit.residual(h))
                h = out


@pytest.mark.slow
def test_unit_by_unit_reproduces_forward_resnet101(resnet101):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(run_unit_by_unit(resnet101, x), resnet101(x))


@pytest.mark.slow
def test_residual_and_shortcut_decompose_every_unit_resnet101(resnet101):
    h = resnet101.stem(torch.randn(1, 3, 64, 64))
    with torch.no_grad():
        for block in resnet101.blocks:
            for l, unit in enumerate(block):
                out = unit(h)
                assert torch.equal(out, unit.shortcut(h) + unit.residual(h))
                if l > 0:
                    assert torch.equal(out, h + unit.residual(h))
                h = out


def test_projection_unit_updates_shared_batch_norm_once():
    unit = resnet.BottleneckUnit(16, 8, stride=2).train()
    assert unit.projection is not None
    unit(torch.randn(2, 16, 8, 8))
    assert unit.bn1.num_batches_tracked.item() == 1


# --------------------------------------------------------------------------- ResNet-101

def test_resnet101_structure(resnet101):
    assert resnet101.units_per_block == (3, 4, 23, 3)
    for k, (block, width) in enumerate(zip(resnet101.blocks, (64, 128, 256, 512))):
        for l, unit in enumerate(block):
            assert unit.conv3.out_channels == 4 * width
            assert (unit.projection is not None) == (l == 0)     # projection only where the shape changes
            assert unit.conv2.stride == ((2, 2) if k > 0 and l == 0 else (1, 1))
    assert resnet101.head.fc.in_features == 2048
    assert resnet101.stem.conv.kernel_size == (7, 7) and resnet101.stem.conv.stride == (2, 2)
    assert 44.0e6 < n_params(resnet101) < 45.0e6                # ResNet-101 has ~44.5M parameters


def test_resnet101_shapes_at_small_input(resnet101):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        h = resnet101.stem(x)
        assert h.shape == (1, 64, 16, 16)                       # input stride 4
        for block, (channels, size) in zip(resnet101.blocks, [(256, 16), (512, 8), (1024, 4), (2048, 2)]):
            for unit in block:
                h = unit(h)
            assert h.shape == (1, channels, size, size)
        assert resnet101.head(h).shape == (1, 1000)


# --------------------------------------------------------------------------- parameters and option A

@pytest.mark.parametrize("depth, low, high", [(32, 0.45e6, 0.47e6), (110, 1.70e6, 1.75e6)])
def test_cifar_parameter_counts(depth, low, high):
    model = resnet.cifar_resnet(depth)
    count = n_params(model)
    assert low < count < high                                   # He et al.: 0.46M and 1.7M
    assert count == cifar_params_by_hand((depth - 2) // 6)


def test_option_a_shortcut_is_parameter_free_and_pads_zeros():
    model = resnet.cifar_resnet(20)
    for block in model.blocks:
        for unit in block:
            assert n_params(unit.shortcut) == 0
            assert not list(unit.shortcut.buffers())
    shortcut = model.blocks[1][0].shortcut                      # 16 -> 32 channels, stride 2
    x = torch.randn(2, 16, 32, 32)
    out = shortcut(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert torch.equal(out[:, 16:], torch.zeros(2, 16, 16, 16))


def test_option_a_shortcut_identity_and_validation():
    x = torch.randn(1, 16, 8, 8)
    assert torch.equal(resnet.ShortcutA(16, 16)(x), x)
    with pytest.raises(ValueError, match="out_channels"):
        resnet.ShortcutA(32, 16)
    with pytest.raises(ValueError, match="stride"):
        resnet.ShortcutA(16, 32, stride=0)


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("depth", [33, 2, 0, -4, 21, 20.0, True, "20", None])
def test_depth_must_be_6n_plus_2(depth):
    with pytest.raises(ValueError, match=r"depth must be 6n\+2"):
        resnet.cifar_resnet(depth)


def test_smallest_depth_is_8():
    assert resnet.cifar_resnet(8).units_per_block == (1, 1, 1)


def test_num_classes_validation():
    with pytest.raises(ValueError, match="num_classes"):
        resnet.cifar_resnet(20, num_classes=0)
    with pytest.raises(ValueError, match="num_classes"):
        resnet.imagenet_resnet(units=(1, 1), widths=(8, 16), num_classes=-1)


def test_imagenet_resnet_validation():
    with pytest.raises(ValueError, match="units and widths"):
        resnet.imagenet_resnet(units=(1, 2), widths=(8,))
    with pytest.raises(ValueError, match="units"):
        resnet.imagenet_resnet(units=(1, 0), widths=(8, 16))


def test_forward_rejects_bad_images():
    model = resnet.cifar_resnet(8)
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(B, 3, H, W\)"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="x must"):
        model(torch.randn(3, 32, 32))
