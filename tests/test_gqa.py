"""GQA in GQA's published format: questions, spatial shards, vocabulary ids, errors, and MAC on a batch."""
import json
import pickle

import h5py
import numpy as np
import pytest
import torch

from adaptive import loop
from adaptive.clevr import dataset, gqa, mac, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# imageId -> (shard, row); shard 1 holds images named like GQA's "n..." ids
PLACES = {"2354786": (0, 0), "2375429": (0, 1), "n161313": (1, 0), "n5544": (1, 1)}


def question(image, text, answer, structural, semantic, detailed):
    """One question as GQA's balanced files hold it (the fields this module ignores too)."""
    return {"imageId": image, "question": text, "answer": answer, "fullAnswer": f"{answer}.", "isBalanced": True,
            "types": {"structural": structural, "semantic": semantic, "detailed": detailed},
            "semantic": [{"operation": "select", "argument": "cup (7)", "dependencies": []},
                         {"operation": structural, "argument": "", "dependencies": [0]}],
            "semanticStr": "select: cup (7)->...", "groups": {"global": None, "local": "x"},
            "entailed": [], "equivalent": [], "annotations": {"answer": {}, "question": {}, "fullAnswer": {}}}


TRAIN = {
    "01": question("2354786", "Is the sky dark?", "yes", "verify", "attr", "verifyAttr"),
    "02": question("2354786", "What is on the white wall?", "pipe", "query", "rel", "relS"),
    "03": question("2375429", "Which color is the cup, red or blue?", "red", "choose", "attr", "chooseAttr"),
    "04": question("2375429", "Is the cup red and the plate white?", "no", "logical", "obj", "logicAnd"),
    "05": question("n161313", "Are the cup and the plate the same color?", "yes", "compare", "attr", "sameColor"),
    "06": question("n161313", "What is on the white wall?", "clock", "query", "rel", "relS"),
}
VAL = {
    "11": question("n5544", "Is the zebra dark?", "yes", "verify", "attr", "verifyAttr"),          # <unk> word
    "12": question("2375429", "What is on the white wall?", "mirror", "query", "rel", "relS"),     # unseen answer
    "13": question("2354786", "Is the sky dark?", "no", "verify", "global", "verifyWeather"),     # unseen family
}


def write_shard(path, rows, row_shape=gqa.FEATURE_SHAPE, name="features"):
    with h5py.File(path, "w") as file:
        file.create_dataset(name, data=np.stack(rows).astype(np.float32).reshape(len(rows), *row_shape))


def image_rows(shard):
    """The rows of a shard: image (shard, row) is filled with 10 * shard + row."""
    return [np.full(gqa.FEATURE_SHAPE, 10 * shard + row, dtype=np.float32)
            for (s, row) in sorted(p for p in PLACES.values()) if s == shard]


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "gqa"
    (folder / "questions").mkdir(parents=True)
    (folder / "spatial").mkdir()
    (folder / "questions" / "train_balanced_questions.json").write_text(json.dumps(TRAIN))
    (folder / "questions" / "val_balanced_questions.json").write_text(json.dumps(VAL))
    info = {image: {"file": shard, "idx": row} for image, (shard, row) in PLACES.items()}
    (folder / "spatial" / gqa.INFO_FILE).write_text(json.dumps(info))
    for shard in (0, 1):
        write_shard(folder / "spatial" / f"gqa_spatial_{shard}.h5", image_rows(shard))
    return folder


def test_a_split_yields_clevr_examples_with_the_right_image(root):
    data = gqa.GqaQuestions.from_root(root, "train")
    assert len(data) == 6 and data.features.shape == (4, 2048, 7, 7)
    assert set(data.features.shards) == {0, 1}
    example = data[4]                                          # question "05", image n161313 = shard 1, row 0
    assert isinstance(example, dataset.Example)
    assert example.tokens.dtype == torch.int64 and example.tokens.shape == (data.tokens.shape[1],)
    assert example.features.shape == (2048, 7, 7) and example.features.dtype == torch.float32
    assert torch.all(example.features == 10.0)
    assert torch.all(data[2].features == 1.0)                  # question "03", image 2375429 = shard 0, row 1
    words = [data.vocab.tokens[i] for i in example.tokens[:example.length]]
    assert words == ["are", "the", "cup", "and", "the", "plate", "the", "same", "color", "?"]
    assert (example.tokens[example.length:] == 0).all()        # padded with <pad>
    assert data.unknown == {"tokens": 0, "answers": 0, "families": 0, "types": 0}


