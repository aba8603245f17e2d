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
    assert all(isinstance(r["early_exit_pays"], bool) and r["unrolled_speedup"] > 0 for r in result["evaluation"])
    assert all(r["auto_speedup"] > 0 and 0 <= r["auto_fell_back"] <= 1 for r in result["evaluation"])
    assert all(r["mean_steps"] < 4 for r in result["evaluation"][1:])   # the others exit early
    assert result["parameters"]["max_steps"] == 4 and result["parameters"]["bf16"] is False
    for row in result["training"]:
        assert row["ratio_spread"] >= 0
    for row in result["evaluation"]:                           # every ratio comes with its spread
        assert row["realised_spread"] >= 0 and row["fraction_of_achievable_spread"] >= 0


def test_quick_never_replaces_a_size_the_user_gave(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(benchmark, "measure", lambda *args: seen.setdefault("args", args) and {})
    monkeypatch.setattr(benchmark, "markdown", lambda result: "")
    monkeypatch.setattr(benchmark, "write_report", lambda *args: None)
    benchmark.main(["--quick", "--width", "64", "--json", str(tmp_path / "b.json")])
    width, batch, _, repeats = seen["args"][:4]
    assert (width, batch, repeats) == (64, benchmark.QUICK["batch"], benchmark.QUICK["repeats"])


def test_a_size_below_one_is_refused_before_any_compute(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--quick", "--batch", "0"])
    assert "--batch must be >= 1, got 0" in capsys.readouterr().err


def test_a_benchmark_command_restarts_itself_with_a_steady_allocator(tmp_path):
    """steady_allocator replaces the process with the same command under STEADY_ALLOCATOR, once; a
    variable the user set is kept."""
    import json
    import os
    import subprocess
    import sys

    from adaptive.infra import benchmarking
    (tmp_path / "probe.py").write_text("import json, sys\nfrom adaptive.infra import benchmarking\n"
                                       "print(json.dumps([sys.argv[1:], benchmarking.allocator()]))\n")
    start = "import sys; from adaptive.infra import benchmarking; benchmarking.steady_allocator('probe'); print('no')"
    environment = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(tmp_path), environment.get("PYTHONPATH", "")])
    ran = subprocess.run([sys.executable, "-c", start, "--quick"], env=environment, capture_output=True, text=True,
                         check=True, timeout=120)
    assert json.loads(ran.stdout) == [["--quick"], benchmarking.STEADY_ALLOCATOR]
    mine = {**environment, **benchmarking.STEADY_ALLOCATOR, "MALLOC_TRIM_THRESHOLD_": "1"}
    ran = subprocess.run([sys.executable, "-c", start], env=mine, capture_output=True, text=True, check=True,
                         timeout=120)
    assert ran.stdout.strip() == "no"                   # already set: not restarted, the user's value kept
