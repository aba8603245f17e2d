"""CLEVR data layer: mini-CLEVR generation, the shared question loader, HDF5 features, the dataset."""
import json
import pickle
import random
import re
import sys
from collections import Counter

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from adaptive.clevr import dataset, executor, features, minigen, questions, render, scenes, templates

CLEVR_FUNCTIONS = ({"scene", "unique", "relate", "count", "exist", "union", "intersect", "equal_integer",
                    "less_than", "greater_than"}
                   | {f"{kind}_{a}" for kind in ("filter", "query", "same", "equal")
                      for a in ("color", "shape", "size", "material")})
ANSWERS = set(minigen.ANSWERS)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """A 12-image train split and a 6-image val split with features, loaded back."""
    root = tmp_path_factory.mktemp("data") / "mini-clevr"
    minigen.generate_split(root, "train", 12, seed=0, features_grid=16)
    minigen.generate_split(root, "val", 6, seed=0, features_grid=16)

    def load(path):
        return json.loads(path.read_text())
    return {"root": root,
            "scenes": {s: load(minigen.scenes_path(root, s)) for s in ("train", "val")},
            "questions": {s: load(minigen.questions_path(root, s)) for s in ("train", "val")}}


def _scene_of(mini, question):
    return mini["scenes"][question["split"]]["scenes"][question["image_index"]]


def _all_questions(mini):
    return mini["questions"]["train"]["questions"] + mini["questions"]["val"]["questions"]


# ---------------------------------------------------------------------------------- mini-CLEVR


def test_scene_json_schema_and_vocabularies(mini):
    for split in ("train", "val"):
        payload = mini["scenes"][split]
        assert payload["info"]["split"] == split
        assert [s["image_index"] for s in payload["scenes"]] == list(range(len(payload["scenes"])))
        for scene in payload["scenes"]:
            assert set(scene) >= {"split", "image_index", "image_filename", "objects", "relationships", "directions"}
            assert scene["image_filename"] == f"miniCLEVR_{split}_{scene['image_index']:06d}.png"
            assert 3 <= len(scene["objects"]) <= 6
            for obj in scene["objects"]:
                assert set(obj) == {"color", "shape", "size", "material", "3d_coords", "pixel_coords", "rotation"}
                assert obj["color"] in scenes.COLORS and obj["shape"] in scenes.SHAPES
                assert obj["size"] in scenes.SIZES and obj["material"] in scenes.MATERIALS
                x, y, z = obj["3d_coords"]
                assert abs(x) <= scenes.PLANE and abs(y) <= scenes.PLANE and z == scenes.RADIUS[obj["size"]]
                assert len(obj["pixel_coords"]) == 3
            assert set(scene["relationships"]) == {"left", "right", "front", "behind"}
            assert all(len(rows) == len(scene["objects"]) for rows in scene["relationships"].values())


def test_images_exist_and_show_each_object_in_its_colour(mini):
    palette = {name: np.array(rgb) for name, rgb in render.PALETTE.items()}
    for split in ("train", "val"):
        for scene in mini["scenes"][split]["scenes"]:
            image = Image.open(mini["root"] / "images" / split / scene["image_filename"])
            assert image.size == (minigen.IMAGE_SIZE, minigen.IMAGE_SIZE) and image.mode == "RGB"
            pixels = np.asarray(image, dtype=float)
            for obj in scene["objects"]:
                u, v, _ = obj["pixel_coords"]
                seen = pixels[int(round(v)), int(round(u))]
                nearest = min(palette, key=lambda name: np.linalg.norm(palette[name] - seen))
                assert nearest == obj["color"], (scene["image_filename"], obj)


