"""Training fixed (plain), ACT, SACT and PSACT ResNets: results rows, resume, refusal, fine-tuning,
gradient variance, reloading, the command line and two data-parallel processes.

Every run is a ResNet-14 (two units per block, one halting unit) on 64 generated objects
for a few updates: what is tested is the bookkeeping, not the accuracy.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import interrupt
import pytest
import torch
from interrupt import stopped_after_a_save

from adaptive.infra import results
from adaptive.spatial import objects as spatial_data
from adaptive.spatial import train as st
from adaptive.spatial.train import SpatialConfig

REPO = Path(__file__).resolve().parents[1]
TINY = dict(depth=14, train_size=64, test_size=32, batch_size=16, updates=2, eval_every=2, tau=0.01)
METHODS = {"fixed": dict(method="fixed"), "act": dict(method="act"), "sact": dict(method="sact"),
           "psact": dict(method="psact"),
           "reinforce": dict(method="psact", estimator="reinforce", optimizer="adam", lr=1e-3)}
ROW_FIELDS = results.REQUIRED + ("flops", "flops_ratio", "eval_mode", "evaluations", "curve", "train_seconds",
                                 "world_size", "config")
UNITS = 6                                          # ResNet-14: 3 blocks of 2 units


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**changes) -> SpatialConfig:
    return SpatialConfig(**(TINY | changes))


def saved(folder: Path) -> dict:
    return torch.load(folder / st.CHECKPOINT, weights_only=False)


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``runs(name)``: (config, folder, row) of one short training run per METHODS entry, trained once."""
    cache = {}

    def run(name):
        if name not in cache:
            config, folder = tiny(**METHODS[name]), tmp_path_factory.mktemp(name)
            cache[name] = (config, folder, st.train(config, folder, progress=False))
        return cache[name]
    return run


# ----------------------------------------------------------------------------- results rows

@pytest.mark.parametrize("name", list(METHODS))
def test_each_method_trains_and_writes_a_results_row_and_a_checkpoint(runs, name):
    config, folder, row = runs(name)
    assert all(key in row for key in ROW_FIELDS)
    assert row["method"] == config.method and row["tau"] == 0.01 and row["seed"] == 0
    assert 0 <= row["accuracy"] <= 1 and 3 <= row["mean_steps"] <= row["observed_max_steps"] <= row["max_steps"]
    assert row["max_steps"] == UNITS
    assert set(row["evaluations"]) == set(config.modes) and row["eval_mode"] == config.modes[0]
    assert row["eval_mode"] == {"fixed": "fixed", "act": "act", "sact": "act"}.get(config.method, "thresholded")
    assert [point["update"] for point in row["curve"]] == [2] and row["world_size"] == 1
    assert row["config"] == config.as_dict()
    if name == "fixed":
        assert row["mean_steps"] == row["observed_max_steps"] == row["max_steps"] == UNITS
        assert row["flops_ratio"] == 1.0
    else:
        assert len(row["evaluations"][config.modes[0]]["coverage_auc"]) == 3       # one per block
    assert sorted(p.name for p in folder.iterdir()) == [st.CHECKPOINT, st.RESULT]
    written = json.loads((folder / st.RESULT).read_text())
    assert written["parameters"] == json.loads(json.dumps(config.as_dict()))
    assert written["runs"][0]["accuracy"] == row["accuracy"] and written["runs"][0]["mean_steps"] == row["mean_steps"]
    state = saved(folder)["state"]
    assert state["update"] == 2 and state["curve"] == row["curve"]
    assert (saved(folder)["baseline"] is None) == (name != "reinforce")     # the REINFORCE baseline is kept


def test_learning_rate_is_divided_by_ten_at_each_milestone():
    config = tiny(updates=100, lr=0.1)                                      # milestones 0.6, 0.75, 0.9
    rates = [config.learning_rate(update) for update in (0, 59, 60, 74, 75, 89, 90, 99)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4])


# ----------------------------------------------------------------------------- resume

