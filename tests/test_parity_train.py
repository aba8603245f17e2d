"""Training runs: reproducible, checkpointed atomically, resumable; results files."""
import json

import pytest
import torch
from interrupt import stopped_after_a_save

from adaptive import numerics
from adaptive.infra import checkpoint, results
from adaptive.parity import train as training

TINY = dict(size=4, hidden=8, max_steps=3, updates=6, batch_size=16, eval_size=32, eval_every=3)


def test_a_run_reports_every_required_field():
    rows = training.train(training.RunConfig("pact", tau=0.01, eval_modes=("thresholded", "relaxed"), **TINY),
                          progress=False)
    assert [r["eval_mode"] for r in rows] == ["thresholded", "relaxed"]
    for row in rows:
        for key in results.REQUIRED:
            assert key in row
        assert 0 <= row["accuracy"] <= 1 and row["max_steps"] == 3
        assert 1 <= row["mean_steps"] <= row["observed_max_steps"] <= row["max_steps"]
        assert [point["update"] for point in row["curve"]] == [3, 6]


def test_same_seed_same_result():
    config = training.RunConfig("dact", tau=0.01, **TINY)
    first, second = (training.train(config, progress=False)[0] for _ in range(2))
    assert first["curve"] == second["curve"] and first["accuracy"] == second["accuracy"]


def _saved(folder, config):
    return checkpoint.read(folder / f"{config.key()}.pt")


def test_interrupted_run_resumes_to_the_same_model(tmp_path, monkeypatch):
    config = training.RunConfig("act", tau=0.01, **TINY)
    straight = training.train(config, progress=False)[0]
    with stopped_after_a_save(monkeypatch, match="stopped at update 2"):       # right after that checkpoint
        training.train(config, checkpoint_dir=tmp_path, progress=False, checkpoint_every=2)
    assert _saved(tmp_path, config)["state"]["update"] == 2
    resumed = training.train(config, checkpoint_dir=tmp_path, progress=False, checkpoint_every=2)[0]
    assert resumed["accuracy"] == straight["accuracy"] and resumed["curve"] == straight["curve"]


def test_a_run_shorter_than_the_checkpoint_interval_saves_its_end(tmp_path):
    config = training.RunConfig("dact", tau=0.01, **TINY)                  # 6 updates
    training.train(config, checkpoint_dir=tmp_path, progress=False, checkpoint_every=500)
    assert _saved(tmp_path, config)["state"]["update"] == 6


def test_more_updates_extend_a_finished_run_to_the_longer_run_and_fewer_are_refused(tmp_path, monkeypatch):
    """20 updates, then 40 in the same folder under another checkpoint interval: only the last 20 are
    trained, and the model is the straight 40-update run's, bit for bit. PACT trains on relaxed
    samples and evaluates on discrete ones, and eval_every = 3 puts an extra evaluation at update 20:
    the evaluations must not draw from the training's generator."""
    short, long = (training.RunConfig("pact", tau=0.01, eval_modes=("discrete",), **(TINY | {"updates": n}))
                   for n in (20, 40))
    assert short.key() == long.key()                              # one checkpoint, whatever the length
    straight = training.train(long, checkpoint_dir=tmp_path / "straight", progress=False)[0]
    training.train(short, checkpoint_dir=tmp_path / "extended", progress=False, checkpoint_every=7)
    batches, sample = [], training.Parity.sample

    def counted(task, n, generator, split="train"):
        batches.extend([n] if split == "train" else [])
        return sample(task, n, generator, split=split)
    monkeypatch.setattr(training.Parity, "sample", counted)
    extended = training.train(long, checkpoint_dir=tmp_path / "extended", progress=False, checkpoint_every=3)[0]
    assert batches == [16] * 20                                   # one batch per update still to do
    a, b = (_saved(tmp_path / name, long)["model"] for name in ("straight", "extended"))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert extended["accuracy"] == straight["accuracy"] and extended["mean_steps"] == straight["mean_steps"]
    assert [p for p in extended["curve"] if p["update"] != 20] == straight["curve"]   # the short run's end, more
    with pytest.raises(ValueError, match=r"already holds 40 updates, more than the 10 updates asked for"):
        training.train(training.RunConfig("pact", tau=0.01, eval_modes=("discrete",), **(TINY | {"updates": 10})),
                       checkpoint_dir=tmp_path / "extended", progress=False)


