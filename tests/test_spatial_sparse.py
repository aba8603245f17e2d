"""Tests for adaptive.spatial.sparse: block-sparse evaluation equals the dense masked unit.

The reference is eq. 27 of PSACT computed densely, ``u + f(u) * mask`` (batch norms in
evaluation mode), for SACT's 0/1 masks and PSACT's relaxed masks ``r [r > delta]`` in (0, 1];
the block path must match it to float rounding wherever the blocks fall, with the dense
convolution's zero padding (applied after BN-ReLU) reproduced at the map's edges.
"""
from __future__ import annotations

import functools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from adaptive.spatial import halting as spatial
from adaptive.spatial import sparse
from adaptive.spatial.halting import AdaptiveResNet, SpatialHalting
from adaptive.spatial.resnet import BasicUnit, BottleneckUnit, cifar_resnet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randomize_batch_norms(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Running statistics and affine parameters far from the identity (some scales negative, shifts
    up to about +-1), so that BN-ReLU of a zero is not zero: padding the input instead of the
    activations would show."""
    g = gen(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                n = bn.num_features
                bn.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                bn.weight.copy_(torch.rand(n, generator=g) * 2 - 0.5)
                bn.bias.copy_(torch.randn(n, generator=g) * 0.5)
    return module.eval()


def masks(kind: str, shape: tuple[int, int, int], g: torch.Generator) -> torch.Tensor:
    """(B, H, W) masks of every kind the halting loop passes to a unit."""
    batch, height, width = shape
    if kind == "none":
        return torch.zeros(shape)
    if kind == "all":
        return torch.ones(shape)
    if kind == "binary":                               # ACT / SACT: 0/1
        return (torch.rand(shape, generator=g) < 0.2).float()
    if kind == "relaxed":                              # PSACT: r [r > delta], values in (0, 1]
        r = torch.rand(shape, generator=g)
        return r * (r > 0.7)
    if kind == "patches":                              # one value per 2x2 patch
        grid = (torch.rand(batch, -(-height // 2), -(-width // 2), generator=g) < 0.3).float()
        return grid.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, :height, :width].contiguous()
    if kind == "corner":                               # one active position, on the map's corner
        mask = torch.zeros(shape)
        mask[:, -1, -1] = 1.0
        return mask
    if kind == "some-images":                          # image 0 done, image 1 partly active, image 2 whole
        mask = (torch.rand(shape, generator=g) < 0.2).float()
        mask[0], mask[-1] = 0.0, 1.0
        return mask
    raise AssertionError(kind)


KINDS = ["none", "all", "binary", "relaxed", "patches", "corner", "some-images"]


def dense(unit, u, mask):
    return u + unit.residual(u) * mask[:, None]


# ----------------------------------------------------------------------------- block_residual = dense

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size, block", [((16, 16), 8), ((16, 16), 4), ((13, 7), 4), ((9, 17), 8), ((5, 5), 16),
                                         ((1, 1), 2)])
def test_block_residual_equals_the_masked_dense_unit(kind, size, block):
    unit = randomize_batch_norms(BasicUnit(8, 8), 0)
    g = gen(1)
    u = torch.randn(3, 8, *size, generator=g)
    mask = masks(kind, (3, *size), g)
    with torch.no_grad():
        out = sparse.block_residual(unit, u, mask, block)
        expected = dense(unit, u, mask)
    assert out.shape == u.shape and out.is_contiguous()
    assert torch.allclose(out, expected, atol=1e-5, rtol=0)
    halted = (mask == 0)[:, None].expand_as(u)
    assert torch.equal(out[halted], u[halted])                        # halted positions keep u exactly


def test_block_residual_of_a_bottleneck_unit_and_channels_last_input():
    """Three convolutions (1x1, 3x3, 1x1: a halo of 1) and a channels-last map, which stays channels-last."""
    unit = randomize_batch_norms(BottleneckUnit(32, 8), 2)
    g = gen(3)
    u = torch.randn(2, 32, 11, 14, generator=g).contiguous(memory_format=torch.channels_last)
    mask = masks("relaxed", (2, 11, 14), g)
    with torch.no_grad():
        out = sparse.block_residual(unit, u, mask, 4)
        expected = dense(unit, u, mask)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, expected, atol=1e-5, rtol=0)


def test_block_residual_computes_each_layer_on_the_blocks_it_must():
    """torch's FLOP counter sees each convolution on the computed blocks only, b^2 outputs per block
    (no halo recomputed): for 3x3-3x3 and blocks of 4, the second on the 3 blocks with an active
    position, the first on the 4 blocks within one pixel of one (position (15, 3) reaches into block
    column 1)."""
    unit = randomize_batch_norms(BasicUnit(8, 8), 4)
    u = torch.randn(2, 8, 16, 16, generator=gen(5))
    mask = torch.zeros(2, 16, 16)
    mask[0, 0, 0] = mask[0, 5, 9] = mask[1, 15, 3] = 1.0             # three blocks of 16 per image
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        sparse.block_residual(unit, u, mask, 4)
    per_position = 2 * 8 * 9 * 8
    assert counter.get_total_flops() == per_position * 4 * 4 * (4 + 3)
    assert int(sparse.active_blocks(mask, 4).sum()) == 3


@pytest.mark.parametrize("block", [1, 2])
def test_block_residual_refuses_the_strided_first_unit(block):
    model = cifar_resnet(8)
    unit = model.blocks[block][0]
    u = torch.randn(1, unit.bn1.num_features, 8, 8)
    with pytest.raises(ValueError, match="stride-1"):
        sparse.block_residual(unit.eval(), u, torch.ones(1, 4, 4))


def test_block_residual_refuses_a_block_side_below_one():
    with pytest.raises(ValueError, match="block"):
        sparse.block_residual(BasicUnit(4, 4).eval(), torch.randn(1, 4, 8, 8), torch.ones(1, 8, 8), 0)


# ----------------------------------------------------------------------------- blocks and the choice of path

def test_active_blocks_cover_the_map_with_a_partial_last_row_and_column():
    mask = torch.zeros(1, 9, 10)
    mask[0, 8, 9] = 0.5
    blocks = sparse.active_blocks(mask, 4)
    assert blocks.shape == (1, 3, 3) and blocks.dtype == torch.bool
    assert blocks.nonzero().tolist() == [[0, 2, 2]]


def test_the_default_break_even_keeps_small_maps_dense():
    assert sparse.default_break_even(sparse.MIN_SIDE, 200) == sparse.BREAK_EVEN
    assert sparse.default_break_even(200, sparse.MIN_SIDE - 1) == 0.0      # the shorter side decides
    mask = torch.zeros(1, 32, 32)
    mask[0, 0, 0] = 1.0
    assert not sparse.uses_blocks(mask, 8, sparse.default_break_even(32, 32))


def test_uses_blocks_below_the_break_even_only():
    mask = torch.zeros(2, 16, 16)
    mask[0, :4, :4] = 1.0                                            # one block of 4 in image 0
    assert sparse.uses_blocks(mask, 8, break_even=0.25)              # 1 of image 0's 4 blocks
    assert not sparse.uses_blocks(mask, 8, break_even=0.2)
    mask[0, 12, 12] = 1.0                                            # 2 of 4
    assert sparse.uses_blocks(mask, 8, break_even=0.5) and not sparse.uses_blocks(mask, 8, break_even=0.4)
    assert not sparse.uses_blocks(torch.zeros(2, 16, 16), 8, break_even=1.0)      # nothing to compute
    whole = torch.stack([torch.ones(16, 16), torch.zeros(16, 16)])
    assert not sparse.uses_blocks(whole, 8, break_even=1.0)          # whole images: dense on them


@pytest.mark.parametrize("kind, break_even, blocks", [("binary", 1.0, True), ("binary", 0.0, False),
                                                      ("all", 1.0, False), ("some-images", 1.0, True),
                                                      ("none", 1.0, False)])
def test_apply_unit_takes_the_path_uses_blocks_names_and_agrees_with_dense(kind, break_even, blocks, monkeypatch):
    unit = randomize_batch_norms(BasicUnit(8, 8), 6)
    g = gen(7)
    u = torch.randn(3, 8, 12, 12, generator=g)
    mask = masks(kind, (3, 12, 12), g)
    calls = []
    block_residual = sparse.block_residual
    monkeypatch.setattr(sparse, "block_residual", lambda *args: calls.append(1) or block_residual(*args))
    with torch.no_grad():
        out = sparse.apply_unit(unit, u, mask, True, block=4, break_even=break_even)
        expected = dense(unit, u, mask)
    assert bool(calls) == blocks
    assert torch.allclose(out, expected, atol=1e-5, rtol=0)


def test_apply_unit_runs_the_dense_unit_on_the_images_with_work_only(monkeypatch):
    unit = randomize_batch_norms(BasicUnit(4, 4), 8)
    u = torch.randn(3, 4, 8, 8, generator=gen(9))
    mask = torch.stack([torch.zeros(8, 8), torch.ones(8, 8), torch.zeros(8, 8)])
    batches = []
    residual = unit.residual
    monkeypatch.setattr(unit, "residual", lambda x: batches.append(len(x)) or residual(x))
    with torch.no_grad():
        out = sparse.apply_unit(unit, u, mask, True)
    assert batches == [1]
    assert torch.equal(out[0], u[0]) and torch.equal(out[2], u[2])
    assert torch.allclose(out[1], u[1] + residual(u[1:2])[0], atol=1e-6, rtol=0)


def test_apply_unit_refuses_a_break_even_outside_zero_to_one():
    unit = BasicUnit(4, 4).eval()
    with pytest.raises(ValueError, match="break_even"):
        sparse.apply_unit(unit, torch.randn(1, 4, 8, 8), torch.ones(1, 8, 8), True, break_even=1.5)


# ----------------------------------------------------------------------------- the network

@pytest.mark.parametrize("method, mode, patch", [("sact", "act", 1), ("sact", "thresholded", 2),
                                                 ("psact", "relaxed", 1), ("psact", "discrete", 2)])
def test_sparse_network_through_the_block_path_equals_dense(method, mode, patch, monkeypatch):
    """``AdaptiveResNet(..., sparse=True)`` calls ``apply_unit``; forced onto the block path (break-even 1)
    and left at the default, its logits, FLOPs and halting maps equal the dense evaluation's."""
    torch.manual_seed(0)
    model = AdaptiveResNet(cifar_resnet(14, 10), SpatialHalting(method, patch=patch), input_size=(3, 16, 16))
    randomize_batch_norms(model, 10)
    g = gen(11)
    with torch.no_grad():
        for block in model.halting_units:
            for unit in block:
                unit.conv.weight.copy_(torch.randn(unit.conv.weight.shape, generator=g) * 0.3)
                unit.linear.bias.fill_(-0.5)
    x = torch.randn(3, 3, 16, 16, generator=g)
    calls = []
    block_residual = sparse.block_residual
    monkeypatch.setattr(sparse, "block_residual", lambda *args: calls.append(1) or block_residual(*args))
    with torch.no_grad():
        reference = model(x, mode=mode, generator=gen(12))
        default = model(x, mode=mode, sparse=True, generator=gen(12))
        monkeypatch.setattr(spatial, "apply_unit", functools.partial(sparse.apply_unit, break_even=1.0))
        forced = model(x, mode=mode, sparse=True, generator=gen(12))
    assert calls                                                     # partly active maps took the block path
    for out in (default, forced):
        assert torch.allclose(out.logits, reference.logits, atol=1e-5, rtol=0)
        assert torch.equal(out.flops, reference.flops)
        for a, b in zip(out.blocks, reference.blocks):
            assert torch.equal(a.units, b.units)