def test_vocabulary_answers_families_and_types_come_from_train_and_are_saved(root):
    vocab = gqa.vocab_for(root)
    assert (root / "vocab.json").is_file()
    assert vocab.tokens[:2] == ["<pad>", "<unk>"] and "zebra" not in vocab.tokens
    assert vocab.answers == ["clock", "no", "pipe", "red", "yes"]                   # val's "mirror" is not there
    assert vocab.types == ["choose", "compare", "logical", "query", "verify"]       # types.structural
    assert [vocab.family_names[i] for i in range(len(vocab.families))] == [
        "chooseAttr", "logicAnd", "relS", "sameColor", "verifyAttr"]                 # types.detailed
    assert vocab.families == [("detailed", i) for i in range(5)] and gqa.family_field_of(vocab) == "detailed"
    data = gqa.GqaQuestions.from_root(root, "train", vocab)
    assert data.answers.tolist() == [4, 2, 3, 1, 4, 0]
    assert data.qtypes.tolist() == [4, 3, 0, 2, 1, 3]
    assert data.families.tolist() == [4, 2, 0, 1, 3, 2]
    assert train.family_names(vocab) == ["chooseAttr", "logicAnd", "relS", "sameColor", "verifyAttr"]


def test_val_reuses_the_training_ids_and_marks_what_training_never_saw(root):
    vocab = gqa.vocab_for(root)
    val = gqa.GqaQuestions.from_root(root, "val")                # loads the saved training vocabulary
    assert val.vocab == vocab
    assert val.answers.tolist() == [vocab.answers.index("yes"), -1, vocab.answers.index("no")]
    assert val.qtypes.tolist() == [vocab.types.index("verify"), vocab.types.index("query"), vocab.types.index("verify")]
    assert val.families.tolist() == [4, 2, -1]                  # verifyWeather: never in training
    assert 1 in val[0].tokens.tolist()                          # "zebra" is <unk>
    assert val.unknown == {"tokens": 1, "answers": 1, "families": 1, "types": 0}
    assert torch.all(val[0].features == 11.0)                   # n5544 = shard 1, row 1


def test_an_unseen_answer_is_refused_where_it_would_be_a_training_target(root):
    vocab = gqa.build_vocab(gqa.read_questions(root / "questions" / "train_balanced_questions.json"))
    with pytest.raises(ValueError, match=r"never seen in training.*'12'.*'mirror'.*unknown_answers='keep'"):
        gqa.GqaQuestions.from_root(root, "val", vocab, unknown_answers="raise")
    with pytest.raises(ValueError, match="unknown_answers must be one of 'keep', 'raise'; got 'drop'"):
        gqa.GqaQuestions.from_root(root, "val", vocab, unknown_answers="drop")


def test_families_by_semantic_type_and_a_saved_vocabulary_of_another_field(root):
    vocab = gqa.vocab_for(root, family_field="semantic", path=root / "semantic.json")
    assert [vocab.family_names[i] for i in range(3)] == ["attr", "obj", "rel"]
    gqa.vocab_for(root)                                         # <root>/vocab.json, by types.detailed
    with pytest.raises(ValueError, match=r"vocab.json names families by types.detailed, not types.semantic"):
        gqa.vocab_for(root, family_field="semantic")
    with pytest.raises(ValueError, match="family_field must be one of 'detailed', 'semantic'; got 'global'"):
        gqa.build_vocab(gqa.read_questions(root / "questions" / "train_balanced_questions.json"), "global")


def test_a_batch_runs_through_collate_and_mac(root):
    data = gqa.GqaQuestions.from_root(root, "train")
    batch = next(iter(dataset.make_loader(data, batch_size=4, shuffle=False)))
    assert batch.features.shape == (4, 2048, 7, 7) and batch.tokens.shape == (4, int(batch.lengths.max()))
    torch.manual_seed(0)
    model = mac.MAC(len(data.vocab.tokens), len(data.vocab.answers), data.features.shape[1], width=16,
                    max_steps=4, embed_dim=8)
    out = loop.run(model.step, model.initial_state(batch.tokens, batch.lengths, batch.features),
                   loop.Halting("dact", 4, tau=1e-3), target=batch.answers)
    out.loss.backward()
    assert out.probs.shape == (4, len(data.vocab.answers)) and torch.isfinite(out.loss)