def _interrupted_then_resumed(config, folder, monkeypatch):
    with stopped_after_a_save(monkeypatch, match="stopped at update 3"):   # a crash right after that checkpoint
        st.train(config, folder, progress=False, checkpoint_every=3)
    assert saved(folder)["state"]["update"] == 3
    return st.train(config, folder, progress=False, checkpoint_every=3)


def test_an_interrupted_sact_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """Stopped after update 3 of 6 (4 batches an epoch): the rest of epoch 0, then epoch 1, as if never stopped."""
    config = tiny(method="sact", updates=6, eval_every=3)
    straight = st.train(config, tmp_path / "straight", progress=False)
    resumed = _interrupted_then_resumed(config, tmp_path / "resumed", monkeypatch)
    a, b = saved(tmp_path / "straight"), saved(tmp_path / "resumed")
    assert same_tensors(a["model"], b["model"])
    assert resumed["curve"] == straight["curve"] and [p["update"] for p in resumed["curve"]] == [3, 6]
    assert resumed["accuracy"] == straight["accuracy"] and resumed["flops"] == straight["flops"]


def test_an_interrupted_psact_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    config = tiny(method="psact", updates=6, eval_every=3)
    st.train(config, tmp_path / "straight", progress=False)
    _interrupted_then_resumed(config, tmp_path / "resumed", monkeypatch)
    assert same_tensors(saved(tmp_path / "straight")["model"], saved(tmp_path / "resumed")["model"])


def test_a_finished_run_is_reported_without_training_again(runs, monkeypatch):
    config, folder, row = runs("sact")

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must not take another optimiser update")
    monkeypatch.setattr(st, "objective", no_training)
    again = st.train(config, folder, progress=False)
    assert {key: value for key, value in again.items() if key != "train_seconds"} == \
        {key: value for key, value in row.items() if key != "train_seconds"}
    assert again["train_seconds"] == pytest.approx(row["train_seconds"], abs=0.5)


def test_a_finished_run_reports_the_same_training_time(runs):
    config, folder, _ = runs("fixed")
    first = json.loads((folder / st.RESULT).read_text())["runs"][0]["train_seconds"]
    assert st.train(config, folder, progress=False)["train_seconds"] == first


def test_resuming_with_another_configuration_is_refused_listing_differences(runs):
    config, folder, _ = runs("act")
    before = (folder / st.CHECKPOINT).read_bytes()
    with pytest.raises(ValueError, match=r"tau: checkpoint has 0\.01, this run has 0\.02"):
        st.train(tiny(**METHODS["act"], tau=0.02), folder, progress=False)
    with pytest.raises(ValueError, match=r"refusing to extend .*checkpoint\.pt to 3 updates: its 2 updates were "
                                         r"trained for a run of 2, whose learning rate drops at updates \(1, 2, 2\)"):
        st.train(tiny(**METHODS["act"], updates=3), folder, progress=False)
    with pytest.raises(ValueError, match=r"(?s)eps: checkpoint has 0\.01, this run has 0\.05.*method: "
                                         r"checkpoint has 'act', this run has 'sact'"):
        st.train(tiny(method="sact", eps=0.05), folder, progress=False)
    assert (folder / st.CHECKPOINT).read_bytes() == before


def test_more_updates_extend_a_run_stopped_mid_epoch_to_the_longer_run_at_a_constant_learning_rate(tmp_path):
    """3 updates (of 4 an epoch), then 6 in the same folder: the rest of epoch 0 and half of epoch 1,
    as a straight 6-update run takes them, under another checkpoint interval; 2 is then refused."""
    short, long = tiny(method="psact", milestones=(), updates=3, eval_every=3), tiny(method="psact", milestones=(),
                                                                                     updates=6, eval_every=3)
    straight = st.train(long, tmp_path / "straight", progress=False)
    st.train(short, tmp_path / "extended", progress=False, checkpoint_every=2)
    extended = st.train(long, tmp_path / "extended", progress=False, checkpoint_every=5)
    a, b = saved(tmp_path / "straight"), saved(tmp_path / "extended")
    assert same_tensors(a["model"], b["model"]) and interrupt.identical(a["optimizer"], b["optimizer"])
    assert extended["curve"] == straight["curve"] and extended["accuracy"] == straight["accuracy"]
    assert b["run"] == long.as_dict() and st.load_trained(tmp_path / "extended" / st.CHECKPOINT)[1] == long
    with pytest.raises(ValueError, match=r"already holds 6 updates, more than the 2 updates asked for"):
        st.train(tiny(method="psact", milestones=(), updates=2, eval_every=3), tmp_path / "extended", progress=False)


