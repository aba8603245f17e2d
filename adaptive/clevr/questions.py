"""Questions of mini-CLEVR and CLEVR v1.0: files, tokens, vocabulary, families and types.

One loader for both datasets (same JSON schema, ``{"info": ..., "questions": [...]}``).

- Tokens: the question lower-cased, with ``?``, ``;`` and ``,`` split off as tokens of their
  own, then split on white space.
- Vocabulary (``Vocab``): built from the TRAIN split only, saved as JSON and loaded for val
  and test, so every split uses the training indices. Question tokens start with ``<pad>``
  (index 0) and ``<unk>`` (index 1); a word never seen in training becomes ``<unk>``.
- Family: CLEVR's ``question_family_index`` counts inside one template file (each of the 9
  files starts at 0), so it does not identify a family. The global family id is the rank of
  (template_filename, question_family_index) among the sorted pairs: 0..F-1 (F = 90 for
  CLEVR, 27 for mini-CLEVR).
- Type: the last function of the program (``query_color``, ``count``, ``exist``, ...).
- Image: ``image_index``, an integer >= 0, is the row of the split's features file; a file
  whose ``image_filename`` names another image (``CLEVR_val_000042.png`` is image 42) is
  refused at load (``check_image_reference``).

Mini-CLEVR's train file also lists every family, answer and type in its ``info``, so the
ids do not depend on which ones a small sample happened to draw. CLEVR's test split has no
answers, programs or families: those fields are -1 there.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PAD, UNK = "<pad>", "<unk>"
SPLITS = ("train", "val", "test")
FILE_PATTERNS = ("miniCLEVR_{split}_questions.json", "CLEVR_{split}_questions.json")
_PUNCTUATION = re.compile(r"([?;,])")
# The image names of CLEVR v1.0 and of mini-CLEVR (minigen.image_filename): CLEVR_val_000042.png.
_IMAGE_FILENAME = re.compile(r"(?:mini)?CLEVR_[A-Za-z]+_(\d{6,})\.png")


def tokenize(text: str) -> list[str]:
    """Lower-cased words with ``?``, ``;`` and ``,`` as separate tokens."""
    return _PUNCTUATION.sub(r" \1 ", text.lower()).split()


def question_type(program: list[dict]) -> str:
    """A question's type: the function of the last node of its program."""
    if not program:
        raise ValueError("a question's program is empty, so it has no type (its last function)")
    return program[-1]["function"]


def answer_text(answer) -> str:
    """An answer as text: booleans as yes/no, numbers as digits (CLEVR stores them as text)."""
    if isinstance(answer, bool):
        return "yes" if answer else "no"
    return str(answer)


def is_mini_root(root: str | os.PathLike) -> bool:
    """Whether a dataset folder is mini-CLEVR: by its name, or by the files it already holds."""
    root = Path(root)
    return "mini" in root.name.lower() or any(
        next(root.glob(pattern), None) is not None
        for pattern in ("questions/miniCLEVR_*", "scenes/miniCLEVR_*", "images/*/miniCLEVR_*"))