@pytest.mark.parametrize("every", [0, -5, 2.5, None])
def test_a_bad_checkpoint_interval_is_refused_before_any_training(every, tmp_path):
    with pytest.raises(ValueError, match=rf"checkpoint_every must be an integer >= 1, got {every}"):
        training.train(training.RunConfig("dact", **TINY), checkpoint_dir=tmp_path, progress=False,
                       checkpoint_every=every)
    with pytest.raises(ValueError, match=r"checkpoint_every must be an integer >= 1, got 0"):
        training.main(["--method", "dact", "--checkpoint-every", "0", "--checkpoint-dir", str(tmp_path), "--quiet"])
    assert not any(tmp_path.iterdir())


def test_finished_run_is_reused_not_retrained(tmp_path):
    config = training.RunConfig("fixed", **TINY)
    first = training.train(config, checkpoint_dir=tmp_path, progress=False)[0]
    second = training.train(config, checkpoint_dir=tmp_path, progress=False)[0]
    assert second["train_seconds"] == first["train_seconds"]


def test_checkpoint_with_other_configuration_is_refused_with_differences(tmp_path):
    path = tmp_path / "run.pt"
    checkpoint.save(path, {"config": {"tau": 0.1, "seed": 0}, "state": {}})
    with pytest.raises(ValueError, match=r"tau: checkpoint has 0\.1, this run has 0\.2"):
        checkpoint.load(path, {"tau": 0.2, "seed": 0})
    assert checkpoint.load(tmp_path / "missing.pt", {}) is None
    assert not list(tmp_path.glob("*.tmp"))


def test_grid_in_two_processes_matches_one_process():
    configs = [training.RunConfig(m, tau=0.01, **TINY) for m in ("dact", "pondernet")]
    serial = training.train_grid(configs, workers=1)
    parallel = training.train_grid(configs, workers=2)
    assert [r["accuracy"] for r in serial] == [r["accuracy"] for r in parallel]


def test_command_line_trains_one_run_into_a_checkpoint_and_prints_a_summary(tmp_path, capsys):
    rows = training.main(["--method", "pact", "--tau", "0.01", "--size", "4", "--hidden", "8", "--max-steps", "3",
                          "--updates", "6", "--batch-size", "16", "--eval-size", "32", "--eval-every", "3",
                          "--eval-modes", "thresholded", "relaxed", "--checkpoint-dir", str(tmp_path), "--quiet"])
    config = training.RunConfig("pact", tau=0.01, eval_modes=("thresholded", "relaxed"), **TINY)
    direct = training.train(config, progress=False)
    assert [(r["accuracy"], r["curve"]) for r in rows] == [(r["accuracy"], r["curve"]) for r in direct]
    assert [p.name for p in tmp_path.iterdir()] == [f"{config.key()}.pt"]
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["checkpoint"] == str(tmp_path / f"{config.key()}.pt")
    assert [run["eval_mode"] for run in summary["runs"]] == ["thresholded", "relaxed"]
    assert summary["runs"][0]["accuracy"] == rows[0]["accuracy"] and summary["runs"][0]["max_steps"] == 3


@pytest.mark.parametrize("kwargs, name", [(dict(updates=0), "updates"), (dict(lr=0.0), "lr"),
                                          (dict(eval_modes=("greedy",)), "eval_modes"),
                                          (dict(method="act", tau=-0.1), "tau")])
def test_bad_run_settings_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        training.RunConfig(**({"method": "dact"} | kwargs))


def test_results_file_has_the_shared_format(tmp_path):
    path = results.write(tmp_path / "r.json", {"seed": 0},
                         [{"method": "dact", "tau": 0.1, "seed": 0, "accuracy": 0.9, "mean_steps": 2.0,
                           "max_steps": 4}])
    assert json.loads(path.read_text())["runs"][0]["method"] == "dact"
    with pytest.raises(ValueError, match="mean_steps"):
        results.write(tmp_path / "bad.json", {}, [{"method": "dact", "tau": 0, "seed": 0, "accuracy": 1,
                                                   "max_steps": 4}])


def test_results_file_keeps_measurements_apart_from_runs(tmp_path):
    run = {"method": "sact", "tau": 0.1, "seed": 0, "accuracy": 0.9, "mean_steps": 2.0, "max_steps": 4}
    path = results.write(tmp_path / "r.json", {"seed": 0}, [run], {"timing": {"plain_seconds": 0.5}})
    written = json.loads(path.read_text())
    assert written["runs"] == [run] and written["measurements"] == {"timing": {"plain_seconds": 0.5}}
    assert "measurements" not in json.loads(results.write(tmp_path / "plain.json", {}, [run]).read_text())
    with pytest.raises(ValueError, match="measurements"):
        results.write(tmp_path / "bad.json", {}, [run], [1, 2])


