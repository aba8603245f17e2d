"""Chapter 6's shipped models: the longer recipe trained by the package's trainer, recorded and evaluated."""
import dataclasses

import pytest
import torch
from conftest import repeats_here

from adaptive.infra import checkpoint, pretrained
from adaptive.spatial import pretrain
from adaptive.spatial.train import CHECKPOINT, Data, evaluate, train

TINY = pretrain.Longer(seeds=(0, 1), pretrain_updates=4, updates=4,
                       common=(("train_size", 48), ("test_size", 24), ("batch_size", 8), ("lr", 0.1), ("depth", 8)))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """TINY trained and recorded once: (its rows, the checkpoint folder, the pretrained folder)."""
    folder = tmp_path_factory.mktemp("spatial-pretrain")
    rows = pretrain.train(TINY, folder / "checkpoints", folder / "pretrained")
    return rows, folder / "checkpoints", folder / "pretrained"


@pytest.mark.slow
def test_every_fine_tune_of_every_seed_is_recorded_with_its_command(recorded):
    rows, _, directory = recorded
    entries = pretrained.manifest(directory)
    shipped = [config for seed in TINY.seeds for _, config in TINY.variants(seed, None)]   # names need no checkpoint
    assert sorted(entries) == sorted(TINY.entry(config) for config in shipped)
    assert len(rows) == 3 * len(TINY.seeds) and pretrained.verify(directory) == []
    for entry in entries.values():
        assert entry["command"] == pretrain.COMMAND and entry["pretrain"]["updates"] == TINY.pretrain_updates
        assert [point["update"] for point in entry["curve"]] == [1, 2, 3, 4]


@pytest.mark.slow
def test_a_shipped_model_is_the_trained_one_and_evaluates_to_its_accuracy(recorded):
    rows, root, directory = recorded
    for row, (_, config) in zip(rows, [pair for seed in TINY.seeds for pair in TINY.variants(seed, None)]):
        model, entry = pretrain.load_model(config, directory, TINY)        # found without the checkpoints
        trained = checkpoint.read(pretrain.folder(config, root) / CHECKPOINT)["model"]
        assert all(torch.equal(value, trained[key]) for key, value in model.state_dict().items())
        data = Data(config)
        again = evaluate(model, data.test_images, data.test_labels, config.modes[0], normalize=data.normalize,
                         seed=config.seed)
        assert again["accuracy"] == row["accuracy"] and again["flops_ratio"] == pytest.approx(row["flops_ratio"])
        assert entry["seed"] == config.seed and row["method"] == config.method


@pytest.mark.slow
def test_a_shipped_model_is_refused_for_other_settings(recorded):
    _, _, directory = recorded
    config = TINY.variants(0, None)[1][1]
    with pytest.raises(ValueError, match=r"trained with other settings: updates: 5 != 4"):
        pretrain.load_model(dataclasses.replace(config, updates=5), directory, TINY)
    with pytest.raises(ValueError, match="no pretrained model named"):
        pretrain.load_model(dataclasses.replace(config, tau=0.3), directory, TINY)


def test_the_recipe_fine_tunes_each_seed_from_its_own_plain_network(tmp_path):
    start = tmp_path / "seed2" / "pretrain" / CHECKPOINT
    start.parent.mkdir(parents=True)
    start.write_bytes(b"")                     # the config only checks that the file is there
    variants = pretrain.LONGER.variants(2, tmp_path)
    assert [label for label, _ in variants] == ["fixed", "SACT", "PSACT"]
    assert all(config.init_from == str(start) and config.seed == 2 for _, config in variants)
    assert all(config.updates == pretrain.LONGER.updates for _, config in variants)
    assert all(config.init_from is None for _, config in pretrain.LONGER.variants(2, None))
    assert pretrain.LONGER.pretrain(2).updates == 800 and pretrain.LONGER.seeds == (0, 1, 2)
    assert pretrain.LONGER.entry(variants[1][1]) == "spatial/longer/sact-tau0.1-seed2"


@pytest.mark.slow
def test_retraining_the_plain_network_from_the_recipe_repeats_its_first_evaluation(request):
    """The first 200 updates of seed 0's shipped pre-training, trained again as the recorded command trains
    them (one thread), give the recorded first evaluation bit for bit on the machine that recorded it; on
    another the float rounding differs (``repeats_here``). (Up to its first
    learning-rate drop at 60 %, a run with a constant rate is the same run.)"""
    config = pretrain.LONGER.variants(0, None)[0][1]
    _, entry = pretrain.load_model(config)
    if not repeats_here(request, pretrain.LONGER.entry(config), entry):
        return
    first = entry["pretrain_curve"][0]
    plain = dataclasses.replace(pretrain.LONGER.pretrain(0), updates=first["update"], milestones=(),
                                eval_every=first["update"])
    assert plain.learning_rate(first["update"] - 1) == pretrain.LONGER.pretrain(0).learning_rate(first["update"] - 1)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        row = train(plain, None, progress=False)
    finally:
        torch.set_num_threads(before)
    assert row["curve"][0]["fixed"] == first["fixed"] and row["curve"][0]["train_loss"] == first["train_loss"]