def test_a_run_stopped_before_its_first_learning_rate_drop_extends_to_a_longer_schedule(tmp_path, monkeypatch):
    """Stopped after 3 of 10 updates (the first drop at 6), a 20-update run (drops at 12, 15, 18) may go
    on: its first 3 updates had the same learning rate, so it ends where a straight 20-update run does."""
    longer = tiny(method="sact", updates=20, eval_every=10)
    with stopped_after_a_save(monkeypatch, match="stopped at update 3"):
        st.train(tiny(method="sact", updates=10, eval_every=10), tmp_path / "extended", progress=False,
                 checkpoint_every=3)
    extended = st.train(longer, tmp_path / "extended", progress=False)
    straight = st.train(longer, tmp_path / "straight", progress=False)
    assert extended["curve"] == straight["curve"] and [point["update"] for point in extended["curve"]] == [10, 20]
    assert same_tensors(saved(tmp_path / "extended")["model"], saved(tmp_path / "straight")["model"])


def test_a_run_shorter_than_the_checkpoint_interval_saves_its_end_and_a_bad_interval_is_refused(runs, tmp_path):
    _, folder, _ = runs("fixed")                                   # 2 updates, checkpoint_every 1000
    assert saved(folder)["state"]["update"] == 2
    with pytest.raises(ValueError, match=r"checkpoint_every must be an integer >= 1, got 0"):
        st.train(tiny(), tmp_path, progress=False, checkpoint_every=0)
    with pytest.raises(ValueError, match=r"checkpoint_every must be an integer >= 1, got -3"):
        st.main(["--checkpoint-every", "-3", "--checkpoint-dir", str(tmp_path), "--device", "cpu"])
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_a_run_killed_in_the_middle_of_an_epoch_resumes_to_the_numbers_of_a_run_never_killed(tmp_path):
    """The command line SIGKILLed between two checkpoints and run again gives the result and the
    weights (model, optimiser) of the same command run once, bit for bit. 11 updates an epoch and
    a checkpoint every 5: every checkpoint before the last lies inside an epoch, so the rerun
    starts in the middle of one, and repeats the updates the killed run did after its checkpoint."""
    arguments = ["--method", "psact", "--tau", "0.01", "--depth", "14", "--train-size", "176", "--test-size", "32",
                 "--batch-size", "16", "--updates", "50", "--eval-every", "10", "--checkpoint-every", "5",
                 "--device", "cpu", "--quiet"]
    run = {name: [*arguments, "--checkpoint-dir", str(tmp_path / name)] for name in ("straight", "killed")}
    straight = interrupt.start("adaptive.spatial.train", run["straight"], tmp_path / "straight.log")
    killed = interrupt.start("adaptive.spatial.train", run["killed"], tmp_path / "killed.log")
    left = interrupt.kill_between_checkpoints(killed, tmp_path / "killed" / st.CHECKPOINT, tmp_path / "killed.log")
    assert 10 <= left["state"]["update"] < 50 and left["state"]["update"] % 11 != 0          # inside an epoch
    interrupt.finish(interrupt.start("adaptive.spatial.train", run["killed"], tmp_path / "resumed.log"),
                     tmp_path / "resumed.log")
    interrupt.finish(straight, tmp_path / "straight.log")

    def numbers(name):
        row = json.loads((tmp_path / name / st.RESULT).read_text())["runs"][0]
        return {key: value for key, value in row.items() if key != "train_seconds"}
    assert numbers("killed") == numbers("straight")
    a, b = saved(tmp_path / "straight"), saved(tmp_path / "killed")
    assert same_tensors(a["model"], b["model"]) and interrupt.identical(a["optimizer"], b["optimizer"])