def test_question_json_schema(mini):
    for split in ("train", "val"):
        payload = mini["questions"][split]
        assert {"split", "families", "answers", "types"} <= set(payload["info"])
        items = payload["questions"]
        assert len(items) >= 4 * len(mini["scenes"][split]["scenes"])          # ~5 per image
        assert [q["question_index"] for q in items] == list(range(len(items)))
        for q in items:
            assert set(q) == {"split", "image_index", "image_filename", "question", "answer", "program",
                              "question_family_index", "template_filename", "question_index"}
            assert q["split"] == split and q["question"].endswith("?") and q["answer"] in ANSWERS
            assert q["image_filename"] == minigen.image_filename(split, q["image_index"])
            for index, node in enumerate(q["program"]):
                assert set(node) == {"function", "inputs", "value_inputs"}
                assert node["function"] in CLEVR_FUNCTIONS
                assert all(0 <= i < index for i in node["inputs"])
                if node["function"].startswith("filter_"):
                    value = node["value_inputs"][0]
                    assert value in scenes.ATTRIBUTES[node["function"][7:]]
                    words = {value, *minigen.SYNONYMS.get(value, ())}
                    assert words & {w.rstrip("s") for w in questions.tokenize(q["question"])}, q["question"]
                if node["function"] == "relate":
                    assert node["value_inputs"][0] in scenes.RELATIONS


def test_every_phrasing_of_a_family_names_exactly_its_program_placeholders():
    for _filename, _index, family in templates.all_families():
        in_program = {placeholder for _, _, placeholder in family.flat if placeholder}
        for text in family.texts:
            assert set(re.findall(r"<[ZCMSR]\d?>", text)) == in_program, text


def test_every_answer_is_the_output_of_its_program(mini):
    for q in _all_questions(mini):
        assert executor.execute(q["program"], _scene_of(mini, q)) == q["answer"], q["question"]


def test_unique_always_finds_exactly_one_object(mini):
    checked = 0
    for q in _all_questions(mini):
        outputs = executor.run(q["program"], _scene_of(mini, q))
        for node in q["program"]:
            if node["function"] == "unique":
                assert len(outputs[node["inputs"][0]]) == 1
                checked += 1
    assert checked > 20


def test_generator_rejects_objects_it_cannot_single_out():
    twin = {"color": "red", "shape": "cube", "size": "large", "material": "rubber", "3d_coords": [0, 0, 0.8]}
    scene = {"objects": [dict(twin), dict(twin, **{"3d_coords": [1, 1, 0.8]})]}
    scene["relationships"] = scenes.relationships(scene["objects"])
    family = templates.TEMPLATE_FILES["zero_hop.json"][0]                       # query_color
    rng = random.Random(0)
    for _ in range(50):
        with pytest.raises(minigen.Rejected):
            minigen.fill(family, scene, rng)
    with pytest.raises(executor.ProgramError, match="exactly one"):
        executor.execute([{"function": "scene", "inputs": [], "value_inputs": []},
                          {"function": "unique", "inputs": [0], "value_inputs": []},
                          {"function": "query_color", "inputs": [1], "value_inputs": []}], scene)


def test_relationships_follow_the_coordinates(mini):
    for scene in mini["scenes"]["train"]["scenes"] + mini["scenes"]["val"]["scenes"]:
        rel, objects = scene["relationships"], scene["objects"]
        assert rel == scenes.relationships(objects, scene["directions"])
        for i, a in enumerate(objects):
            for j, b in enumerate(objects):
                if i == j:
                    assert j not in rel["left"][i] + rel["right"][i] + rel["front"][i] + rel["behind"][i]
                    continue
                assert (j in rel["left"][i]) == (b["3d_coords"][0] < a["3d_coords"][0]) == (i in rel["right"][j])
                assert (j in rel["behind"][i]) == (b["3d_coords"][1] > a["3d_coords"][1]) == (i in rel["front"][j])
                assert (j in rel["left"][i]) != (j in rel["right"][i])             # no ambiguous pair
                assert (j in rel["front"][i]) != (j in rel["behind"][i])


def test_families_start_at_zero_in_each_template_file_and_get_distinct_global_ids(mini):
    assert len(templates.TEMPLATE_FILES) >= 6
    per_file = {}
    for filename, index, _family in templates.all_families():
        per_file.setdefault(filename, []).append(index)
    assert all(indices == list(range(len(indices))) for indices in per_file.values())
    used = Counter((q["template_filename"], q["question_family_index"]) for q in _all_questions(mini))
    assert all(0 <= i < len(per_file[f]) for f, i in used)
    vocab = questions.build_vocab(minigen.questions_path(mini["root"], "train"))
    ids = [vocab.family_id(f, i) for f, i, _ in templates.all_families()]
    assert sorted(ids) == list(range(len(ids)))                                  # distinct, 0..F-1
    assert vocab.family_id("and_or.json", 0) != vocab.family_id("zero_hop.json", 0)
    assert vocab.family_names[vocab.family_id("zero_hop.json", 0)] == "query_color"