def test_a_pickled_dataset_reopens_its_shards(root):
    data = gqa.GqaQuestions.from_root(root, "train")
    data[0]                                                     # opens shard 0 here
    copy = pickle.loads(pickle.dumps(data))                     # as a DataLoader worker gets it
    assert torch.equal(copy[5].features, data[5].features)


def test_the_trainer_trains_on_gqa_when_the_config_says_so(root, tmp_path):
    config = gqa.paper_config(root, "pretrain", width=16, embed_dim=8, max_steps=2, epochs=1, batch_size=3)
    assert config.dataset == "gqa" and "dataset" in config.comparable()
    row = train.train(config, tmp_path / "run", progress=False)
    assert row["epochs"] == 1 and row["questions"] == 3 and 0 <= row["accuracy"] <= 1
    assert set(row["family_accuracy"]) == {"verifyAttr", "relS"}   # val's unseen family is left out
    assert set(row["type_accuracy"]) == {"verify", "query"}


def test_the_dataset_setting_is_checked_and_clevr_checkpoints_keep_their_configuration():
    with pytest.raises(ValueError, match="dataset must be one of 'clevr', 'gqa'; got 'vqa'"):
        train.MacConfig("data/x", dataset="vqa")
    assert "dataset" not in train.MacConfig("data/x").comparable()


def test_paper_config_is_the_papers_gqa_recipe():
    pre = gqa.paper_config("data/gqa", "pretrain", device="cuda")
    assert (pre.method, pre.gate, pre.max_steps, pre.epochs, pre.width, pre.embed_dim, pre.batch_size) == (
        "fixed", False, 4, 5, 512, 300, 64)
    tuned = gqa.paper_config("data/gqa", "finetune", "dact", 1e-3, init_from="build/gqa/pretrain/checkpoint.pt")
    assert (tuned.method, tuned.tau, tuned.epochs, tuned.max_steps) == ("dact", 1e-3, 15, 4)
    assert gqa.PAPER.dact_taus == (5e-2, 1e-2, 5e-3, 1e-3)
    with pytest.raises(ValueError, match="stage='finetune' needs init_from"):
        gqa.paper_config("data/gqa", "finetune", "act", 1e-3)
    with pytest.raises(ValueError, match="stage='finetune' needs method"):
        gqa.paper_config("data/gqa", "finetune", init_from="x.pt")
    with pytest.raises(ValueError, match="pre-trains a plain MAC.*method='dact'"):
        gqa.paper_config("data/gqa", "pretrain", "dact")
    with pytest.raises(ValueError, match="stage must be one of 'pretrain', 'finetune'; got 'train'"):
        gqa.paper_config("data/gqa", "train")


def test_check_counts_a_download_and_writes_nothing(root, capsys):
    report = gqa.main(["check", "--root", str(root)])
    assert report["images"] == 4 and report["shards"] == 2 and report["answers"] == 5
    assert report["splits"]["train"]["questions"] == 6 and report["splits"]["val"]["unknown"]["answers"] == 1
    printed = capsys.readouterr().out
    assert "4 images in 2 shards, rows (2048, 7, 7)" in printed and "val: 3 questions about 3 images" in printed
    assert not (root / "vocab.json").exists()


# --------------------------------------------------------------------------------------------
# Errors, each before any compute


def test_a_missing_file_is_named_with_where_to_download_gqa(root):
    (root / "questions" / "val_balanced_questions.json").unlink()
    with pytest.raises(ValueError, match=r"val_balanced_questions.json is not in .*dorarad/gqa/download.html.*"
                                         r"questions1.2.zip"):
        gqa.GqaQuestions.from_root(root, "val")
    (root / "spatial" / gqa.INFO_FILE).unlink()
    with pytest.raises(ValueError, match=r"gqa_spatial_info.json is not in .*spatialFeatures.zip"):
        gqa.GqaQuestions.from_root(root, "train")
    with pytest.raises(ValueError, match="split must be one of 'train', 'val', 'testdev'; got 'test'"):
        gqa.questions_file(root, "test")
    with pytest.raises(ValueError, match=r"data_root .*nowhere does not exist; nothing is downloaded"):
        gqa.load_data(gqa.paper_config(root / "nowhere", "pretrain"))


