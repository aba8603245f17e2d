"""Every chapter checks its parameters in its set-up cell, before any compute (issue 14, item 1).

The unit tests cover ``adaptive.infra.notebook``'s checks; the chapter tests run a chapter's
parameters cell, the values papermill would inject and its set-up cell in this process (the
set-up cell is plain Python), so a bad value is seen to stop the chapter there. One papermill
run checks the same through a real kernel.
"""
from __future__ import annotations

import warnings

import nbformat
import pytest

from adaptive.infra import notebook
from adaptive.infra.notebook import at_least, below, greater_than, one_of


def namespace(cell: str, **injected) -> dict:
    """The globals of a notebook after its parameters ``cell`` and papermill's injected values."""
    values: dict = {}
    exec(compile(cell, "parameters cell", "exec", dont_inherit=True), values)   # not this file's __future__
    values.update(injected)
    return values


PARAMETERS = '''
quick: bool = False
seed: int = 0
lr: float = 0.1
name: str = "mini"
taus: list[float] = [0.1]
depths: list[int] = None
dropout: float = 0.0
'''


@pytest.mark.parametrize("injected, message", [
    ({"seed": "abc"}, "parameter seed = 'abc' (str): must be int; pass one with -p seed VALUE"),
    ({"seed": 1.5}, "seed = 1.5 (float): must be int"),
    ({"seed": True}, "seed = True (bool): must be int"),
    ({"quick": 1}, "quick = 1 (int): must be bool"),
    ({"lr": float("nan")}, "lr = nan (float): must be float"),
    ({"lr": "fast"}, "lr = 'fast' (str): must be float"),
    ({"taus": "[0.1, oops"}, "taus = '[0.1, oops' (str): must be list of float; pass a list, e.g. -p taus"),
    ({"taus": []}, "taus = []: must be a list of at least one value"),
    ({"taus": [0.1, "x"]}, "must be list of float"),
    ({"depths": [1, 2.5]}, "depths = [1, 2.5] (list): must be list of int"),
    ({"dropout": None}, "dropout = None (NoneType): must be float;"),
])
def test_a_parameter_of_the_wrong_type_is_refused_with_its_name_value_and_remedy(injected, message):
    values = namespace(PARAMETERS, **{"depths": [1], **injected})
    with pytest.raises(ValueError, match="parameter ") as refused:
        notebook.check_parameters(values)
    assert message in str(refused.value)


def test_right_types_pass_and_a_list_given_as_text_is_read():
    values = namespace(PARAMETERS, depths=[1, 2], lr=1, taus="[0.5, 1e-3]")   # an int is a float
    notebook.check_parameters(values, optional=("dropout",), lr=greater_than(0), taus=at_least(0))
    assert values["taus"] == [0.5, 0.001]
    values = namespace(PARAMETERS, depths=[1], dropout=None)
    notebook.check_parameters(values, optional=("dropout",), dropout=(at_least(0), below(1)))


@pytest.mark.parametrize("rules, message", [
    ({"seed": at_least(1)}, "parameter seed = 0: must be >= 1; pass one with -p seed VALUE"),
    ({"lr": greater_than(0.5)}, "lr = 0.1: must be > 0.5"),
    ({"lr": (greater_than(0), below(0.05))}, "lr = 0.1: must be < 0.05"),
    ({"name": one_of("clevr", "gqa")}, "name = 'mini': must be one of 'clevr', 'gqa'"),
    ({"taus": at_least(0.5)}, "taus = [0.1]: must be a list of values each >= 0.5 (it holds 0.1)"),
])
def test_a_value_outside_its_range_is_refused(rules, message):
    with pytest.raises(ValueError) as refused:
        notebook.check_parameters(namespace(PARAMETERS, depths=[1]), **rules)
    assert message in str(refused.value)


def test_a_rule_for_no_parameter_is_a_mistake_of_the_chapter():
    with pytest.raises(KeyError, match="'sead'"):
        notebook.check_parameters(namespace(PARAMETERS, depths=[1]), sead=at_least(0))


def test_mode_default_keeps_what_the_user_passed():
    assert notebook.mode_default(True, None, 2000, 200) == 200
    assert notebook.mode_default(False, None, 2000, 200) == 2000
    assert notebook.mode_default(True, 2000, 2000, 200) == 2000       # passed: kept, even in quick mode
    assert notebook.mode_default(True, [0.5], [1e-3, 1e-2], [1e-2]) == [0.5]


def test_warn_if_long_warns_with_the_estimate_only_far_above_the_default():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert notebook.warn_if_long({"updates": 4000, "max_steps": 8}, {"updates": 2000, "max_steps": 8}) == 2
    with pytest.warns(UserWarning, match=r"about 375 times the work .*updates 100000 \(default 2000\), "
                                         r"max_steps 60 \(default 8\)"):
        notebook.warn_if_long({"updates": 100_000, "max_steps": 60}, {"updates": 2000, "max_steps": 8})


# ----------------------------------------------------------------------------------------------
# The chapters' set-up cells

def chapter_cells(repo_root, name: str) -> tuple[str, str]:
    """The parameters cell and the set-up cell (the code cell after it) of a chapter."""
    cells = [cell for cell in nbformat.read(repo_root / "notebooks" / f"{name}.ipynb", as_version=4).cells
             if cell.cell_type == "code"]
    index = next(i for i, cell in enumerate(cells) if "parameters" in cell.metadata.get("tags", []))
    return cells[index].source, cells[index + 1].source


