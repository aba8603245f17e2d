"""adaptive.benchmark: the loop's training overhead and early-exit speed-up, for every method."""
import json

import pytest

from adaptive import benchmark, loop


@pytest.mark.slow
def test_benchmark_measures_every_mechanism(tmp_path):
    out = tmp_path / "bench.json"
    benchmark.main(["--width", "32", "--batch", "16", "--max-steps", "4", "--repeats", "1", "--json", str(out),
                    "--bf16"])                                 # ignored on the CPU, and recorded so
    result = json.loads(out.read_text())
    assert [r["mechanism"] for r in result["training"]] == ["plain", *loop.METHODS]
    for row in result["evaluation"]:
        assert 1 <= row["mean_steps"] <= 4 and row["ideal_speedup"] == pytest.approx(4 / row["mean_steps"])
    assert result["evaluation"][0]["mean_steps"] == 4          # fixed runs every step
    assert all(r["mean_steps"] < 4 for r in result["evaluation"][1:])   # the others exit early
    assert result["parameters"]["max_steps"] == 4 and result["parameters"]["bf16"] is False
