"""Chapter 5's pretrained MAC: a recipe trained by the package's trainer, recorded, evaluated and fine-tuned from."""
import dataclasses
import shutil

import pytest
import torch
from conftest import repeats_here

from adaptive.clevr import pretrain
from adaptive.clevr.train import MacConfig, load_trained, train
from adaptive.infra import checkpoint, pretrained

TINY = pretrain.Recipe("a tiny MAC for the tests",
                       data={"train": 12, "val": 6, "questions_per_image": 4, "seed": 0, "features": "attributes"},
                       config={"method": "fixed", "max_steps": 3, "width": 16, "embed_dim": 8, "stem_stride": 2,
                               "lr": 1e-3, "ema": 0.9, "dropout": None, "epochs": 1, "seed": 0}, threads=1)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """TINY trained and recorded once: (its results row, the pretrained folder, the data prefix)."""
    folder = tmp_path_factory.mktemp("clevr-pretrain")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(pretrain.RECIPES, "tiny", TINY)
        row = pretrain.train("tiny", checkpoint_dir=folder / "checkpoints", directory=folder / "pretrained",
                             progress=False, data_prefix=str(folder / "data"))
    return row, folder / "pretrained", str(folder / "data")


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(pretrain.RECIPES, "tiny", TINY)
    return "tiny"


@pytest.mark.slow
def test_the_recorded_model_has_a_complete_manifest_entry(recorded, tiny):
    row, directory, _ = recorded
    assert pretrained.verify(directory) == []
    entry = pretrained.manifest(directory)[pretrain.entry_name(tiny)]
    assert entry["command"] == "python -m adaptive.clevr.pretrain tiny"
    assert entry["seed"] == 0 and entry["threads"] == 1 and entry["data"] == TINY.data
    assert entry["curve"] == row["curve"] and len(entry["curve"]) == 1
    assert entry["config"] == TINY.mac_config(prefix=recorded[2]).comparable()


@pytest.mark.slow
def test_the_shipped_weights_are_the_trained_ema_and_evaluate_to_the_trained_accuracy(recorded, tiny):
    row, directory, prefix = recorded
    mac, config, vocab, _ = pretrain.load_model(tiny, directory)
    trained = checkpoint.read(directory.parent / "checkpoints" / tiny / "checkpoint.pt")["ema"]
    assert all(torch.equal(value, trained[key]) for key, value in mac.state_dict().items())
    assert config == TINY.mac_config(prefix=prefix)
    evaluated = pretrain.evaluate_pretrained(tiny, directory)
    assert evaluated["accuracy"] == row["accuracy"] and evaluated["family_accuracy"] == row["family_accuracy"]
    assert evaluated["pretrained"]["name"] == pretrain.entry_name(tiny)
    assert evaluated["curve"] == row["curve"]
    elsewhere = pretrain.evaluate_pretrained(tiny, directory, data_root=TINY.data_root(prefix))   # the same folder
    assert elsewhere["accuracy"] == row["accuracy"]


@pytest.mark.slow
def test_variants_fine_tune_from_the_shipped_file(recorded, tiny, tmp_path):
    _, directory, prefix = recorded
    path, _ = pretrain.model_path(tiny, directory)
    assert load_trained(path)[1] == TINY.mac_config(prefix=prefix)
    start = TINY.mac_config(prefix=prefix)
    config = dataclasses.replace(start, method="dact", tau=1e-3, init_from=str(path), max_train_batches=1)
    row = train(config, tmp_path / "dact", progress=False)
    assert row["init"]["path"] == str(path) and row["init"]["missing"] == []


def test_differences_name_what_makes_another_run(tiny):
    config = TINY.mac_config()
    assert TINY.differences(config) == []
    assert TINY.differences(dataclasses.replace(config, device="cuda", workers=2, model_steps=3)) == []
    assert TINY.differences(dataclasses.replace(config, width=32, seed=1)) == ["width: 32 != 16", "seed: 1 != 0"]
    assert TINY.differences(dataclasses.replace(config, data_root="elsewhere"))[0].startswith("data_root:")


def test_unknown_recipes_are_named():
    with pytest.raises(ValueError, match="no pretrained MAC recipe named 'nope'; there are: mac12"):
        pretrain.train("nope")
    with pytest.raises(ValueError, match="epochs"):
        pretrain.RECIPES["mac12"].mac_config(epochs=0)


def test_the_recipe_is_chapter_5s_default_pre_training():
    """The chapter uses the shipped model exactly where its own pre-training would be this recipe."""
    recipe = pretrain.RECIPES["mac12"]
    config = recipe.mac_config()
    assert isinstance(config, MacConfig) and config.max_steps == 12 and config.method == "fixed"
    assert config.data_root == "build/data/mini-clevr-attributes-6000-500-q10-seed0"


@pytest.mark.slow
def test_more_epochs_continue_the_shipped_checkpoint(recorded, tiny, tmp_path):
    row, directory, prefix = recorded
    longer = pretrain.train(tiny, epochs=2, checkpoint_dir=tmp_path / "c", directory=directory, record=False,
                            progress=False, data_prefix=prefix)
    assert longer["curve"][:1] == row["curve"] and len(longer["curve"]) == 2    # resumed, not retrained
    again = pretrain.train(tiny, epochs=2, checkpoint_dir=tmp_path / "s", directory=directory, record=False,
                           progress=False, data_prefix=prefix, from_scratch=True)
    assert [point["val_accuracy"] for point in again["curve"]] == [point["val_accuracy"] for point in longer["curve"]]