def run_set_up(repo_root, tmp_path, name: str, **injected) -> dict:
    """Run a chapter's parameters cell, ``injected`` and its set-up cell here; its globals."""
    parameters, set_up = chapter_cells(repo_root, name)
    outputs = {"results_path": str(tmp_path / "results.json")}
    if "checkpoint_dir" in parameters:
        outputs["checkpoint_dir"] = str(tmp_path / "checkpoints")
    values = namespace(parameters, **{**outputs, **injected})
    exec(compile(set_up, f"{name}: set-up cell", "exec", dont_inherit=True), values)
    return values


@pytest.mark.parametrize("name, injected, message", [
    ("01_halting_mechanisms", {"eps": 1.5}, "parameter eps = 1.5: must be < 1"),
    ("01_halting_mechanisms", {"seed": -1}, "parameter seed = -1: must be >= 0"),
    ("02_dact_bound", {"quick": "yes"}, "parameter quick = 'yes' (str): must be bool"),
    ("03_parity", {"seed": "abc"}, "parameter seed = 'abc' (str): must be int"),
    ("03_parity", {"taus": [0.01, -1.0]}, "taus = [0.01, -1.0]: must be a list of values each > 0"),
    ("03_parity", {"workers": 0}, "parameter workers = 0: must be >= 1"),
    ("04_performance", {"max_steps": 0}, "parameter max_steps = 0: must be >= 1"),
    ("04_performance", {"width": 2.5}, "parameter width = 2.5 (float): must be int"),
    ("05_clevr", {"features": "foo"}, "features = 'foo': must be one of 'attributes', 'pixels'"),
    ("05_clevr", {"dataset": "clevr", "data_dir": "/nonexistent/clevr"}, "data_dir = '/nonexistent/clevr'"),
    ("05_clevr", {"ema": 1.0}, "parameter ema = 1.0: must be < 1"),
    ("06_spatial", {"sact_taus": [-0.1]}, "sact_taus = [-0.1]: must be a list of values each >= 0"),
    ("06_spatial", {"variance_patches": [3]}, "must be a list of values each one of 1, 2, 4, 8 (it holds 3)"),
    ("06_spatial", {"bf16": True}, "bf16 = True: bfloat16 autocast runs on CUDA only"),
    ("06_spatial", {"quick": True, "updates": 0}, "parameter updates = 0: must be >= 1"),
])
def test_a_chapter_refuses_a_bad_parameter_in_its_set_up_cell(repo_root, tmp_path, monkeypatch, name, injected,
                                                              message):
    monkeypatch.chdir(repo_root)
    with pytest.raises(ValueError) as refused:
        run_set_up(repo_root, tmp_path, name, **injected)
    assert message in str(refused.value)


def test_quick_mode_keeps_the_values_the_user_passed(repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_root)
    values = run_set_up(repo_root, tmp_path, "03_parity", quick=True, updates=50, taus="[0.01, 0.1]")
    assert values["updates"] == 50 and values["taus"] == [0.01, 0.1]
    assert values["n_seeds"] == 1 and values["fixed_depths"] == [1, values["max_steps"]]   # not passed: quick's
    values = run_set_up(repo_root, tmp_path, "03_parity")
    assert values["updates"] == 2000 and values["n_seeds"] == 3


def test_a_chapter_warns_before_very_long_work(repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_root)
    with pytest.warns(UserWarning, match=r"times the work of the chapter's default run \(updates 100000"):
        run_set_up(repo_root, tmp_path, "03_parity", updates=100_000, max_steps=30)


@pytest.mark.slow
def test_papermill_stops_a_chapter_in_its_set_up_cell(repo_root, tmp_path):
    """Through papermill and a kernel: a bad value stops chapter 5 before it generates any data."""
    import papermill

    data_dir = tmp_path / "data"
    with pytest.raises(papermill.PapermillExecutionError, match="features = 'foo'") as failure:
        papermill.execute_notebook(str(repo_root / "notebooks" / "05_clevr.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"quick": True, "features": "foo", "data_dir": str(data_dir),
                                               "results_path": str(tmp_path / "r.json"),
                                               "checkpoint_dir": str(tmp_path / "checkpoints")},
                                   kernel_name="python3", cwd=str(repo_root), progress_bar=False)
    assert "check_parameters" in str(failure.value.traceback)
    assert not any(tmp_path.glob("data*")), "mini-CLEVR was generated before the check"


# ----------------------------------------------------------------------------------------------
# The trainers and benchmarks refuse a device this machine lacks, before any compute

def _entry_points():
    from adaptive import benchmark
    from adaptive.clevr import benchmark as clevr_benchmark
    from adaptive.infra import distributed
    from adaptive.parity import train as parity_train
    from adaptive.spatial import benchmark as spatial_benchmark

    return {"adaptive.benchmark.measure": lambda device: benchmark.measure(width=8, batch=4, device=device),
            "adaptive.clevr.benchmark.measure": lambda device: clevr_benchmark.measure(device=device),
            "adaptive.spatial.benchmark.measure": lambda device: spatial_benchmark.measure(depth=20, device=device),
            "adaptive.parity.train.train": lambda device: parity_train.train(
                parity_train.RunConfig("act", updates=1), device=device, progress=False),
            "the CLEVR and spatial trainers (distributed.setup)": lambda device: distributed.setup(device)}


@pytest.mark.parametrize("device, message", [("cpu:7", "the CPU takes no index"), ("gpu", "name a torch device"),
                                             ("cuda:9", "torch sees")])
@pytest.mark.parametrize("entry", list(_entry_points()))
def test_every_trainer_and_benchmark_refuses_a_device_this_machine_lacks(entry, device, message):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 9:
        pytest.skip("this machine has a tenth GPU")
    with pytest.raises(ValueError, match=message):
        _entry_points()[entry](device)