def test_training_flushes_subnormals_only_while_it_runs():
    tiny = torch.tensor(1e-40) * 1.0                      # a float32 subnormal
    assert tiny != 0
    training.train(training.RunConfig("dact", tau=0.01, **TINY), progress=False)
    assert torch.tensor(1e-40) * 1.0 != 0, "training left subnormals flushed for the whole process"
    with numerics.flush_denormals():
        assert torch.tensor(1e-40) * 1.0 == 0


# ----------------------------------------------------------------------------------------------
# What a run trains on: a curriculum over difficulty, a training range, clipping, a schedule

SCHEDULED = TINY | dict(size=8, updates=12, eval_every=4, eval_size=400, curriculum_start=2, curriculum_updates=8,
                        clip_norm=0.5, lr_decay_at=(6, 9), lr_decay=0.5)


def test_the_curriculum_grows_from_its_start_to_the_training_maximum_and_stays():
    config = training.RunConfig("act", **SCHEDULED)
    assert [config.largest_difficulty(update) for update in range(12)] == [2, 2, 3, 4, 5, 5, 6, 7, 8, 8, 8, 8]
    capped = training.RunConfig("act", **(SCHEDULED | {"train_max_nonzero": 5}))
    assert [capped.largest_difficulty(update) for update in (0, 4, 8, 1000)] == [2, 3, 5, 5]
    assert all(training.RunConfig("act", **TINY).largest_difficulty(update) == 4 for update in (0, 10**6))
    assert [config.learning_rate(update) for update in (0, 5, 6, 8, 9, 10**6)] == [3e-3, 3e-3, 1.5e-3, 1.5e-3,
                                                                                   7.5e-4, 7.5e-4]


def test_training_batches_respect_the_curriculum_and_evaluation_covers_every_difficulty(monkeypatch):
    config = training.RunConfig("dact", tau=0.01, **(SCHEDULED | {"train_max_nonzero": 6}))
    drawn, sample = [], training.Parity.sample

    def recorded(task, n, generator, split="train"):
        batch = sample(task, n, generator, split=split)
        if split == "train":
            drawn.append((task.high, int(batch[2].min()), int(batch[2].max())))
        return batch
    monkeypatch.setattr(training.Parity, "sample", recorded)
    row = training.train(config, progress=False)[0]
    assert [high for high, _, _ in drawn] == [config.largest_difficulty(update) for update in range(12)]
    assert all(1 <= low and top <= high for high, low, top in drawn)
    assert max(top for _, _, top in drawn) == 6                              # the training range's end is reached
    assert set(row["accuracy_by_difficulty"]) == set(row["steps_by_difficulty"]) == set(range(1, 9))  # not to 6
    assert row["config"]["curriculum_start"] == 2 and row["config"]["train_max_nonzero"] == 6


def test_a_scheduled_run_resumes_and_extends_to_the_uninterrupted_run(tmp_path, monkeypatch):
    """The curriculum, the clipping and the learning-rate schedule are functions of the update alone:
    stopped at update 4 and resumed, or trained for 7 updates and extended to 12, the run is the straight one."""
    config = training.RunConfig("pondernet", tau=0.01, **SCHEDULED)
    straight = training.train(config, checkpoint_dir=tmp_path / "straight", progress=False)[0]
    with stopped_after_a_save(monkeypatch, match="stopped at update 4"):
        training.train(config, checkpoint_dir=tmp_path / "resumed", progress=False, checkpoint_every=4)
    resumed = training.train(config, checkpoint_dir=tmp_path / "resumed", progress=False, checkpoint_every=4)[0]
    training.train(training.RunConfig("pondernet", tau=0.01, **(SCHEDULED | {"updates": 7})),
                   checkpoint_dir=tmp_path / "extended", progress=False)
    extended = training.train(config, checkpoint_dir=tmp_path / "extended", progress=False)[0]
    assert resumed["curve"] == straight["curve"] and resumed["accuracy"] == straight["accuracy"]
    assert [p for p in extended["curve"] if p["update"] != 7] == straight["curve"]
    models = [_saved(tmp_path / name, config)["model"] for name in ("straight", "resumed", "extended")]
    assert all(torch.equal(models[0][key], other[key]) for other in models[1:] for key in models[0])


def test_a_clipped_run_differs_from_the_unclipped_one_and_defaults_leave_the_key_alone():
    clipped, free = (training.RunConfig("act", tau=0.01, **(TINY | extra)) for extra in ({"clip_norm": 1e-3}, {}))
    assert training.train(clipped, progress=False)[0]["curve"] != training.train(free, progress=False)[0]["curve"]
    assert not set(training.LATER) & set(free.comparable())                 # older checkpoints keep their names
    changed = {"train_max_nonzero": 5, "input_every_step": False}
    assert set(training.LATER) <= set(training.RunConfig("act", **SCHEDULED | changed).comparable())


