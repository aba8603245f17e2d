"""Training MAC on mini-CLEVR: results rows, resume, refusal, fine-tuning, two processes, bad input."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import interrupt
import numpy as np
import pytest
import torch

from adaptive.clevr import dataset, minigen, questions
from adaptive.clevr import train as clevr_train
from adaptive.clevr.train import MacConfig
from adaptive.infra import checkpoint, results

REPO = Path(__file__).resolve().parents[1]
TINY = dict(max_steps=3, tau=0.01, width=16, embed_dim=8, batch_size=16, epochs=1)
ROW_FIELDS = results.REQUIRED + ("gate", "family_accuracy", "family_steps", "curve", "config", "train_seconds")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A tiny mini-CLEVR: 12 train and 6 val images (about 60 and 30 questions), 8x8 features."""
    folder = tmp_path_factory.mktemp("data") / "mini-clevr"
    minigen.generate_split(folder, "train", 12, seed=0, features_grid=8)
    minigen.generate_split(folder, "val", 6, seed=0, features_grid=8)
    questions.vocab_for(folder)
    return folder


def tiny(root, **changes) -> MacConfig:
    return MacConfig(str(root), **(dict(method="dact") | TINY | changes))


def _weights(path, key="ema"):
    return torch.load(path, weights_only=False)[key]


@pytest.mark.parametrize("method, gate", [("fixed", False), ("act", False), ("dact", False), ("fixed", True)])
def test_each_method_trains_and_reports_a_results_row(root, tmp_path, method, gate):
    row = clevr_train.train(tiny(root, method=method, gate=gate), tmp_path, progress=False)
    assert all(key in row for key in ROW_FIELDS)
    assert row["method"] == method and row["gate"] == gate and row["max_steps"] == 3
    assert 0 <= row["accuracy"] <= 1 and 1 <= row["mean_steps"] <= 3
    if method == "fixed":
        assert row["mean_steps"] == 3
    names = set(clevr_train.family_names(questions.vocab_for(root)))
    assert set(row["family_accuracy"]) == set(row["family_steps"]) <= names
    assert sum(row["family_questions"].values()) == row["questions"] == sum(row["steps_histogram"])
    assert all(1 <= s <= 3 for s in row["family_steps"].values())
    assert [point["epoch"] for point in row["curve"]] == [1]
    written = json.loads((tmp_path / clevr_train.RESULT).read_text())
    assert written["runs"][0]["accuracy"] == row["accuracy"] and written["parameters"]["method"] == method


