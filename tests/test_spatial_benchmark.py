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