def test_same_seed_same_data_and_small_runs_are_prefixes(mini, tmp_path):
    minigen.generate_split(tmp_path, "train", 4, seed=0)
    small = json.loads(minigen.questions_path(tmp_path, "train").read_text())["questions"]
    big = [q for q in mini["questions"]["train"]["questions"] if q["image_index"] < 4]
    assert small == big
    assert (json.loads(minigen.scenes_path(tmp_path, "train").read_text())["scenes"]
            == mini["scenes"]["train"]["scenes"][:4])
    minigen.generate_split(tmp_path / "other", "train", 4, seed=1)
    other = json.loads(minigen.scenes_path(tmp_path / "other", "train").read_text())["scenes"]
    assert other != mini["scenes"]["train"]["scenes"][:4]


def test_answers_are_balanced_within_families(tmp_path):
    minigen.generate_split(tmp_path, "train", 150, seed=3)
    items = json.loads(minigen.questions_path(tmp_path, "train").read_text())["questions"]
    families = Counter((q["template_filename"], q["question_family_index"]) for q in items)
    assert len(families) == len(templates.all_families())
    assert max(families.values()) < 2 * min(families.values())
    yes_no = [q["answer"] for q in items if q["answer"] in ("yes", "no")]
    assert 0.4 < yes_no.count("yes") / len(yes_no) < 0.6
    for attribute, values in scenes.ATTRIBUTES.items():
        answers = Counter(q["answer"] for q in items if q["program"][-1]["function"] == f"query_{attribute}")
        assert set(answers) == set(values)
        assert max(answers.values()) / sum(answers.values()) <= 2 / len(values)     # at most twice fair


def test_cli_writes_clevr_layout(tmp_path, capsys):
    minigen.main(["--out", str(tmp_path / "m"), "--train", "3", "--val", "2", "--seed", "5", "--grid", "8"])
    out = capsys.readouterr().out
    assert "train: 3 images" in out and "val: 2 images" in out
    for split, n in (("train", 3), ("val", 2)):
        assert (tmp_path / "m" / "questions" / f"miniCLEVR_{split}_questions.json").is_file()
        assert (tmp_path / "m" / "scenes" / f"miniCLEVR_{split}_scenes.json").is_file()
        assert len(list((tmp_path / "m" / "images" / split).glob("miniCLEVR_*.png"))) == n
        assert features.feature_shape(tmp_path / "m" / "features" / f"{split}.h5") == (n, 3, 8, 8)


def test_cli_writes_attribute_features_that_match_the_scenes(tmp_path):
    minigen.main(["--out", str(tmp_path / "a"), "--train", "3", "--val", "2", "--features", "attributes"])
    scene_file = tmp_path / "a" / "scenes" / "miniCLEVR_val_scenes.json"
    val_scenes = json.loads(scene_file.read_text())["scenes"]
    rows = features.FeatureFile(tmp_path / "a" / "features" / "val.h5")
    assert features.feature_shape(tmp_path / "a" / "features" / "val.h5") == (2, 16, 16, 16)
    for scene in val_scenes:
        expected = features.attribute_grid(scene, minigen.IMAGE_SIZE, 16)
        assert torch.equal(rows[scene["image_index"]], torch.from_numpy(expected))


def test_bad_generator_arguments_name_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="n_images"):
        minigen.generate_split(tmp_path, "train", 0)
    with pytest.raises(ValueError, match="split"):
        minigen.generate_split(tmp_path, "test", 3)
    with pytest.raises(ValueError, match="features_kind"):
        minigen.generate_split(tmp_path, "train", 3, features_grid=8, features_kind="voxels")
    with pytest.raises(ValueError, match="questions_per_image"):
        minigen.generate_split(tmp_path, "train", 3, questions_per_image=0)


# ------------------------------------------------------------------- questions (both datasets)


def test_tokenize_splits_punctuation_and_lowercases():
    assert questions.tokenize("There is a Cube; what color is it, then?") == [
        "there", "is", "a", "cube", ";", "what", "color", "is", "it", ",", "then", "?"]


