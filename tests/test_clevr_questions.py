"""A questions file is checked at load: every question names one image, by a valid index."""
import json
import re

import pytest

from adaptive.clevr import dataset, minigen, questions


def _write(tmp_path, entries, name="CLEVR_val_questions.json"):
    """A questions file of ``entries``: (image_index, image_filename or None) pairs."""
    items = []
    for image_index, filename in entries:
        item = {"split": "val", "question": "What color is the cube?", "image_index": image_index}
        if filename is not None:
            item["image_filename"] = filename
        items.append(item)
    path = tmp_path / "questions" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"info": {"split": "val"}, "questions": items}))
    return path


def test_agreeing_and_unpatterned_filenames_are_accepted(tmp_path):
    entries = [(0, "CLEVR_val_000000.png"), (42, minigen.image_filename("val", 42)),
               (7, "photo_3.png"), (3, None), (1_234_567, "CLEVR_train_1234567.png")]
    _, loaded = questions.read_questions(_write(tmp_path, entries))
    assert [q["image_index"] for q in loaded] == [0, 42, 7, 3, 1_234_567]


@pytest.mark.parametrize("bad", [-1, True, 2.0, "3", None, [1]])
def test_an_image_index_that_is_not_a_non_negative_integer_is_refused(tmp_path, bad):
    path = _write(tmp_path, [(0, "CLEVR_val_000000.png"), (bad, None)])
    message = rf"{re.escape(str(path))}: question 1 has image_index {re.escape(repr(bad))}; .*integer >= 0"
    with pytest.raises(ValueError, match=message):
        questions.read_questions(path)


@pytest.mark.parametrize("prefix", ["CLEVR", "miniCLEVR"])
def test_an_image_filename_naming_another_image_is_refused(tmp_path, prefix):
    path = _write(tmp_path, [(0, f"{prefix}_val_000000.png"), (1, None), (4, f"{prefix}_val_000005.png")])
    message = (rf"{re.escape(str(path))}: question 2 has image_index 4 but image_filename "
               rf"'{prefix}_val_000005.png', which names image 5; .*image_index 4 is '{prefix}_val_000004.png'")
    with pytest.raises(ValueError, match=message):
        questions.read_questions(path)


def test_a_question_that_is_not_an_object_is_refused(tmp_path):
    path = tmp_path / "CLEVR_val_questions.json"
    path.write_text(json.dumps({"questions": ["What color is the cube?"]}))
    with pytest.raises(ValueError, match="question 0 must be a JSON object, got str"):
        questions.read_questions(path)


def test_the_dataset_and_the_vocabulary_refuse_a_bad_file_before_reading_features(tmp_path):
    path = _write(tmp_path, [(-3, None)], name="CLEVR_train_questions.json")
    with pytest.raises(ValueError, match="question 0 has image_index -3"):
        questions.build_vocab(path)
    vocab = questions.Vocab(["<pad>", "<unk>"], [], [], [])
    with pytest.raises(ValueError, match="question 0 has image_index -3"):
        dataset.ClevrQuestions(path, tmp_path / "features" / "absent.h5", vocab)