# ----------------------------------------------------------------------------- fine-tuning

def test_init_from_copies_the_resnet_of_a_fixed_checkpoint(runs, tmp_path):
    _, fixed_folder, _ = runs("fixed")
    pretrained = saved(fixed_folder)["model"]
    # lr so small that one update leaves the weights where they started
    config = tiny(method="sact", lr=1e-12, momentum=0.0, weight_decay=0.0, updates=1, eval_every=1,
                  init_from=str(fixed_folder / st.CHECKPOINT))
    st.train(config, tmp_path / "fine", progress=False)
    tuned = saved(tmp_path / "fine")["model"]
    fresh = st.build(config).state_dict()
    names = [f"resnet.{name}" for name, _ in st.build(config).resnet.named_parameters()]
    assert any(not torch.allclose(fresh[name], pretrained[name], atol=1e-4) for name in names)   # training moved them
    assert all(torch.allclose(tuned[name], pretrained[name], atol=1e-9) for name in names)
    halting = [key for key in tuned if key.startswith("halting_units.")]
    assert halting and all(torch.allclose(tuned[key], fresh[key], atol=1e-9) for key in halting)
    with pytest.raises(ValueError, match="does not fit this model"):
        st.train(tiny(method="sact", depth=20, init_from=config.init_from), tmp_path / "deep", progress=False)


# ----------------------------------------------------------------------------- gradient variance

@pytest.fixture(scope="module")
def batch():
    data = spatial_data.generate(8, seed=3)
    return (data.images - 0.5) / 0.25, data.labels


@pytest.mark.parametrize("estimator", ["relaxed", "reinforce"])
def test_gradient_variance_is_positive_and_leaves_the_model_as_it_was(batch, estimator):
    model = st.build(tiny(method="psact")).train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    variance = st.gradient_variance(model, *batch, estimator, samples=4, seed=1)
    assert isinstance(variance, float) and 0 < variance < float("inf")
    assert variance == st.gradient_variance(model, *batch, estimator, samples=4, seed=1)   # seeded
    assert model.training and same_tensors(before, model.state_dict())


def test_gradient_variance_refuses_what_it_cannot_measure(batch):
    with pytest.raises(ValueError, match="psact|PSACT"):
        st.gradient_variance(st.build(tiny(method="sact")), *batch, "relaxed")
    psact = st.build(tiny(method="psact"))
    with pytest.raises(ValueError, match="samples"):
        st.gradient_variance(psact, *batch, "relaxed", samples=1)
    with pytest.raises(ValueError, match="estimator"):
        st.gradient_variance(psact, *batch, "gumbel")


# ----------------------------------------------------------------------------- reloading

@pytest.mark.parametrize("name", ["psact", "sact"])
def test_load_trained_gives_an_eval_model_that_reproduces_the_row(runs, name):
    config, folder, row = runs(name)
    model, loaded = st.load_trained(folder / st.CHECKPOINT)
    assert loaded == config and not model.training
    data = st.Data(loaded)
    again = st.evaluate(model, data.test_images, data.test_labels, loaded.modes[0], normalize=data.normalize,
                        masks=data.test_masks, seed=loaded.seed)
    assert again["accuracy"] == row["accuracy"] and again["flops"] == row["flops"]
    assert again["mean_units"] == row["mean_steps"]
    assert again["coverage_auc"] == row["evaluations"][row["eval_mode"]]["coverage_auc"]
    sparse = st.evaluate(model, data.test_images, data.test_labels, loaded.modes[0], normalize=data.normalize,
                         sparse=True, batch_size=16, seed=loaded.seed)
    assert sparse["accuracy"] == row["accuracy"] and sparse["flops"] == row["flops"]
    assert not model.training