def _program(*functions):
    return [{"function": f, "inputs": [i - 1] if i else [], "value_inputs": []} for i, f in enumerate(functions)]


@pytest.fixture
def clevr(tmp_path):
    """A hand-written CLEVR v1.0-format dataset: 2 template files whose indices overlap."""
    root = tmp_path / "CLEVR_v1.0"
    (root / "questions").mkdir(parents=True)
    train = [
        ("Are there more cubes than spheres?", True, "compare_integer.json", 0, 0,
         _program("scene", "count", "greater_than")),
        ("How many big things are there?", 3, "zero_hop.json", 0, 1, _program("scene", "filter_size", "count")),
        ("What color is the cube?", "red", "zero_hop.json", 1, 1,
         _program("scene", "filter_shape", "unique", "query_color")),
        ("Are there fewer balls than cubes?", "no", "compare_integer.json", 1, 2,
         _program("scene", "filter_shape", "count")),
    ]
    val = [("How many gigantic things are there?", "3", "zero_hop.json", 0, 2,
            _program("scene", "filter_size", "count"))]
    for split, rows in (("train", train), ("val", val)):
        items = [{"split": split, "image_index": image, "image_filename": f"CLEVR_{split}_{image:06d}.png",
                  "question": text, "answer": answer, "program": program, "template_filename": template,
                  "question_family_index": family, "question_index": k}
                 for k, (text, answer, template, family, image, program) in enumerate(rows)]
        path = root / "questions" / f"CLEVR_{split}_questions.json"
        path.write_text(json.dumps({"info": {"split": split, "version": "1.0"}, "questions": items}))
    (root / "features").mkdir()
    for split in ("train", "val"):
        with h5py.File(root / "features" / f"{split}.h5", "w") as file:
            file["features"] = np.arange(3 * 4 * 2 * 2, dtype=np.float32).reshape(3, 4, 2, 2)
    return root


def test_clevr_format_global_family_ids_and_types(clevr):
    vocab = questions.build_vocab(questions.questions_file(clevr, "train"))
    assert vocab.families == [("compare_integer.json", 0), ("compare_integer.json", 1),
                              ("zero_hop.json", 0), ("zero_hop.json", 1)]
    assert vocab.family_id("zero_hop.json", 0) == 2 and vocab.family_id("compare_integer.json", 0) == 0
    assert vocab.types == ["count", "greater_than", "query_color"]
    assert vocab.answers == ["3", "no", "red", "yes"]                             # True -> yes, 3 -> "3"
    with pytest.raises(ValueError, match="never occurs"):
        vocab.family_id("one_hop.json", 0)


def test_vocabulary_comes_from_train_only_and_val_gets_unk(clevr, tmp_path):
    vocab = questions.build_vocab(questions.questions_file(clevr, "train"))
    assert vocab.tokens[:2] == ["<pad>", "<unk>"]
    assert "gigantic" not in vocab.tokens and "big" in vocab.tokens
    path = vocab.save(tmp_path / "vocab.json")
    loaded = questions.Vocab.load(path)
    assert loaded == vocab
    ids = loaded.encode("How many gigantic things are there?")
    assert ids[2] == 1 and ids[0] == loaded.tokens.index("how")
    with pytest.raises(ValueError, match="train split only"):
        questions.build_vocab(questions.questions_file(clevr, "val"))
    val = dataset.ClevrQuestions(questions.questions_file(clevr, "val"), clevr / "features" / "val.h5", loaded)
    example = val[0]
    assert example.tokens[: example.length].tolist() == ids
    assert (example.answer, example.family, example.qtype) == (0, 2, 0)
    assert torch.equal(example.features, torch.arange(32, 48, dtype=torch.float32).reshape(4, 2, 2))


