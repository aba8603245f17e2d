"""The generated one-object images and the ponder-coverage metric."""
from __future__ import annotations

import pytest
import torch

from adaptive.spatial import objects as sd


@pytest.fixture(scope="module")
def data():
    return sd.generate(2 * sd.BLOCK, seed=11)


def test_shapes_dtypes_and_ranges(data):
    images, labels, masks, boxes = data
    n = 2 * sd.BLOCK
    assert images.shape == (n, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert masks.shape == (n, 32, 32) and masks.dtype == torch.bool
    assert boxes.shape == (n, 4) and boxes.dtype == torch.int64
    assert images.min() >= 0 and images.max() <= 1
    assert set(labels.tolist()) == set(range(sd.NUM_CLASSES)) and len(sd.CLASSES) == 6


def test_same_seed_same_data_other_seed_other_data():
    a, b = sd.generate(40, seed=3), sd.generate(40, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.images, sd.generate(40, seed=4).images)


def test_example_depends_only_on_seed_and_index():
    long = sd.generate(2 * 400, seed=1)                  # crosses block boundaries
    short = sd.generate(400, seed=1)
    assert all(torch.equal(x[:400], y) for x, y in zip(long, short))
    middle = sd.generate(30, seed=1, start=370)
    assert all(torch.equal(x[370:400], y) for x, y in zip(long, middle))


def test_classes_are_balanced(data):
    counts = torch.bincount(data.labels, minlength=sd.NUM_CLASSES)
    assert counts.tolist() == [2 * sd.BLOCK // sd.NUM_CLASSES] * sd.NUM_CLASSES
    counts = torch.bincount(sd.generate(300, seed=2, start=100).labels)
    assert counts.min() >= 35 and counts.max() <= 65


def test_objects_are_small_and_inside_their_boxes(data):
    _, _, masks, boxes = data
    area = masks.sum(dim=(1, 2))
    assert area.min() >= 10 and area.max() <= 100          # 1 % to 10 % of the image
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert width.max() <= 10 and height.max() <= 10 and torch.maximum(width, height).min() >= 6
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.tolist()):
        assert mask[y0:y1, x0:x1].sum() == mask.sum()       # box holds the whole object
        assert mask[y0].any() and mask[y1 - 1].any() and mask[:, x0].any() and mask[:, x1 - 1].any()


def test_mask_is_exactly_where_the_object_changes_the_image():
    with_objects = sd.generate(200, seed=5)
    without = sd.generate(200, seed=5, draw_objects=False)
    changed = (with_objects.images - without.images).abs().amax(dim=1) > 0   # (N, 32, 32)
    assert torch.equal(changed, with_objects.masks)
    assert torch.equal(with_objects.labels, without.labels)
    # and the object stands out: at least 0.1 per channel on average from what it covers
    contrast = (with_objects.images - without.images).abs().sum(dim=(2, 3)) \
        / with_objects.masks.sum(dim=(1, 2))[:, None]
    assert contrast.min() > 0.1


def test_colour_does_not_tell_the_class(data):
    images, labels, masks, _ = data
    colour = (images * masks[:, None]).sum(dim=(2, 3)) / masks.sum(dim=(1, 2))[:, None]  # (N, 3)
    per_class = torch.stack([colour[labels == k].mean(dim=0) for k in range(sd.NUM_CLASSES)])
    assert (per_class - colour.mean(dim=0)).abs().max() < 0.08


def test_generate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        sd.generate(0, seed=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        sd.generate(5, seed=-1)
    with pytest.raises(ValueError, match="start must be an integer >= 0"):
        sd.generate(5, seed=0, start=1.5)


# ----------------------------------------------------------------------------- coverage


def test_a_map_equal_to_the_mask_scores_auc_one(data):
    masks = data.masks
    full = sd.object_coverage(masks.float() + 1, masks)
    assert full.auc == 1.0 and full.ratio == pytest.approx(2.0)
    cells = sd.downsample_mask(masks, 8, 8)
    coarse = sd.object_coverage(cells.float(), masks)
    assert coarse.auc == 1.0 and torch.equal(coarse.object_cells, cells)
    assert sd.object_coverage(1 - masks.float(), masks).auc == 0.0


def test_a_random_or_constant_map_scores_about_one_half(data):
    masks = data.masks
    noise = torch.rand(masks.shape[0], 16, 16, generator=torch.Generator().manual_seed(0))
    random = sd.object_coverage(noise, masks)
    assert abs(random.auc - 0.5) < 0.03 and abs(random.ratio - 1) < 0.05
    constant = sd.object_coverage(torch.ones(masks.shape[0], 4, 4), masks)
    assert constant.auc == 0.5 and constant.ratio == 1.0


def test_auc_matches_pairwise_counting_with_ties():
    g = torch.Generator().manual_seed(1)
    ponder = torch.randint(0, 4, (6, 8, 8), generator=g).float()     # many ties
    masks = torch.rand(6, 32, 32, generator=g) < 0.02
    result = sd.object_coverage(ponder, masks)
    for i in range(6):
        cells = result.object_cells[i].flatten()
        pos, neg = ponder[i].flatten()[cells], ponder[i].flatten()[~cells]
        if len(pos) == 0 or len(neg) == 0:
            assert torch.isnan(result.auc_per_image[i])
            continue
        greater = (pos[:, None] > neg[None, :]).double().mean()
        ties = (pos[:, None] == neg[None, :]).double().mean()
        assert result.auc_per_image[i].item() == pytest.approx((greater + ties / 2).item())


def test_coverage_rejects_mismatched_input(data):
    masks = data.masks[:4]
    with pytest.raises(ValueError, match="same number of images"):
        sd.object_coverage(torch.rand(3, 8, 8), masks)
    with pytest.raises(ValueError, match="must divide the mask size"):
        sd.object_coverage(torch.rand(4, 12, 12), masks)
    with pytest.raises(ValueError, match=r"ponder_map must be a floating tensor of shape \(N, H', W'\)"):
        sd.object_coverage(torch.rand(4, 1, 8, 8), masks)
    with pytest.raises(ValueError, match="masks must be a bool tensor"):
        sd.object_coverage(torch.rand(4, 8, 8), masks.float())
    with pytest.raises(ValueError, match="no image has both object and background cells"):
        sd.object_coverage(torch.rand(4, 1, 1), masks)


def test_the_total_ponder_map_repeats_each_cell_and_sums_the_blocks():
    coarse = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])                      # (1, 2, 2)
    fine = torch.ones(1, 4, 4)
    total = sd.total_ponder_map([coarse, fine], 4, 4)
    assert total.shape == (1, 4, 4)
    assert total[0, :2, :2].eq(2).all() and total[0, 2:, 2:].eq(5).all() and total.sum() == 4 * 10 + 16
    with pytest.raises(ValueError, match=r"block_maps\[1\] must be an \(N, H, W\) map"):
        sd.total_ponder_map([coarse, torch.ones(1, 3, 3)], 4, 4)
    with pytest.raises(ValueError, match="non-empty list"):
        sd.total_ponder_map([], 4, 4)