@pytest.mark.parametrize("kwargs, message", [
    (dict(train_max_nonzero=9), r"train_max_nonzero must be an integer in 1..size = 1..8, got 9"),
    (dict(train_max_nonzero=0), r"train_max_nonzero must be an integer in 1..size = 1..8, got 0"),
    (dict(curriculum_start=9, curriculum_updates=10), r"curriculum_start must be an integer in 1..size = 1..8, got 9"),
    (dict(train_max_nonzero=4, curriculum_start=5, curriculum_updates=10),
     r"curriculum_start must be an integer in 1..train_max_nonzero = 1..4, got 5"),
    (dict(curriculum_start=2), r"curriculum_updates must be an integer >= 1, got 0"),
    (dict(curriculum_start=2, curriculum_updates=2.5), r"curriculum_updates must be an integer >= 1, got 2.5"),
    (dict(curriculum_updates=100), r"curriculum_updates must be 0 without a curriculum \(curriculum_start=None\)"),
    (dict(clip_norm=0.0), r"clip_norm must be a number > 0, got 0.0"),
    (dict(lr_decay_at=(500, 100)), r"lr_decay_at must be a tuple of increasing integers >= 1 \(updates\), got \(500"),
    (dict(lr_decay_at=(0,)), r"lr_decay_at must be a tuple of increasing integers >= 1"),
    (dict(lr_decay_at=[100]), r"lr_decay_at must be a tuple"),
    (dict(lr_decay=-0.5), r"lr_decay must be a number > 0, got -0.5"),
])
def test_bad_schedules_are_refused_with_the_parameter_and_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.RunConfig("dact", **kwargs)


def test_the_command_line_takes_the_schedules(tmp_path):
    rows = training.main(["--method", "act", "--size", "4", "--hidden", "8", "--max-steps", "3", "--updates", "6",
                          "--batch-size", "16", "--eval-size", "32", "--eval-every", "3", "--curriculum-start", "1",
                          "--curriculum-updates", "4", "--train-max-nonzero", "3", "--clip-norm", "1.0",
                          "--lr-decay-at", "2", "4", "--no-input-every-step", "--checkpoint-dir", str(tmp_path),
                          "--quiet"])
    assert {key: rows[0]["config"][key] for key in training.LATER} == {
        "train_max_nonzero": 3, "curriculum_start": 1, "curriculum_updates": 4, "clip_norm": 1.0,
        "lr_decay_at": (2, 4), "lr_decay": 0.1, "input_every_step": False}


def test_a_row_names_its_task_size_and_scores_by_difficulty():
    from adaptive.parity.train import RunConfig, train
    common = dict(size=4, hidden=8, max_steps=2, updates=2, eval_every=2, eval_size=100)
    plain, = train(RunConfig("act", tau=1e-3, **common), progress=False)
    split, = train(RunConfig("act", tau=1e-3, train_max_nonzero=2, **common), progress=False)
    assert (plain["task"], split["task"]) == ("parity", "parity-extrapolation")
    assert plain["size"] == split["size"] == 4 and plain["max_steps"] == 2
    assert set(split["accuracy_by_difficulty"]) == set(split["steps_by_difficulty"]) == {1, 2, 3, 4}


def test_settling_steps_finds_the_step_from_which_every_answer_is_right():
    import torch

    from adaptive.parity.train import settling_steps

    class Scripted(torch.nn.Module):
        """Answers class 1 from step ``switch[i]`` on for sample i, class 0 before."""
        def __init__(self, switch):
            super().__init__()
            self.switch = torch.tensor(switch)

        def initial_state(self, x):
            return torch.zeros(len(x), dtype=torch.long)

        def step(self, n):
            n = n + 1
            logits = torch.stack([(n < self.switch).float(), (n >= self.switch).float()], dim=1)
            return logits, torch.zeros(len(n)), n

    model = Scripted([1, 3, 4, 9])                     # sample 3 never switches within 4 steps
    out = settling_steps(model, torch.zeros(4, 2), torch.ones(4, dtype=torch.long), torch.tensor([1, 1, 2, 2]), 4)
    assert out["settled_by_difficulty"][1] == 2.0 and out["settled_by_difficulty"][2] == 4.0
    assert out["settled_fraction"] == {1: 1.0, 2: 0.5}