def test_missing_files_name_the_file_and_the_command(tmp_path):
    with pytest.raises(ValueError, match=r"miniCLEVR_train_questions\.json.*python -m adaptive\.clevr\.minigen --out"):
        questions.questions_file(tmp_path / "mini-clevr", "train")
    with pytest.raises(ValueError, match=r"CLEVR_val_questions\.json.*data/README\.md, section CLEVR"):
        questions.questions_file(tmp_path / "CLEVR_v1.0", "val")
    with pytest.raises(ValueError, match=r"miniCLEVR_val_questions\.json does not exist.*minigen"):
        questions.read_questions(tmp_path / "x" / "questions" / "miniCLEVR_val_questions.json")
    with pytest.raises(ValueError, match=r"train\.h5 does not exist.*adaptive\.clevr\.features pixels"):
        features.FeatureFile(tmp_path / "mini-clevr" / "features" / "train.h5")
    with pytest.raises(ValueError, match=r"val\.h5 does not exist.*adaptive\.clevr\.features resnet101.*data/README"):
        features.check_features(tmp_path / "CLEVR_v1.0" / "features" / "val.h5", [])
    with pytest.raises(ValueError, match="vocab.json does not exist.*build_vocab"):
        questions.Vocab.load(tmp_path / "vocab.json")


# ------------------------------------------------------------------------------------ features


def test_features_are_read_lazily_row_by_row(tmp_path):
    path = tmp_path / "features" / "train.h5"
    path.parent.mkdir()
    data = np.random.default_rng(0).standard_normal((5, 2, 3, 3)).astype(np.float32)
    with h5py.File(path, "w") as file:
        file.create_dataset("features", data=data, chunks=(1, 2, 3, 3))
    rows = features.FeatureFile(path)
    assert rows.shape == (5, 2, 3, 3) and len(rows) == 5
    assert rows._file is None                                    # nothing opened, nothing loaded yet
    assert torch.equal(rows[3], torch.from_numpy(data[3]))
    assert isinstance(rows._rows, h5py.Dataset)                  # a handle on the file, not an array
    assert torch.equal(rows.rows([4, 0]), torch.from_numpy(data[[4, 0]]))
    copy = pickle.loads(pickle.dumps(rows))                     # what a DataLoader worker gets
    assert copy._file is None and torch.equal(copy[1], torch.from_numpy(data[1]))
    with pytest.raises(IndexError):
        rows[5]
    rows.close()


