"""The shared infrastructure: the trainer skeleton, the command-line builder, the process pool."""
import argparse
import functools
import io
import json
import pickle
import shlex
import struct
import zipfile
from dataclasses import dataclass

import pytest
import torch
from interrupt import stopped_after_a_save

from adaptive.infra import checkpoint, cli, pool, seeding
from adaptive.infra.trainer import Trainer

# ----------------------------------------------------------------------------- the trainer skeleton

class Counter:
    """A stand-in chapter: one unit adds the next number of a seeded stream to a running sum."""

    def __init__(self, path, total, eval_every=2, checkpoint_every=2, config=None):
        self.trainer = Trainer(path, config or {"seed": 0}, total=total, eval_every=eval_every,
                               checkpoint_every=checkpoint_every, progress=False)
        self.stream = torch.Generator().manual_seed(0)
        self.sum, self.trained = 0.0, []
        if self.trainer.saved:
            self.stream.set_state(self.trainer.saved["stream"])
            self.sum = self.trainer.saved["sum"]

    def train_unit(self, index):
        self.trained.append(index)
        self.sum += torch.rand(1, generator=self.stream).item()
        return self.sum

    def evaluate(self, report):
        return {"sum": report}

    def payload(self):
        return {"stream": self.stream.get_state(), "sum": self.sum}

    def run(self):
        return self.trainer.run(self.train_unit, self.evaluate, self.payload)


def test_evaluates_every_eval_every_units_and_after_the_last():
    run = Counter(None, total=7, eval_every=3)
    state = run.run()
    assert run.trained == list(range(7)) and state["update"] == 7
    assert [point["update"] for point in state["curve"]] == [3, 6, 7]
    assert list(state["curve"][0]) == ["update", "sum"]              # the unit count comes first


def test_saves_every_checkpoint_every_units_and_at_the_end(tmp_path, monkeypatch):
    saves = []
    original = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda path, payload: (saves.append(payload["state"]["update"]),
                                                                    original(path, payload)))
    Counter(tmp_path / "a.pt", total=7, eval_every=3, checkpoint_every=2).run()
    assert saves == [2, 4, 6, 7]                                     # not at the evaluations: at the interval
    saves.clear()
    Counter(tmp_path / "b.pt", total=6, eval_every=3, checkpoint_every=3).run()
    assert saves == [3, 6]                                           # the end was just saved
    saves.clear()
    Counter(tmp_path / "c.pt", total=2, checkpoint_every=500).run()
    assert saves == [2]                                              # a run shorter than the interval too


def test_another_checkpoint_interval_still_resumes(tmp_path):
    Counter(tmp_path / "run.pt", total=4, checkpoint_every=3).run()
    longer = Counter(tmp_path / "run.pt", total=6, checkpoint_every=1)
    assert longer.trainer.done == 4
    assert longer.run()["curve"] == Counter(None, total=6).run()["curve"] and longer.trained == [4, 5]


def test_an_interrupted_run_continues_where_it_stopped_to_the_same_result(tmp_path, monkeypatch):
    straight = Counter(None, total=5).run()
    with stopped_after_a_save(monkeypatch, match="stopped at update 2"):
        Counter(tmp_path / "run.pt", total=5).run()                    # stops after the save at unit 2
    resumed = Counter(tmp_path / "run.pt", total=5)
    assert resumed.trainer.done == 2
    state = resumed.run()
    assert resumed.trained == [2, 3, 4]
    assert state["curve"] == straight["curve"] and state["update"] == 5


def test_a_finished_run_trains_nothing_saves_nothing_and_keeps_its_time(tmp_path, monkeypatch):
    first = Counter(tmp_path / "run.pt", total=4).run()
    before = (tmp_path / "run.pt").read_bytes()
    monkeypatch.setattr(checkpoint, "save", lambda *args: pytest.fail("a finished run saved again"))
    again = Counter(tmp_path / "run.pt", total=4)
    state = again.run()
    assert again.trained == [] and state == first and state["seconds"] == first["seconds"] > 0
    assert (tmp_path / "run.pt").read_bytes() == before


def test_a_longer_total_extends_a_finished_run_and_time_accumulates(tmp_path):
    short = Counter(tmp_path / "run.pt", total=4).run()
    longer = Counter(tmp_path / "run.pt", total=6)
    state = longer.run()
    assert longer.trained == [4, 5] and state["curve"] == Counter(None, total=6).run()["curve"]
    assert state["seconds"] >= short["seconds"]