def test_a_recipe_that_starts_from_another_fine_tunes_its_shipped_file(tmp_path, tiny, monkeypatch):
    more = dataclasses.replace(TINY, description="tiny, continued", starts_from=tiny)
    monkeypatch.setitem(pretrain.RECIPES, "more", more)
    assert more.mac_config(directory=tmp_path).init_from == str(tmp_path / "clevr" / "tiny-seed0.pt")
    with pytest.raises(ValueError, match="tiny"):            # not recorded there: refused before any compute
        pretrain.train("more", checkpoint_dir=tmp_path / "checkpoints", directory=tmp_path, progress=False,
                       data_prefix=str(tmp_path / "data"))
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_a_continued_recipe_starts_from_the_recorded_ema_weights(recorded, tiny, tmp_path, monkeypatch):
    _, directory, prefix = recorded
    shutil.copytree(directory, tmp_path / "pretrained")
    monkeypatch.setitem(pretrain.RECIPES, "more", dataclasses.replace(TINY, starts_from=tiny))
    pretrain.train("more", checkpoint_dir=tmp_path / "checkpoints", directory=tmp_path / "pretrained",
                   progress=False, data_prefix=prefix)
    start = tmp_path / "pretrained" / "clevr" / "tiny-seed0.pt"
    entry = pretrained.manifest(tmp_path / "pretrained")[pretrain.entry_name("more")]
    assert entry["config"]["init_from"] == str(start)
    payload, _ = pretrained.load(pretrain.entry_name("more"), tmp_path / "pretrained")
    assert payload["init"]["path"] == str(start) and payload["init"]["missing"] == []
    assert pretrained.verify(tmp_path / "pretrained") == []


def test_a_continued_curve_numbers_the_second_stage_after_the_first():
    first = [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.6}]
    second = [{"epoch": 1, "val_accuracy": 0.7}]
    assert pretrain.continued_curve(first, second) == [*first, {"epoch": 3, "val_accuracy": 0.7}]


TINY_FINETUNES = pretrain.Finetunes(starts_from="tiny", data_from="tiny", fixed_lengths=(1,), act_taus=(),
                                    dact_taus=(0.01,), longer_steps=4, seeds=(0, 1), workers=1)


@pytest.mark.slow
def test_shipped_fine_tunes_are_their_trained_ema_and_evaluate_to_the_trained_accuracy(recorded, tiny, tmp_path):
    _, directory, prefix = recorded
    shutil.copytree(directory, tmp_path / "pretrained")
    shipped = tmp_path / "pretrained"
    rows = pretrain.train_finetunes(tmp_path / "checkpoints", shipped, TINY_FINETUNES, prefix=prefix)
    configs = [config for seed in (0, 1) for _, config in TINY_FINETUNES.variants(seed, shipped, prefix)]
    assert [config.name() for config in configs] == [
        "fixed-tau0-L1-seed0", "fixed-gate-tau0-L3-seed0", "dact-tau0.01-L3-seed0", "dact-tau0.01-L4-seed0",
        "fixed-tau0-L1-seed1", "fixed-gate-tau0-L3-seed1", "dact-tau0.01-L3-seed1", "dact-tau0.01-L4-seed1"]
    assert pretrained.verify(shipped) == []
    for config, row in zip(configs, rows):
        payload, entry = pretrained.load(TINY_FINETUNES.entry(config), shipped)
        assert "optimizer" not in payload and entry["command"] == "python -m adaptive.clevr.pretrain finetunes"
        assert entry["seed"] == config.seed and entry["curve"] == row["curve"]
        evaluated = pretrain.evaluate_finetune(config, shipped, TINY_FINETUNES)
        assert evaluated["accuracy"] == row["accuracy"] and evaluated["mean_steps"] == row["mean_steps"]
        assert evaluated["pretrained"]["name"] == TINY_FINETUNES.entry(config)
    assert TINY_FINETUNES.ships(configs[:4], shipped, prefix) and TINY_FINETUNES.ships(configs[4:], shipped, prefix)
    assert not TINY_FINETUNES.ships(configs, shipped, prefix)                           # two seeds at once
    assert not TINY_FINETUNES.ships([dataclasses.replace(configs[0], lr=0.5), *configs[1:4]], shipped, prefix)
    assert not TINY_FINETUNES.ships([dataclasses.replace(c, seed=5) for c in configs[:4]], shipped, prefix)
    assert TINY_FINETUNES.ships([dataclasses.replace(c, workers=2) for c in configs[:4]], shipped, prefix)


def test_chapter_5s_fine_tunes_are_its_default_variants():
    """The grid's defaults are the chapter's: it reads its parameters' defaults from FINETUNES."""
    assert pretrain.FINETUNES.seeds == (0, 1, 2) and pretrain.FINETUNES.starts_from == "mac12-24k"
    assert pretrain.FINETUNES.data_from == "mac12"


@pytest.mark.slow
def test_retraining_a_shipped_fine_tune_repeats_its_weights(tmp_path, request):
    """The recorded command's training repeats a shipped fine-tune bit for bit on the machine that recorded
    it (the quickest one: MAC of 1 step, seed 1, one thread as in the command's workers); on another the
    float rounding differs (``repeats_here``)."""
    config = next(config for _, config in pretrain.FINETUNES.variants(1) if config.name() == "fixed-tau0-L1-seed1")
    name = pretrain.FINETUNES.entry(config)
    shipped, entry = pretrained.load(name)
    if not repeats_here(request, name, entry):
        return
    pretrain.make_data(pretrain.FINETUNES.data_from, config.data_root)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        row = train(config, tmp_path / "run", progress=False)
    finally:
        torch.set_num_threads(before)
    trained = checkpoint.read(tmp_path / "run" / "checkpoint.pt")["ema"]
    assert all(torch.equal(value, trained[key]) for key, value in shipped["ema"].items())
    assert [point["val_accuracy"] for point in row["curve"]] == [point["val_accuracy"] for point in entry["curve"]]