def test_check_features_refuses_too_few_rows_or_wrong_rank(tmp_path):
    short = tmp_path / "short.h5"
    with h5py.File(short, "w") as file:
        file["features"] = np.zeros((3, 1, 2, 2), np.float32)
    assert features.check_features(short, [{"image_index": 2}]) == (3, 1, 2, 2)
    with pytest.raises(ValueError, match=r"has 3 rows but the questions use image_index up to 4.*at least 5 rows"):
        features.check_features(short, [{"image_index": 0}, {"image_index": 4}])
    flat = tmp_path / "flat.h5"
    with h5py.File(flat, "w") as file:
        file["features"] = np.zeros((3, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"shape \(3, 4, 4\), 3-D; it must be 4-D"):
        features.check_features(flat, [0])
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file["images"] = np.zeros((3, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match="no dataset named 'features'"):
        features.feature_shape(other)


def test_pixel_features_are_the_pooled_images(mini):
    rows = features.FeatureFile(mini["root"] / "features" / "train.h5")
    assert rows.shape == (12, 3, 16, 16)
    for i in (0, 11):
        image = Image.open(mini["root"] / "images" / "train" / minigen.image_filename("train", i))
        expected = features.pixel_grid(image, 16)
        assert np.allclose(rows[i].numpy(), expected)
        assert 0 <= rows[i].min() and rows[i].max() <= 1


def test_features_cli_writes_pixel_grids(mini, tmp_path, capsys):
    out = tmp_path / "features" / "val.h5"
    features.main(["pixels", "--images", str(mini["root"] / "images" / "val"), "--out", str(out), "--grid", "8"])
    assert "(6, 3, 8, 8)" in capsys.readouterr().out
    assert features.check_features(out, mini["questions"]["val"]["questions"]) == (6, 3, 8, 8)


def test_image_files_refuses_a_gap_in_the_indices(tmp_path):
    folder = tmp_path / "images" / "train"
    folder.mkdir(parents=True)
    for i in (0, 2):
        Image.new("RGB", (4, 4)).save(folder / f"CLEVR_train_{i:06d}.png")
    with pytest.raises(ValueError, match="lacks image index 1"):
        features.image_files(folder)


def test_resnet101_without_torchvision_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)                       # as if not installed
    with pytest.raises(ImportError, match=r"pip install torchvision==0\.28\.0"):
        features.extract_resnet101(tmp_path / "images", tmp_path / "out.h5", batch_size=8, device="cpu")


# ------------------------------------------------------------------------------------- dataset


def test_dataset_examples_and_batches(mini):
    data = dataset.ClevrQuestions.from_root(mini["root"], "train")
    items = mini["questions"]["train"]["questions"]
    vocab = data.vocab
    assert (mini["root"] / "vocab.json").is_file() and len(data) == len(items)
    ex = data[5]
    assert ex.tokens.dtype == torch.int64 and ex.tokens.shape == (data.tokens.shape[1],)
    assert ex.tokens[: ex.length].tolist() == vocab.encode(items[5]["question"])
    assert (ex.tokens[ex.length:] == 0).all()
    assert vocab.answers[ex.answer] == items[5]["answer"]
    assert vocab.families[ex.family] == (items[5]["template_filename"], items[5]["question_family_index"])
    assert vocab.types[ex.qtype] == items[5]["program"][-1]["function"]
    assert torch.equal(ex.features, data.features[items[5]["image_index"]])
    batch = next(iter(dataset.make_loader(data, batch_size=7, shuffle=False)))
    assert batch.tokens.shape == (7, int(batch.lengths.max())) and batch.features.shape == (7, 3, 16, 16)
    assert batch.answers.shape == batch.families.shape == batch.qtypes.shape == (7,)
    val = dataset.ClevrQuestions.from_root(mini["root"], "val")               # train vocabulary
    assert val.vocab.tokens == vocab.tokens and len(val) == len(mini["questions"]["val"]["questions"])


def test_loader_reshuffles_every_epoch_and_repeats_per_seed(mini):
    data = dataset.ClevrQuestions.from_root(mini["root"], "train")

    def epochs(seed, n=3):
        loader = dataset.make_loader(data, batch_size=16, seed=seed)
        return [torch.cat([b.answers * 1000 + b.lengths for b in loader]).tolist() for _ in range(n)]

    first = epochs(0)
    key = (data.answers * 1000 + data.lengths).tolist()
    orders = [dataset.EpochShuffle(len(data), seed=0).permutation(e).tolist() for e in range(3)]
    assert first == [[key[i] for i in order] for order in orders]   # epoch e follows permutation e
    assert first == epochs(0)                                     # reproducible for a seed
    assert first[0] != first[1] != first[2]                       # a new order every epoch
    assert all(sorted(e) == sorted(first[0]) for e in first)      # each epoch sees every question once
    assert epochs(1)[0] != first[0]
    sampler = dataset.EpochShuffle(len(data), seed=0)
    sampler.set_epoch(2)
    assert list(sampler) == dataset.EpochShuffle(len(data), 0).permutation(2).tolist()
    with pytest.raises(ValueError, match="batch_size"):
        dataset.make_loader(data, batch_size=0)


def test_attribute_features_mark_each_object_with_its_attributes(tmp_path):
    from adaptive.clevr import features, scenes
    scene = {"objects": [
        {"color": "red", "shape": "cube", "size": "large", "material": "metal",
         "3d_coords": [-1.5, -1.0, scenes.RADIUS["large"]], "pixel_coords": [0, 0, 12.0]},
        {"color": "cyan", "shape": "sphere", "size": "small", "material": "rubber",
         "3d_coords": [1.5, 1.0, scenes.RADIUS["small"]], "pixel_coords": [0, 0, 14.0]}]}
    grid = features.attribute_grid(scene, 96, 16)
    names = features.ATTRIBUTE_CHANNELS
    assert grid.shape == (len(names), 16, 16)
    occupied = grid[names.index("object")] == 1
    assert occupied.any() and not occupied.all()
    assert (grid[:, occupied].sum(0) == 5).all()             # colour, shape, size, material, object
    red = grid[names.index("color=red")] == 1
    cyan = grid[names.index("color=cyan")] == 1
    assert red.any() and cyan.any() and not (red & cyan).any()
    assert (grid[names.index("shape=cube")] == red).all() and (grid[names.index("material=metal")] == red).all()
    with pytest.raises(ValueError, match="minigen"):
        features.write_attribute_features(tmp_path / "missing.json", tmp_path / "f.h5")