def test_refuses_another_configuration_or_more_units_than_asked(tmp_path):
    Counter(tmp_path / "run.pt", total=4, config={"seed": 0, "lr": 0.1}).run()
    with pytest.raises(ValueError, match=r"(?s)run\.pt.*lr: checkpoint has 0\.1, this run has 0\.2.*\n    rm "):
        Counter(tmp_path / "run.pt", total=4, config={"seed": 0, "lr": 0.2})
    with pytest.raises(ValueError, match=r"run\.pt already holds 4 updates, more than the 3"):
        Counter(tmp_path / "run.pt", total=3, config={"seed": 0, "lr": 0.1})


def test_extra_state_is_saved_and_restored_and_only_the_main_rank_writes(tmp_path):
    trainer = Trainer(tmp_path / "run.pt", {}, total=2, unit="epoch", progress=False, extra_state={"best": None})
    state = trainer.run(lambda index: index, lambda report: {"best": float(report)})
    assert state["epoch"] == 2 and state["best"] is None and [p["epoch"] for p in state["curve"]] == [1, 2]
    trainer.state["best"] = 1.0
    trainer.save(dict)
    assert Trainer(tmp_path / "run.pt", {}, total=2, unit="epoch").state["best"] == 1.0
    Trainer(tmp_path / "other.pt", {}, total=1, is_main=False, progress=False).run(lambda i: i, lambda r: {})
    assert not (tmp_path / "other.pt").exists()


@pytest.mark.parametrize("kwargs, name", [(dict(total=0), "total"), (dict(total=2, eval_every=0), "eval_every"),
                                          (dict(total=2, checkpoint_every=0), "checkpoint_every"),
                                          (dict(total=2, checkpoint_every=None), "checkpoint_every")])
def test_bad_schedules_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Trainer(None, {}, **kwargs)


# ----------------------------------------------------------------------------- refused checkpoints