def test_train_many_returns_rows_in_order_and_reads_finished_runs(runs, monkeypatch):
    finished = [runs("psact"), runs("act")]

    def no_training(*args, **kwargs):
        raise AssertionError("finished runs are read, not trained")
    monkeypatch.setattr(st, "objective", no_training)
    rows = st.train_many([(config, folder) for config, folder, _ in finished], workers=1)
    assert [row["method"] for row in rows] == ["psact", "act"]
    assert [row["accuracy"] for row in rows] == [row["accuracy"] for _, _, row in finished]
    assert [row["curve"] for row in rows] == [row["curve"] for _, _, row in finished]
    with pytest.raises(ValueError, match="workers"):
        st.train_many([], workers=0)


# ----------------------------------------------------------------------------- command line

def test_command_line_parses_tuples_and_trains(tmp_path, capsys):
    row = st.main(["--method", "sact", "--depth", "14", "--train-size", "64", "--test-size", "32",
                   "--batch-size", "16", "--updates", "2", "--eval-every", "2", "--eval-modes", "act", "thresholded",
                   "--milestones", "0.5", "--checkpoint-dir", str(tmp_path), "--quiet"])
    assert row["config"]["eval_modes"] == ("act", "thresholded") and row["config"]["milestones"] == (0.5,)
    assert set(row["evaluations"]) == {"act", "thresholded"} and row["eval_mode"] == "act"
    assert [point["lr"] for point in row["curve"]] == [pytest.approx(0.01)]     # update 2 used lr(1): 1 >= 0.5 * 2
    assert set(point for point in row["curve"][0]) >= {"act", "thresholded", "train_loss"}
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {key: row[key] for key in ("method", "tau", "accuracy", "mean_steps", "flops_ratio")}
    assert sorted(p.name for p in tmp_path.iterdir()) == [st.CHECKPOINT, st.RESULT]


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
ARGS = ["--method", "sact", "--depth", "14", "--train-size", "64", "--test-size", "32", "--batch-size", "16",
        "--updates", "2", "--eval-every", "2", "--quiet"]


def test_two_processes_train_data_parallel_and_rank_0_writes(tmp_path):
    """DistributedDataParallel needs a gradient for every parameter at every update (see
    test_spatial's test_training_gives_every_parameter_a_gradient_even_when_everything_halts)."""
    out = tmp_path / "ddp"
    done = subprocess.run(TORCHRUN + ["-m", "adaptive.spatial.train"] + ARGS + ["--checkpoint-dir", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [st.CHECKPOINT, st.RESULT]
    run = json.loads((out / st.RESULT).read_text())["runs"][0]
    assert run["world_size"] == 2 and run["method"] == "sact" and 3 <= run["mean_steps"] <= UNITS
    assert saved(out)["state"]["update"] == 2
    summaries = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert summaries and json.loads(summaries[0])["accuracy"] == run["accuracy"]


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("changes, name", [
    (dict(depth=21), "depth"), (dict(depth=4), "depth"), (dict(dataset="mnist"), "dataset"),
    (dict(milestones=(0.75, 0.6)), "milestones"), (dict(milestones=(0.5, 1.0)), "milestones"),
    (dict(init_from="no/such/checkpoint.pt"), "init_from"), (dict(optimizer="rmsprop"), "optimizer"),
    (dict(batch_size=0), "batch_size"), (dict(updates=0), "updates"), (dict(eval_every=0), "eval_every"),
    (dict(train_size=0), "train_size"), (dict(seed=-1), "seed"), (dict(lr=0.0), "lr"),
    (dict(baseline_decay=1.0), "baseline_decay"), (dict(method="psact", eval_modes=("act",)), "eval_mode"),
    (dict(method="sact", estimator="reinforce"), "estimator"), (dict(tau=-1.0), "tau"), (dict(patch=0), "patch")])
def test_bad_settings_name_the_parameter(changes, name):
    with pytest.raises(ValueError, match=name):
        tiny(**changes)


def test_train_refuses_what_is_not_a_config():
    with pytest.raises(ValueError, match="SpatialConfig"):
        st.train(TINY, progress=False)
