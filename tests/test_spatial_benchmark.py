"""The spatial benchmark prints a measured table; these tests check its shape, not its speed."""
import json
import math

import pytest
import torch

from adaptive.infra.benchmarking import median_seconds
from adaptive.spatial import benchmark as spatial_benchmark

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_method_gets_a_row_of_positive_rates_and_its_flops():
    result = spatial_benchmark.measure(depth=14, batch=4, repeats=1)
    assert [row["method"] for row in result["rows"]] == list(spatial_benchmark.METHODS)
    for row in result["rows"]:
        for key in ("train_images_per_s", "eval_dense_images_per_s", "eval_sparse_images_per_s",
                    "projected_recipe_hours"):
            assert math.isfinite(row[key]) and row[key] > 0
    ratios = {row["method"]: row["eval_flops_ratio"] for row in result["rows"]}
    assert ratios["fixed"] == 1.0
    assert ratios["psact"] < 1.0                     # bias 0: h near 0.5, positions halt
    assert result["config"]["depth"] == 14 and result["config"]["torch"] == torch.__version__


def test_halting_bias_minus_three_computes_everything():
    result = spatial_benchmark.measure(depth=14, batch=2, repeats=1, methods=("sact",), halting_bias=-3.0)
    assert result["rows"][0]["eval_flops_ratio"] > 1.0   # every unit plus the halting branches


def test_command_line_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    spatial_benchmark.main(["--depth", "14", "--batch", "2", "--repeats", "1", "--methods", "fixed", "sact",
                            "--json", str(out)])
    printed = capsys.readouterr().out
    assert "| fixed |" in printed and "| sact |" in printed and "eval sparse img/s" in printed
    assert [row["method"] for row in json.loads(out.read_text())["rows"]] == ["fixed", "sact"]


def test_unknown_method_is_refused_by_name():
    with pytest.raises(ValueError, match="methods"):
        spatial_benchmark.measure(depth=14, batch=2, repeats=1, methods=("sparse",))


def test_median_seconds_warms_up_once_then_takes_the_median():
    calls = []
    seconds = median_seconds(lambda: calls.append(1), repeats=3)
    assert len(calls) == 4 and 0 <= seconds < 1
    with pytest.raises(ValueError, match="repeats"):
        median_seconds(lambda: None, repeats=0)


# ----------------------------------------------------------------------------- the sparsity sweep

def test_blob_masks_hit_the_fraction_exactly_in_clustered_blobs():
    masks = spatial_benchmark.blob_masks(4, 32, 32, 0.3, torch.Generator().manual_seed(0))
    assert masks.shape == (4, 32, 32) and set(masks.unique().tolist()) == {0.0, 1.0}
    assert masks.sum(dim=(1, 2)).tolist() == [round(0.3 * 32 * 32)] * 4
    # blobs: an active position's right neighbour is mostly active (uniform noise: 0.3 of the time)
    right = masks[:, :, 1:][masks[:, :, :-1] > 0]
    assert right.mean() > 0.8
    again = spatial_benchmark.blob_masks(4, 32, 32, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)
    assert spatial_benchmark.blob_masks(1, 8, 8, 1.0, torch.Generator()).eq(1).all()


def test_sparsity_sweep_gives_a_row_per_shape_and_fraction():
    result = spatial_benchmark.sparsity_sweep(shapes=((2, 4, 16), (1, 8, 12)), fractions=(0.2, 1.0), rounds=1,
                                              min_seconds=0.0)
    rows = result["rows"]
    assert [(row["map_size"], row["channels"]) for row in rows] == [(16, 4), (16, 4), (12, 8), (12, 8)]
    for row in rows:
        for key in ("dense_seconds", "sparse_seconds", "blocks_seconds", "ratio", "blocks_ratio"):
            assert math.isfinite(row[key]) and row[key] > 0
        assert row["spread"] >= 0 and row["blocks_spread"] >= 0
        assert 0 < row["active_fraction"] <= row["computed_fraction"] <= 1
        assert row["path"] in ("dense", "blocks")
    assert [row["active_fraction"] for row in rows[:2]] == [pytest.approx(0.2, abs=0.01), 1.0]
    assert rows[1]["path"] == "dense"                                 # every position active
    assert result["config"]["break_even"] == spatial_benchmark.sparse.BREAK_EVEN
    table = spatial_benchmark.sweep_markdown(result)
    assert table.count("\n") == 1 + len(rows) and "| 16x16 | 4 | 2 |" in table


def test_sparsity_sweep_refuses_a_fraction_outside_zero_to_one():
    with pytest.raises(ValueError, match="fractions"):
        spatial_benchmark.sparsity_sweep(shapes=((1, 4, 8),), fractions=(0.0,), rounds=1)


def test_command_line_sparsity_sweep_writes_the_rows(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(spatial_benchmark, "QUICK_SWEEP_SHAPES", ((1, 4, 16),))
    out = tmp_path / "sweep.json"
    spatial_benchmark.main(["--sparsity-sweep", "--quick", "--repeats", "1", "--min-seconds", "0",
                            "--json", str(out)])
    printed = capsys.readouterr().out
    assert "sparse / dense (spread)" in printed and "| 16x16 | 4 | 1 |" in printed
    written = json.loads(out.read_text())
    assert [row["active_fraction"] for row in written["rows"]] == [
        pytest.approx(f, abs=0.01) for f in spatial_benchmark.QUICK_SWEEP_FRACTIONS]
    assert written["config"]["quick"] and written["config"]["rounds"] == 1