class RunsCode:
    """Unpickled, it would create the file ``marker``: a foreign pickle that runs code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _write_foreign_pickle(path, marker):
    path.write_bytes(pickle.dumps({"config": {}, "state": {}, "code": RunsCode(marker)}))


def _write_foreign_torch_file_with_code(path, marker):
    torch.save({"config": {}, "state": {}, "code": RunsCode(marker)}, path)


def _flip_a_byte(real: bytes) -> bytes:
    """``real`` with one byte of its first stored tensor inverted, as a bad disk would leave it."""
    with zipfile.ZipFile(io.BytesIO(real)) as archive:
        member = next(info for info in archive.infolist() if "/data/" in info.filename)
    name_length, extra_length = struct.unpack("<HH", real[member.header_offset + 26:member.header_offset + 30])
    start = member.header_offset + 30 + name_length + extra_length               # past the local header
    return real[:start] + bytes([real[start] ^ 0xFF]) + real[start + 1:]


BROKEN = {                                          # how to spoil a checkpoint, and what the refusal says
    "empty": (lambda path, real, marker: path.write_bytes(b""), "it is empty"),
    "truncated": (lambda path, real, marker: path.write_bytes(real[:len(real) // 2]), "truncated or not a torch"),
    "damaged": (lambda path, real, marker: path.write_bytes(_flip_a_byte(real)), "damaged torch file"),
    "text": (lambda path, real, marker: path.write_text("not a checkpoint\n"), "truncated or not a torch file"),
    "foreign torch file": (lambda path, real, marker: torch.save([1, 2], path), "not a checkpoint of this package"),
    "foreign pickle": (lambda path, real, marker: _write_foreign_pickle(path, marker), "not a torch file"),
    "torch file with code": (lambda path, real, marker: _write_foreign_torch_file_with_code(path, marker),
                             "objects other than tensors"),
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_corrupt_or_foreign_checkpoint_is_refused_with_its_path_and_the_command_to_remove_it(tmp_path, kind):
    Counter(tmp_path / "real.pt", total=2).run()
    path, marker = tmp_path / "it's a run" / "checkpoint.pt", tmp_path / "code ran"
    path.parent.mkdir()
    spoil, problem = BROKEN[kind]
    spoil(path, (tmp_path / "real.pt").read_bytes(), marker)
    with pytest.raises(ValueError) as refusal:
        Counter(path, total=2)
    message = str(refusal.value)
    assert problem in message and str(path) in message and f"rm {shlex.quote(str(path))}" in message
    assert "starts afresh" in message and path.exists()              # refused, never removed behind the user's back
    assert not marker.exists()                                       # nothing in the file ran
    unsafe_loads = {"foreign pickle": lambda: pickle.loads(path.read_bytes()),
                    "torch file with code": lambda: torch.load(path, weights_only=False)}
    if kind in unsafe_loads:
        unsafe_loads[kind]()                                         # what an unsafe load would have done
        assert marker.exists()


# ----------------------------------------------------------------------------- the command-line builder

@dataclass(frozen=True)
class Example:
    name: str
    method: str = "dact"
    width: int = 8
    rate: float = 0.5
    gate: bool = False
    modes: tuple[str, ...] = ()
    milestones: tuple[float, ...] = (0.5, 0.75)
    limit: int | None = None
    extra: dict | None = None


def parse(argv):
    parser = cli.add_config_arguments(argparse.ArgumentParser(), Example, help_texts={"width": "units"},
                                      choices={"method": ("act", "dact"), "modes": ("a", "b")},
                                      parsers={"extra": json.loads})
    parser.add_argument("--out", default="x")
    return parser, vars(parser.parse_args(argv))


def test_cli_builds_one_flag_per_field_with_the_field_types():
    _, values = parse(["--name", "n", "--width", "16", "--rate", "0.25", "--gate", "--modes", "a", "b",
                       "--milestones", "0.6", "--limit", "3", "--extra", '{"memory": 0.1}'])
    config = cli.config_from(Example, values)
    assert config == Example("n", "dact", 16, 0.25, True, ("a", "b"), (0.6,), 3, {"memory": 0.1})
    assert values["out"] == "x"                                       # not a field: left to the caller


def test_cli_keeps_the_defaults_and_none():
    _, values = parse(["--name", "n", "--no-gate"])
    assert cli.config_from(Example, values) == Example("n")


def test_cli_help_names_the_defaults(capsys):
    parser, _ = parse(["--name", "n"])
    text = " ".join(parser.format_help().split())
    assert "units (default 8)" in text and "(default (0.5, 0.75))" in text and "--no-gate" in text


@pytest.mark.parametrize("argv", [[], ["--name", "n", "--method", "pact"], ["--name", "n", "--modes", "c"],
                                  ["--name", "n", "--width", "wide"]])
def test_cli_refuses_missing_required_fields_and_bad_values(argv):
    with pytest.raises(SystemExit):
        parse(argv)


def test_config_from_turns_lists_back_into_tuples():
    assert cli.config_from(Example, {"name": "n", "modes": ["a"], "milestones": [0.1]}).modes == ("a",)


# ----------------------------------------------------------------------------- the process pool

def threads_and_square(number: int) -> tuple[int, int]:
    return torch.get_num_threads(), number * number


def test_pool_keeps_the_order_and_gives_each_worker_one_thread():
    results = pool.map_in_processes(threads_and_square, [3, 1, 2, 5], workers=2)
    assert [square for _, square in results] == [9, 1, 4, 25]
    assert all(threads == 1 for threads, _ in results)


def test_pool_of_one_worker_runs_in_this_process():
    calls = []
    assert pool.map_in_processes(functools.partial(lambda x, y: calls.append(x) or x + y, y=1), [1, 2]) == [2, 3]
    assert calls == [1, 2]                                            # a lambda cannot travel to a process
    with pytest.raises(ValueError, match="workers"):
        pool.map_in_processes(threads_and_square, [1], workers=0)


# ----------------------------------------------------------------------------- seeding


def test_derived_seeds_depend_on_every_number_and_their_order():
    numbers = [(0, 1), (1, 0), (0, 2), (0, 1, 0), (1,), (0,), (0, 0), (5, 3), (5, 3, 0), (5, 3, 0, 0)]
    seeds = {seeding.derive_seed(*n) for n in numbers}       # trailing zeros matter too
    assert len(seeds) == len(numbers) and all(0 <= s < 2 ** 64 for s in seeds)
    assert seeding.derive_seed(3, 7) == seeding.derive_seed(3, 7)


def test_generators_from_the_same_numbers_draw_the_same_stream():
    first, again, other = seeding.generator(5, 2), seeding.generator(5, 2), seeding.generator(5, 3)
    draws = torch.rand(8, generator=first)
    assert torch.equal(draws, torch.rand(8, generator=again))
    assert not torch.equal(draws, torch.rand(8, generator=other))


def test_the_layers_import_downwards_only():
    """Chapters import no other chapter, infra no chapter, mechanisms neither loop nor infra;
    no module imports another module's private name."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "adaptive"
    chapters = {"parity", "clevr", "spatial"}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts     # ("adaptive", "clevr", "train")
        here = parts[1] if len(parts) > 2 else None                         # the subpackage, if any
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = parts[:-1]                                               # the module's package
            if node.level:
                target = list(base[:len(base) - node.level + 1]) + (node.module.split(".") if node.module else [])
            else:
                target = node.module.split(".")
            if target[0] != "adaptive":
                continue
            names = [target[1]] if len(target) > 1 else [alias.name for alias in node.names]
            for name in names:
                if name in chapters and here != name:
                    raise AssertionError(f"{path.relative_to(package.parent)} imports chapter {name}")
            if here == "infra" or (here is None and parts[-1] in ("act", "dact", "pact", "pondernet")):
                assert not set(names) & (chapters | {"loop", "benchmark"}), f"{path} imports upwards: {names}"
            for alias in node.names:
                assert not alias.name.startswith("_") or alias.name == "_checks", \
                    f"{path.relative_to(package.parent)} imports the private name {alias.name}"


