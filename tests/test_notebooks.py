"""The notebooks: committed clean, parameterised for papermill, runnable in quick mode, results JSON.

The quick runs come from the session fixture ``quick_runs`` (tests/conftest.py), which runs
``make execute QUICK=1`` once per notebook of book/_toc.yml.
"""
from __future__ import annotations

import ast
import json
import math
from numbers import Real
from pathlib import Path

import nbformat
import pytest
from conftest import book_script

# Notebooks that train models: their results JSON must list runs. Any other notebook whose
# JSON has a "runs" key is checked the same way.
TRAINING_NOTEBOOKS = {"03_parity", "05_clevr", "06_spatial"}
REQUIRED_PARAMETERS = ("quick", "seed", "device", "results_path")
RUN_KEYS = ("method", "tau", "seed", "accuracy", "mean_steps", "max_steps")


def read_notebook(repo_root: Path, name: str) -> nbformat.NotebookNode:
    path = repo_root / "notebooks" / f"{name}.ipynb"
    if not path.exists():
        pytest.fail(f"{path.relative_to(repo_root)} is listed in book/_toc.yml but does not exist")
    return nbformat.read(path, as_version=4)


def test_committed_notebook_has_no_outputs(repo_root, repo_notebook):
    nb = read_notebook(repo_root, repo_notebook)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"notebooks/{repo_notebook}.ipynb is committed with outputs or execution "
                       f"counts in cells {dirty}; clear them (the book shows papermill's copy)")