def test_a_missing_shard_is_named(root):
    (root / "spatial" / "gqa_spatial_1.h5").unlink()
    with pytest.raises(ValueError, match=r"gqa_spatial_1.h5 does not exist but gqa_spatial_info.json places images"):
        gqa.SpatialFeatures(root / "spatial")


def test_a_question_whose_image_has_no_feature_row_is_refused(root):
    broken = {**TRAIN, "07": question("999", "Is the sky dark?", "yes", "verify", "attr", "verifyAttr")}
    (root / "questions" / "train_balanced_questions.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"train question '07' is about image '999', which has no row in .*info"):
        gqa.GqaQuestions.from_root(root, "train")


def test_an_index_row_beyond_its_shard_is_refused(root):
    info = {image: {"file": shard, "idx": row} for image, (shard, row) in PLACES.items()}
    info["n5544"]["idx"] = 7
    (root / "spatial" / gqa.INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"places image 'n5544' in row 7 of gqa_spatial_1.h5, which has 2 rows"):
        gqa.SpatialFeatures(root / "spatial")
    info["n5544"] = {"file": 1}
    (root / "spatial" / gqa.INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"image 'n5544' has \{'file': 1\}; it must be \{'file'"):
        gqa.SpatialFeatures(root / "spatial")


def test_a_features_file_with_another_dataset_name_or_shape_is_refused(root):
    shard = root / "spatial" / "gqa_spatial_0.h5"
    write_shard(shard, image_rows(0), name="data")
    with pytest.raises(ValueError, match=r"gqa_spatial_0.h5 has no dataset named 'features' \(it has \['data'\]\)"):
        gqa.SpatialFeatures(root / "spatial")
    write_shard(shard, image_rows(0), row_shape=(7, 7, 2048))           # channels last
    with pytest.raises(ValueError, match=r"has shape \(2, 7, 7, 2048\); it must be \(N, 2048, 7, 7\)"):
        gqa.SpatialFeatures(root / "spatial")
    shard.write_text("not HDF5")
    with pytest.raises(ValueError, match="gqa_spatial_0.h5 is not a readable HDF5 file"):
        gqa.SpatialFeatures(root / "spatial")
    with pytest.raises(ValueError, match=r"row_shape must be a tuple of integers >= 1 .* got \[2048, 7, 7\]"):
        gqa.SpatialFeatures(root / "spatial", row_shape=[2048, 7, 7])


@pytest.mark.parametrize("content, message", [
    ("{\"01\": ", r"is not valid JSON"),
    ("[1, 2]", r"must be a JSON object mapping question ids to questions .* got a JSON list"),
    ("{}", r"holds no questions"),
    ("{\"01\": 3}", r"question '01' must be a JSON object, got int"),
    (json.dumps({"01": {"question": "Is it?", "types": {}}}), r"question '01' needs a string 'imageId', got None"),
    (json.dumps({"01": {"imageId": "1", "question": "Is it?", "types": {"structural": "verify"}}}),
     r"question '01' needs 'types' with strings 'structural', 'semantic' and 'detailed'"),
    (json.dumps({"01": {**TRAIN["01"], "answer": True}}), r"question '01' has answer True; it must be a string"),
])
def test_malformed_questions_are_refused_naming_the_file_and_question(root, content, message):
    path = root / "questions" / "train_balanced_questions.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        gqa.read_questions(path)


def test_a_malformed_features_index_is_refused(root):
    (root / "spatial" / gqa.INFO_FILE).write_text("[]")
    with pytest.raises(ValueError, match=r"must be a non-empty JSON object mapping imageIds"):
        gqa.SpatialFeatures(root / "spatial")
    (root / "spatial" / gqa.INFO_FILE).write_text("{")
    with pytest.raises(ValueError, match=r"gqa_spatial_info.json is not valid JSON"):
        gqa.SpatialFeatures(root / "spatial")


def test_a_clevr_vocabulary_is_refused(root):
    from adaptive.clevr.questions import Vocab
    clevr = Vocab(["<pad>", "<unk>", "cube"], ["yes"], [("compare_integer.json", 0)], ["exist"])
    with pytest.raises(ValueError, match="is not a GQA vocabulary"):
        gqa.GqaQuestions.from_root(root, "train", clevr)