# ----------------------------------------------------------------------------- notebook helpers


def test_checks_keep_plain_numbers_and_glue_them(monkeypatch):
    import myst_nb
    import numpy as np

    from adaptive.infra import notebook

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: glued.setdefault(name, value))
    checks = notebook.Checks()
    assert checks.record("a", torch.tensor(0.5)) == 0.5
    assert checks.record("b", np.int64(3)) == 3 and type(checks["b"]) is int
    assert checks.record("c", np.bool_(True)) is True
    assert checks.record("d", 2) == 2 and type(checks["d"]) is int
    assert json.loads(json.dumps(checks)) == {"a": 0.5, "b": 3, "c": True, "d": 2} == glued


def test_finish_saves_a_figure_only_when_asked(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adaptive.infra import notebook

    monkeypatch.setattr(plt, "show", lambda: None)
    notebook.finish(plt.figure(), "kept", fig_dir=str(tmp_path / "figures"))
    notebook.finish(plt.figure(), "not kept")
    assert [p.name for p in (tmp_path / "figures").iterdir()] == ["kept.png"]
    first, again = notebook.generator(3, 1), notebook.generator(3, 1)
    assert torch.equal(torch.rand(4, generator=first), torch.rand(4, generator=again))


@pytest.mark.parametrize("value, match", [
    ("cpu:7", "takes no index"), ("gpu", "name a torch device"), (3, "must be a string"), ("meta", "'cpu' or 'cuda'"),
] + ([] if torch.cuda.is_available() else [("cuda", "sees no CUDA GPU"), ("cuda:1", "sees no CUDA GPU")]))
def test_a_bad_device_is_refused_with_what_to_do(value, match):
    from adaptive.infra import notebook

    with pytest.raises(ValueError, match=match):
        notebook.check_device(value)
    assert notebook.check_device("cpu") == torch.device("cpu")


def test_output_paths_are_created_and_test_written_up_front(tmp_path):
    from adaptive.infra import notebook

    path = notebook.check_output(tmp_path / "new" / "results.json")
    assert path.parent.is_dir() and not path.exists() and list(path.parent.iterdir()) == []
    assert notebook.check_output(tmp_path / "figures", "fig_dir", folder=True).is_dir()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(ValueError, match=r"results_path = .*cannot be written"):
        notebook.check_output(blocked / "results.json")                 # its folder would be a file


def test_a_save_removes_what_a_killed_save_left_beside_the_checkpoint(tmp_path):
    from adaptive.infra import checkpoint

    path = tmp_path / "checkpoint.pt"
    left = tmp_path / "checkpoint.pt8f3k2x.tmp"                  # the temporary file of a save killed mid-write
    left.write_bytes(b"half a checkpoint")
    other = tmp_path / "other.pt1a2b3c.tmp"                       # another checkpoint's write: not ours
    other.write_bytes(b"")
    checkpoint.save(path, {"config": {}, "state": {}})
    assert checkpoint.read(path) == {"config": {}, "state": {}}
    assert not left.exists() and other.exists()


def test_main_first_makes_on_the_main_rank_and_raises_its_error_there():
    import pytest

    from adaptive.infra import distributed
    alone = distributed.Context()
    assert distributed.main_first(alone, lambda: 42) == 42

    def broken():
        raise ValueError("no vocabulary")
    with pytest.raises(ValueError, match="no vocabulary"):
        distributed.main_first(alone, broken)