def how_to_get(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """The command, or the pointer to the instructions, that creates a missing file of the
    dataset folder ``root`` (default: the folder above the file's own folder)."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent.parent
    if path.name.lower().startswith("miniclevr") or is_mini_root(root):
        return f"generate mini-CLEVR with: python -m adaptive.clevr.minigen --out {root}"
    return "download and unpack CLEVR v1.0 as data/README.md, section CLEVR, says"


def questions_file(root: str | os.PathLike, split: str) -> Path:
    """``<root>/questions/miniCLEVR_<split>_questions.json`` or ``.../CLEVR_<split>_questions.json``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = Path(root) / "questions"
    candidates = [folder / pattern.format(split=split) for pattern in FILE_PATTERNS]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    expected = candidates[0] if is_mini_root(root) else candidates[1]
    raise ValueError(f"questions file {expected} does not exist (looked for {candidates[0].name} and "
                     f"{candidates[1].name} in {folder}); {how_to_get(expected, root)}")


def read_questions(path: str | os.PathLike) -> tuple[dict, list[dict]]:
    """(info, questions) of a questions JSON file; ValueError naming the file when it is
    missing or not in CLEVR's schema."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"questions file {path} does not exist; {how_to_get(path)}")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"questions file {path} is not valid JSON ({error}); {how_to_get(path)}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("questions"), list):
        raise ValueError(f"questions file {path} must be a JSON object with a 'questions' list "
                         f"(CLEVR's schema); {how_to_get(path)}")
    for position, question in enumerate(payload["questions"]):
        if not isinstance(question, dict):
            raise ValueError(f"questions file {path}: question {position} must be a JSON object, "
                             f"got {type(question).__name__}")
        for key in ("question", "image_index"):
            if key not in question:
                raise ValueError(f"questions file {path}: question {position} has no {key!r}")
        check_image_reference(path, position, question)
    return payload.get("info", {}), payload["questions"]


def check_image_reference(path: str | os.PathLike, position: int, question: dict) -> None:
    """Refuse a question whose image is ambiguous: ``image_index`` must be an integer >= 0
    (it is the row of the features file), and an ``image_filename`` named like CLEVR's or
    mini-CLEVR's images (``CLEVR_val_000042.png``) must carry that same index.

    ``path`` and ``position`` (the question's place in the file's list) name it in the error.
    """
    image_index = question["image_index"]
    if isinstance(image_index, bool) or not isinstance(image_index, int) or image_index < 0:
        raise ValueError(f"questions file {path}: question {position} has image_index {image_index!r}; "
                         f"it must be an integer >= 0 (the image's row in the features file)")
    filename = question.get("image_filename")
    match = _IMAGE_FILENAME.fullmatch(filename) if isinstance(filename, str) else None
    if match and int(match.group(1)) != image_index:
        agreeing = filename[:match.start(1)] + f"{image_index:06d}" + filename[match.end(1):]
        raise ValueError(f"questions file {path}: question {position} has image_index {image_index} but "
                         f"image_filename {filename!r}, which names image {int(match.group(1))}; the two must "
                         f"name the same image (image_index {image_index} is {agreeing!r})")


@dataclass
class Vocab:
    """Indices of question tokens, answers, global families and question types (train split)."""

    tokens: list[str]                                    # index -> token; 0 <pad>, 1 <unk>
    answers: list[str]                                   # index -> answer
    families: list[tuple[str, int]]                      # global id -> (template_filename, index in file)
    types: list[str]                                     # index -> last program function
    family_names: dict[int, str] = field(default_factory=dict)   # global id -> name, when known
    _maps: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.tokens[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary's first tokens must be {PAD!r} and {UNK!r}, got {self.tokens[:2]}")
        self.families = [(str(f), int(i)) for f, i in self.families]
        self.family_names = {int(k): v for k, v in self.family_names.items()}
        self._maps = {"tokens": {t: i for i, t in enumerate(self.tokens)},
                      "answers": {a: i for i, a in enumerate(self.answers)},
                      "families": {f: i for i, f in enumerate(self.families)},
                      "types": {t: i for i, t in enumerate(self.types)}}

    def encode(self, text: str) -> list[int]:
        """Token indices of a question; unknown words are <unk> (1)."""
        index = self._maps["tokens"]
        return [index.get(token, 1) for token in tokenize(text)]

    def answer_id(self, answer) -> int:
        text = answer_text(answer)
        if text not in self._maps["answers"]:
            raise ValueError(f"answer {text!r} is not in the training answers ({len(self.answers)} of them: "
                             f"{', '.join(self.answers[:12])}...); was the vocabulary built from another dataset?")
        return self._maps["answers"][text]

    def family_id(self, template_filename: str, question_family_index: int) -> int:
        key = (template_filename, int(question_family_index))
        if key not in self._maps["families"]:
            raise ValueError(f"family {key} (template_filename, question_family_index) never occurs in the "
                             f"training questions; was the vocabulary built from another dataset?")
        return self._maps["families"][key]

    def type_id(self, program: list[dict]) -> int:
        kind = question_type(program)
        if kind not in self._maps["types"]:
            raise ValueError(f"question type {kind!r} (last program function) never occurs in training")
        return self._maps["types"][kind]

    def labels(self, question: dict) -> tuple[int, int, int]:
        """(answer id, family id, type id) of a question dict; -1 for fields it lacks (CLEVR test)."""
        answer = self.answer_id(question["answer"]) if "answer" in question else -1
        family = (self.family_id(question["template_filename"], question["question_family_index"])
                  if "template_filename" in question and "question_family_index" in question else -1)
        kind = self.type_id(question["program"]) if question.get("program") else -1
        return answer, family, kind

    def to_json(self) -> dict:
        return {"tokens": self.tokens, "answers": self.answers, "families": [list(f) for f in self.families],
                "types": self.types, "family_names": {str(k): v for k, v in self.family_names.items()}}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"vocabulary file {path} does not exist; build it from the train split with "
                             f"adaptive.clevr.questions.build_vocab(<train questions file>).save('{path}')")
        payload = json.loads(path.read_text())
        missing = [k for k in ("tokens", "answers", "families", "types") if k not in payload]
        if missing:
            raise ValueError(f"vocabulary file {path} lacks {', '.join(missing)}")
        return cls(payload["tokens"], payload["answers"], payload["families"], payload["types"],
                   payload.get("family_names", {}))


def build_vocab(train_questions: str | os.PathLike) -> Vocab:
    """The vocabulary of a TRAIN questions file (refuses a file holding another split).

    Families, answers and types declared in a mini-CLEVR file's ``info`` are included even
    when the sample lacks them, so the ids are the same for any number of images.
    """
    info, questions = read_questions(train_questions)
    splits = {q.get("split", info.get("split", "train")) for q in questions}
    if splits - {"train"}:
        raise ValueError(f"the vocabulary must come from the train split only, but {train_questions} holds "
                         f"questions of split(s) {sorted(splits - {'train'})}")
    tokens = sorted({token for q in questions for token in tokenize(q["question"])} - {PAD, UNK})
    answers = {answer_text(q["answer"]) for q in questions if "answer" in q} | set(info.get("answers", []))
    families = {(q["template_filename"], int(q["question_family_index"])) for q in questions
                if "template_filename" in q and "question_family_index" in q}
    families |= {(f[0], int(f[1])) for f in info.get("families", [])}
    ordered = sorted(families)
    names = {}
    for entry in info.get("families", []):
        if len(entry) > 2:
            names[ordered.index((entry[0], int(entry[1])))] = entry[2]
    types = sorted({question_type(q["program"]) for q in questions if q.get("program")}
                   | set(info.get("types", [])))
    return Vocab([PAD, UNK] + tokens, sorted(answers), ordered, types, names)


def vocab_for(root: str | os.PathLike, path: str | os.PathLike | None = None) -> Vocab:
    """The dataset's vocabulary: loaded from ``path`` (default ``<root>/vocab.json``) when it
    exists, else built from ``<root>``'s train questions and saved there."""
    path = Path(path) if path is not None else Path(root) / "vocab.json"
    if path.is_file():
        return Vocab.load(path)
    vocab = build_vocab(questions_file(root, "train"))
    vocab.save(path)
    return vocab