def parameters_cell(nb: nbformat.NotebookNode, name: str) -> dict[str, object]:
    """The literal assignments of the one code cell tagged ``parameters``."""
    tagged = [cell for cell in nb.cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters', found {len(tagged)}"
    cell = tagged[0]
    assert cell.cell_type == "code", f"{name}: the 'parameters' cell must be a code cell"
    values = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and node.value is not None:
                    try:
                        values[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        values[target.id] = ast.unparse(node.value)
    return values


def test_parameters_cell(repo_root, repo_notebook):
    values = parameters_cell(read_notebook(repo_root, repo_notebook), repo_notebook)
    missing = [p for p in REQUIRED_PARAMETERS if p not in values]
    assert not missing, f"{repo_notebook}: the parameters cell does not define {missing}"
    expected = {"quick": False, "seed": 0, "device": "cpu",
                "results_path": f"build/results/{repo_notebook}.json"}
    for key, value in expected.items():
        assert values[key] == value and type(values[key]) is type(value), (
            f"{repo_notebook}: parameters cell has {key} = {values[key]!r}, the default must be {value!r}")


def test_papermill_documents_every_parameter(repo_root, repo_notebook):
    """`papermill --help-notebook` lists every parameter with its type and a one-line description."""
    import papermill

    values = parameters_cell(read_notebook(repo_root, repo_notebook), repo_notebook)
    inferred = papermill.inspect_notebook(str(repo_root / "notebooks" / f"{repo_notebook}.ipynb"))
    missing = [name for name in values if name not in inferred]
    assert not missing, f"{repo_notebook}: papermill does not see {missing} (an '=' in the comment hides a line)"
    undocumented = [name for name, about in inferred.items()
                    if about["inferred_type_name"] in ("None", "Unknown type") or not about["help"].strip()]
    assert not undocumented, f"{repo_notebook}: give {undocumented} a type annotation and a # description"


def test_quick_run_succeeds(quick_runs, toc_notebook, record_property):
    run = quick_runs[toc_notebook]
    assert run.returncode is not None, run.log
    record_property("quick_seconds", round(run.seconds, 1))
    assert run.returncode == 0, (
        f"{toc_notebook} failed in quick mode after {run.seconds:.1f} s:\n{run.tail()}")
    assert Path(run.executed).exists(), f"{toc_notebook}: no executed copy at {run.executed}"
    # The 90 s budget of a quick run is a speed target: the wall times are printed at the end
    # of the session and written to build/quick/timings.json, not asserted (no timed tests).


def test_quick_executed_copy_has_no_errors(quick_runs, toc_notebook):
    run = quick_runs[toc_notebook]
    if run.returncode != 0:
        pytest.fail(f"{toc_notebook} did not execute (see test_quick_run_succeeds)")
    nb = nbformat.read(run.executed, as_version=4)
    errors = [o.get("ename") for cell in nb.cells for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{toc_notebook}: error outputs {errors} in {run.executed}"
    injected = [c for c in nb.cells if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert injected and "quick = True" in injected[0].source, (
        f"{toc_notebook}: papermill did not inject quick = True after the parameters cell")


def is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def check_run(name: str, i: int, run: dict) -> None:
    where = f"{name} results, runs[{i}]"
    assert isinstance(run, dict), f"{where} is not an object: {run!r}"
    missing = [key for key in RUN_KEYS if key not in run]
    assert not missing, f"{where} lacks {missing}: {run}"
    assert isinstance(run["method"], str) and run["method"], f"{where}: method {run['method']!r}"
    assert run["tau"] is None or (is_number(run["tau"]) and run["tau"] >= 0), (
        f"{where}: tau {run['tau']!r} must be a number >= 0 (or null for no penalty)")
    assert isinstance(run["seed"], int) and not isinstance(run["seed"], bool), (
        f"{where}: seed {run['seed']!r} must be an integer")
    assert is_number(run["accuracy"]) and 0 <= run["accuracy"] <= 1, (
        f"{where}: accuracy {run['accuracy']!r} must lie in [0, 1]")
    assert is_number(run["mean_steps"]) and is_number(run["max_steps"]), (
        f"{where}: mean_steps {run['mean_steps']!r} and max_steps {run['max_steps']!r} must be numbers")
    assert 1 <= run["mean_steps"] <= run["max_steps"], (
        f"{where}: need 1 <= mean_steps <= max_steps, got {run['mean_steps']} and {run['max_steps']}")


def test_results_json(quick_runs, toc_notebook):
    run = quick_runs[toc_notebook]
    if run.returncode != 0:
        pytest.fail(f"{toc_notebook} did not execute (see test_quick_run_succeeds)")
    path = Path(run.results)
    assert path.exists(), f"{toc_notebook} did not write its results_path ({path})"
    results = json.loads(path.read_text())
    assert isinstance(results, dict), f"{path}: the results must be a JSON object"
    if toc_notebook in TRAINING_NOTEBOOKS:
        assert "runs" in results, f"{path}: a training notebook's results must have 'runs'"
    if "runs" not in results:
        return
    assert isinstance(results.get("parameters"), dict) and results["parameters"], (
        f"{path}: 'parameters' must be a non-empty object next to 'runs'")
    if "quick" in results["parameters"]:
        assert results["parameters"]["quick"] is True, f"{path}: ran with quick=True but recorded otherwise"
    assert isinstance(results["runs"], list) and results["runs"], f"{path}: 'runs' must be a non-empty list"
    for i, entry in enumerate(results["runs"]):
        check_run(toc_notebook, i, entry)


def test_parity_results_carry_tasks_difficulties_and_claims(quick_runs):
    """Chapter 3's rows say their task and size and give steps and accuracy by difficulty; its claims
    table, generated by the run, sits under measurements with one value per seed."""
    from adaptive.infra import claims

    run = quick_runs.get("03_parity")
    if run is None or run.returncode != 0:
        pytest.fail("03_parity did not execute (see test_quick_run_succeeds)")
    results = json.loads(Path(run.results).read_text())
    tasks = {row["task"] for row in results["runs"]}
    assert tasks == {"parity", "parity-extrapolation"}, tasks
    for row in results["runs"]:
        assert isinstance(row["size"], int) and set(row["steps_by_difficulty"]) == set(row["accuracy_by_difficulty"])
        assert {int(d) for d in row["steps_by_difficulty"]} == set(range(1, row["size"] + 1)), row["config"]
    table = results["measurements"]["claims"]
    assert table and all(set(claims.COLUMNS) <= set(row) and len(row["values"]) == len(row["holds_per_seed"])
                         for row in table)
    assert any(row["claim"].startswith("PonderNet extrapolates") for row in table)


def test_spatial_results_carry_the_shipped_seeds_and_claims(quick_runs):
    """Chapter 6 evaluates the longer recipe's shipped models at every seed, even in quick mode, and its
    claims table has one value per seed."""
    from adaptive.infra import claims
    from adaptive.spatial.pretrain import LONGER

    run = quick_runs.get("06_spatial")
    if run is None or run.returncode != 0:
        pytest.fail("06_spatial did not execute (see test_quick_run_succeeds)")
    results = json.loads(Path(run.results).read_text())
    longer = [row for row in results["runs"] if row.get("recipe") == "longer"]
    assert sorted((row["method"], row["seed"]) for row in longer) == sorted(
        (method, seed) for method in ("fixed", "sact", "psact") for seed in LONGER.seeds)
    assert all(row["pretrained"]["name"].startswith("spatial/longer/") for row in longer)
    assert all(0.5 <= row["total_auc"] <= 1 for row in longer if row["method"] != "fixed")
    table = results["measurements"]["claims"]
    assert table and all(set(claims.COLUMNS) <= set(row) and len(row["values"]) == len(LONGER.seeds)
                         for row in table)


# ----------------------------------------------------------------------------- Colab / Binder

INSTALL_MARKER = book_script("hide_cells").INSTALL_MARKER          # the cell the build collapses


def install_cell(repo_root: Path, name: str) -> str:
    cells = [c for c in read_notebook(repo_root, name).cells if c.cell_type == "code"]
    assert cells and cells[0].source.startswith(INSTALL_MARKER), \
        f"{name}: the first code cell must install the package on Colab ({INSTALL_MARKER!r})"
    return cells[0].source


def run_install_cell(source: str, monkeypatch, find_spec):
    """Execute the cell with importlib's find_spec and subprocess.run replaced; the commands it ran."""
    import importlib.util
    import subprocess

    commands = []
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: commands.append((command, kwargs)))
    exec(compile(source, "install cell", "exec"), {})
    return commands


def test_every_notebook_starts_with_the_same_install_cell(repo_root, repo_notebook):
    assert install_cell(repo_root, repo_notebook) == install_cell(repo_root, "01_halting_mechanisms")


def test_install_cell_installs_this_repository_without_naming_torch(repo_root, monkeypatch):
    import yaml

    config = yaml.safe_load((repo_root / "book" / "_config.yml").read_text())["repository"]
    source = install_cell(repo_root, "01_halting_mechanisms")

    def missing(name, *args):
        raise ModuleNotFoundError(name)

    commands = run_install_cell(source, monkeypatch, missing)
    assert len(commands) == 1
    command, kwargs = commands[0]
    assert command[1:4] == ["-m", "pip", "install"] and kwargs.get("check") is True
    assert command[-1] == f"adaptive @ git+{config['url']}@{config['branch']}"
    assert not any("torch" in part for part in command), "the install must leave an existing torch alone"


def test_install_cell_is_a_no_op_where_the_package_is_installed(repo_root, monkeypatch):
    import importlib.util

    source = install_cell(repo_root, "01_halting_mechanisms")
    assert run_install_cell(source, monkeypatch, importlib.util.find_spec) == []
    # another package called adaptive (PyPI has one) is not this book's: it has no adaptive.loop
    assert len(run_install_cell(source, monkeypatch, lambda name, *args: None)) == 1


@pytest.mark.slow
def test_a_bad_device_stops_a_chapter_before_any_compute(repo_root, tmp_path):
    """Chapter 4's set-up cell would run its benchmark; a device the machine lacks stops it first."""
    import papermill

    with pytest.raises(papermill.PapermillExecutionError, match="takes no index") as failure:
        papermill.execute_notebook(str(repo_root / "notebooks" / "04_performance.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"device": "cpu:7", "quick": True,
                                               "results_path": str(tmp_path / "r.json")},
                                   kernel_name="python3", cwd=str(repo_root), progress_bar=False)
    assert "benchmark.measure" not in str(failure.value.traceback), "the benchmark ran before the check"