def test_train_many_in_two_processes_gives_each_run_alone_in_order(root, tmp_path):
    configs = [tiny(root, method="dact"), tiny(root, method="fixed", max_steps=2)]
    rows = clevr_train.train_many([(config, tmp_path / "many" / str(i)) for i, config in enumerate(configs)],
                                  workers=2)
    assert [(row["method"], row["max_steps"]) for row in rows] == [("dact", 3), ("fixed", 2)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                        # as in a worker
    try:
        alone = [clevr_train.train(config, tmp_path / "alone" / str(i), progress=False)
                 for i, config in enumerate(configs)]
    finally:
        torch.set_num_threads(threads)
    assert [row["accuracy"] for row in rows] == [row["accuracy"] for row in alone]
    assert [row["curve"][-1]["train_loss"] for row in rows] == pytest.approx(
        [row["curve"][-1]["train_loss"] for row in alone], rel=1e-5)


def test_command_line_runs_the_same_training(root, tmp_path):
    row = clevr_train.main(["--data-root", str(root), "--method", "act", "--tau", "0.01", "--max-steps", "3",
                            "--width", "16", "--embed-dim", "8", "--batch-size", "16", "--epochs", "1",
                            "--checkpoint-dir", str(tmp_path / "cli"), "--quiet"])
    direct = clevr_train.train(tiny(root, method="act"), tmp_path / "direct", progress=False)
    assert row["accuracy"] == direct["accuracy"] and row["mean_steps"] == direct["mean_steps"]
    assert (tmp_path / "cli" / clevr_train.CHECKPOINT).is_file()


def test_interrupted_run_resumes_to_the_uninterrupted_result(root, tmp_path):
    straight = clevr_train.train(tiny(root, epochs=2), tmp_path / "straight", progress=False)
    clevr_train.train(tiny(root, epochs=1), tmp_path / "resumed", progress=False)    # "interrupted" after epoch 1
    resumed = clevr_train.train(tiny(root, epochs=2), tmp_path / "resumed", progress=False)

    def drop_time(curve):
        return [{k: v for k, v in p.items() if k != "seconds"} for p in curve]
    assert drop_time(resumed["curve"]) == drop_time(straight["curve"])
    assert resumed["accuracy"] == straight["accuracy"] and resumed["family_steps"] == straight["family_steps"]
    a, b = (_weights(tmp_path / name / clevr_train.CHECKPOINT) for name in ("straight", "resumed"))
    assert all(torch.equal(a[key], b[key]) for key in a)
    # a finished run is reported, not trained again; fewer epochs than it holds is refused
    again = clevr_train.train(tiny(root, epochs=2), tmp_path / "resumed", progress=False)
    assert again["train_seconds"] == resumed["train_seconds"]
    with pytest.raises(ValueError, match="epochs"):
        clevr_train.train(tiny(root, epochs=1), tmp_path / "resumed", progress=False)


@pytest.mark.slow
def test_a_run_killed_in_the_middle_of_an_epoch_resumes_to_the_numbers_of_a_run_never_killed(tmp_path):
    """The command line SIGKILLed half an epoch after a checkpoint and run again gives the result
    and the weights (model, EMA, optimiser, schedule) of the same command run once, bit for bit."""
    data = tmp_path / "mini-clevr"                            # 40 images: about 0.2 s an epoch
    minigen.generate_split(data, "train", 40, seed=0, features_grid=8)
    minigen.generate_split(data, "val", 6, seed=0, features_grid=8)
    questions.vocab_for(data)                                 # before two runs would both write it
    arguments = ["--data-root", str(data), "--method", "dact", "--tau", "0.01", "--max-steps", "3", "--width", "16",
                 "--embed-dim", "8", "--batch-size", "16", "--epochs", "12", "--checkpoint-every", "1",
                 "--threads", "1", "--quiet"]
    run = {name: [*arguments, "--checkpoint-dir", str(tmp_path / name)] for name in ("straight", "killed")}
    straight = interrupt.start("adaptive.clevr.train", run["straight"], tmp_path / "straight.log")
    killed = interrupt.start("adaptive.clevr.train", run["killed"], tmp_path / "killed.log")
    left = interrupt.kill_between_checkpoints(killed, tmp_path / "killed" / clevr_train.CHECKPOINT,
                                              tmp_path / "killed.log")
    assert 2 <= left["state"]["epoch"] < 12                   # killed in epoch 3 or later, before the last
    interrupt.finish(interrupt.start("adaptive.clevr.train", run["killed"], tmp_path / "resumed.log"),
                     tmp_path / "resumed.log")
    interrupt.finish(straight, tmp_path / "straight.log")

    def numbers(name):
        row = json.loads((tmp_path / name / clevr_train.RESULT).read_text())["runs"][0]
        row["curve"] = [{k: v for k, v in point.items() if k != "seconds"} for point in row["curve"]]
        return {key: value for key, value in row.items() if key != "train_seconds"}
    assert numbers("killed") == numbers("straight")
    a, b = (checkpoint.read(tmp_path / name / clevr_train.CHECKPOINT) for name in ("straight", "killed"))
    assert all(interrupt.identical(a[key], b[key]) for key in ("model", "ema", "optimizer", "scheduler"))


def test_a_bad_checkpoint_interval_is_refused_before_any_training(root, tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint_every must be an integer >= 1, got 0"):
        clevr_train.train(tiny(root), tmp_path, progress=False, checkpoint_every=0)
    assert not tmp_path.joinpath(clevr_train.CHECKPOINT).exists()
    with pytest.raises(ValueError, match=r"checkpoint_every must be an integer >= 1, got -1"):
        clevr_train.main(["--data-root", str(root), "--checkpoint-every", "-1", "--checkpoint-dir", str(tmp_path)])


def test_a_longer_checkpoint_interval_saves_the_end_and_resumes_under_another(root, tmp_path):
    clevr_train.train(tiny(root, epochs=1), tmp_path, progress=False, checkpoint_every=5)
    assert checkpoint.read(tmp_path / clevr_train.CHECKPOINT)["state"]["epoch"] == 1
    row = clevr_train.train(tiny(root, epochs=2), tmp_path, progress=False, checkpoint_every=1)
    assert [point["epoch"] for point in row["curve"]] == [1, 2]


def test_resuming_with_another_configuration_is_refused_listing_differences(root, tmp_path):
    clevr_train.train(tiny(root), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"width: checkpoint has 16, this run has 24"):
        clevr_train.train(tiny(root, width=24), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"tau: checkpoint has 0\.01, this run has 0\.02"):
        clevr_train.train(tiny(root, tau=0.02), tmp_path, progress=False)
    unresumable = {f for f in tiny(root).__dataclass_fields__} - set(clevr_train.RESUMABLE)
    assert set(tiny(root).comparable()) == unresumable - {"dataset", "coordinates"}    # defaults left out


def test_fine_tuning_starts_from_the_pretrained_ema_weights(root, tmp_path):
    clevr_train.train(tiny(root, method="fixed"), tmp_path / "pre", progress=False)
    pretrained = _weights(tmp_path / "pre" / clevr_train.CHECKPOINT)
    # lr so small that one epoch leaves the weights where they started
    config = tiny(root, method="dact", gate=True, lr=1e-12, init_from=str(tmp_path / "pre" / "checkpoint.pt"))
    row = clevr_train.train(config, tmp_path / "fine", progress=False)
    assert row["init"]["unexpected"] == [] and any(k.startswith("write_gate") for k in row["init"]["missing"])
    tuned = _weights(tmp_path / "fine" / clevr_train.CHECKPOINT, "model")
    assert all(torch.allclose(tuned[key], value, atol=1e-9) for key, value in pretrained.items())
    mac, loaded_config, vocab = clevr_train.load_trained(tmp_path / "fine" / clevr_train.CHECKPOINT)
    assert loaded_config == config and mac.gate and not mac.training
    assert vocab.answers == questions.vocab_for(root).answers
    with pytest.raises(ValueError, match="does not fit this model"):
        clevr_train.train(tiny(root, width=24, init_from=config.init_from), tmp_path / "wide", progress=False)
    with pytest.raises(ValueError, match="init_from"):
        clevr_train.train(tiny(root, init_from=str(tmp_path / "none.pt")), tmp_path / "none", progress=False)


def test_a_model_with_coordinates_starts_as_the_model_without_it_was_trained_from(root, tmp_path):
    clevr_train.train(tiny(root, method="fixed"), tmp_path / "pre", progress=False)
    start = str(tmp_path / "pre" / clevr_train.CHECKPOINT)
    config = tiny(root, method="fixed", coordinates=True, lr=1e-12, init_from=start)
    row = clevr_train.train(config, tmp_path / "coords", progress=False)
    assert row["init"]["widened"] == ["stem.0.weight"] and row["init"]["missing"] == []
    before, _, _ = clevr_train.load_trained(start)
    after, loaded, _ = clevr_train.load_trained(tmp_path / "coords" / clevr_train.CHECKPOINT)
    assert loaded.coordinates and after.stem[0].in_channels == before.stem[0].in_channels + 2
    tokens, lengths, features = torch.randint(1, 5, (4, 6)), torch.full((4,), 6), torch.rand(4, 3, 8, 8)
    knowledge = [model.initial_state(tokens, lengths, features)["knowledge"] for model in (before, after)]
    assert torch.allclose(*knowledge, atol=1e-6)           # the positions' weights start at zero


def test_two_processes_train_data_parallel_and_rank_0_writes(root, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "adaptive.clevr.train", "--data-root", str(root), "--method", "act", "--tau", "0.01",
               "--max-steps", "3", "--width", "16", "--embed-dim", "8", "--batch-size", "16", "--epochs", "1",
               "--checkpoint-dir", str(out), "--quiet"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "result.json"]
    run = json.loads((out / "result.json").read_text())["runs"][0]
    assert run["world_size"] == 2 and run["epochs"] == 1 and 1 <= run["mean_steps"] <= 3
    assert run["questions"] == len(dataset.ClevrQuestions.from_root(root, "val"))    # every val question once
    assert torch.load(out / "checkpoint.pt", weights_only=False)["state"]["epoch"] == 1


def test_each_rank_reads_a_disjoint_equal_share_of_the_epoch_order():
    alone = dataset.ShardedEpochShuffle(11, seed=3)
    assert alone.indices(2) == dataset.EpochShuffle(11, seed=3).permutation(2).tolist()
    shares = [dataset.ShardedEpochShuffle(11, seed=3, rank=r, world=2).indices(2) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 6
    assert set(shares[0]) | set(shares[1]) == set(range(11))
    assert len(set(shares[0]) & set(shares[1])) == 1                   # the one padded example
    assert shares[0] != dataset.ShardedEpochShuffle(11, seed=3, rank=0, world=2).indices(3)


def test_missing_data_is_refused_with_the_command_to_make_it(root, tmp_path):
    with pytest.raises(ValueError, match=r"data_root .*missing-clevr.* does not exist.*adaptive\.clevr\.minigen"):
        clevr_train.train(tiny(tmp_path / "missing-clevr"), progress=False)
    partial = tmp_path / "mini-partial"
    shutil.copytree(root, partial)
    (partial / "features" / "val.h5").unlink()
    with pytest.raises(ValueError, match=r"features file .*val\.h5 does not exist"):
        clevr_train.train(tiny(partial), progress=False)
    with h5py.File(partial / "features" / "val.h5", "w") as file:              # too few rows
        file.create_dataset("features", data=np.zeros((2, 3, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="has 2 rows"):
        clevr_train.train(tiny(partial), partial / "never", progress=False)
    assert not (partial / "never").exists()
    minigen.questions_path(partial, "val").unlink()
    with pytest.raises(ValueError, match=r"miniCLEVR_val_questions\.json does not exist.*minigen"):
        clevr_train.train(tiny(partial), progress=False)


@pytest.mark.parametrize("changes, name", [
    (dict(max_steps=4, model_steps=3), "max_steps"), (dict(method="sact"), "method"),
    (dict(batch_size=0), "batch_size"),
    (dict(ema=1.0), "ema"), (dict(tau=-1.0), "tau"), (dict(plateau_factor=1.0), "plateau_factor"),
    (dict(dropout={"memory": 1.5}), "dropout"), (dict(device="gpu"), "device"),
    (dict(max_train_batches=0), "max_train_batches")])
def test_bad_settings_name_the_parameter(root, changes, name):
    with pytest.raises(ValueError, match=name):
        tiny(root, **changes)
