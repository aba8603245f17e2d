"""Chapter 3's pretrained grids (adaptive.parity.pretrain): recorded, verified, evaluated, and reproducible."""
import shlex
from collections import defaultdict
from pathlib import Path

import pytest

from adaptive.infra import pretrained
from adaptive.parity import pretrain

REPOSITORY = Path(__file__).resolve().parents[1]
TINY = pretrain.Grid("a test grid", methods=({"method": "act", "tau": 1e-3}, {"method": "pondernet", "tau": 1e-2,
                                                                             "eval_modes": ("discrete",)}),
                     seeds=(0, 1), common={"size": 4, "hidden": 8, "max_steps": 3, "updates": 20, "eval_every": 10,
                                           "eval_size": 200}, workers=1)


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(pretrain.GRIDS, "tiny", TINY)
    return "tiny"


def test_a_grid_is_recorded_with_its_command_and_evaluated_as_trained(tiny, tmp_path):
    assert pretrain.main([tiny, "--directory", str(tmp_path / "p"), "--checkpoint-dir", str(tmp_path / "c")]) == 0
    entries = pretrained.manifest(tmp_path / "p")
    names = [pretrain.name_of(tiny, config) for config in TINY.configs()]
    assert sorted(entries) == sorted(names) and pretrained.verify(tmp_path / "p") == []
    assert {entry["command"] for entry in entries.values()} == {"python -m adaptive.parity.pretrain tiny"}
    trained = pretrain.train(tiny, checkpoint_dir=tmp_path / "c", record=False)      # finished: read back
    evaluated = pretrain.evaluate_pretrained(tiny, tmp_path / "p")
    assert [row["accuracy"] for row in evaluated] == [row["accuracy"] for row in trained]
    assert [row["steps_by_difficulty"] for row in evaluated] == [row["steps_by_difficulty"] for row in trained]
    assert evaluated[0]["pretrained"]["name"] == names[0] and evaluated[0]["curve"] == trained[0]["curve"]


def test_the_first_updates_repeat_the_recorded_curve(tiny, tmp_path):
    pretrain.train(tiny, checkpoint_dir=tmp_path / "c", directory=tmp_path / "p")
    beginning = pretrain.train(tiny, updates=10, checkpoint_dir=tmp_path / "c10", record=False)
    for config in TINY.configs(updates=10):
        recorded = pretrained.manifest(tmp_path / "p")[pretrain.name_of(tiny, config)]["curve"]
        assert pretrain.row_of(beginning, config)["curve"] == recorded[:1]


def test_bad_grid_names_and_lengths_are_refused(tiny):
    with pytest.raises(ValueError, match="grid must be one of .*tiny.*got 'nope'"):
        pretrain.train("nope")
    with pytest.raises(ValueError, match="updates"):
        TINY.configs(updates=0)


def shipped_grids() -> dict[str, dict[str, dict]]:
    """The repository's recorded entries, by the grid their command trains."""
    grids = defaultdict(dict)
    for name, entry in pretrained.manifest(REPOSITORY / "pretrained").items():
        argv = shlex.split(entry["command"])
        if argv[:3] == ["python", "-m", "adaptive.parity.pretrain"]:
            grids[argv[3]][name] = entry
    return dict(grids)


@pytest.mark.slow
@pytest.mark.parametrize("grid", sorted(shipped_grids()))
def test_retraining_from_the_recorded_command_repeats_the_first_evaluation(grid, tmp_path):
    """The recorded command, cut to its first evaluations, repeats the recorded curve bit for bit on the machine
    that trained the models. Elsewhere it cannot: CPU kernels and thread layouts round differently, and parity's
    chaotic escape from the loss plateau amplifies it (on an Intel Xeon, AVX512, first16's ACT seed 0 had a
    training loss of 0.17 after 1000 updates, against 0.27 recorded where it was trained), so there the
    test is skipped, naming both machines."""
    entries = shipped_grids()[grid]
    first = next(iter(entries.values()))
    if not all(pretrained.same_machine(entry) for entry in entries.values()):
        pytest.skip(f"{grid} was recorded on {first['machine']}, this is {pretrained.machine()}: its digits differ")
    updates = first["config"]["eval_every"]                     # the first point of every curve
    rows = pretrain.train(grid, updates=updates, checkpoint_dir=tmp_path / "c", record=False)
    for config in pretrain.grid_named(grid).configs(updates):
        entry, curve = entries[pretrain.name_of(grid, config)], pretrain.row_of(rows, config)["curve"]
        recorded = [point for point in entry["curve"] if point["update"] <= updates]
        assert len(curve) == len(recorded) == 1
        assert curve == recorded
