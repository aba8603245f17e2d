"""Mini-CLEVR: a small, seeded, CPU-friendly stand-in for CLEVR v1.0 in CLEVR's own format.

For each split it writes::

    <out>/images/<split>/miniCLEVR_<split>_000000.png   drawn scenes (render.py), 96 x 96 RGB
    <out>/scenes/miniCLEVR_<split>_scenes.json          CLEVR's scene schema (scenes.py)
    <out>/questions/miniCLEVR_<split>_questions.json    CLEVR's question schema
    <out>/features/<split>.h5                           features (features.py): the image
                                                        average-pooled to a grid ("pixels"), or
                                                        per-cell object attributes ("attributes")

Questions come from the project's templates (templates.py). For each question a family is
drawn, its placeholders are filled by walking the program over the scene, and the answer is
the output of the program run by ``executor``. A filter chain that ends in ``unique`` is
filled with attributes of one object until exactly one object fits; a draw that cannot be
made unique, breaks a family's constraint or would over-represent an answer of its family
is rejected and redrawn. Everything is a function of the seed: image i of a split draws
its scene from its own stream (seed, split, i), so the first 12 images of a 2,000-image
split are the 12 images of a 12-image split.

CLI::

    python -m adaptive.clevr.minigen --out data/mini-clevr --train 2000 --val 500 --seed 0
    python -m adaptive.clevr.minigen --out data/mini-clevr-attributes --train 6000 --val 500 \
        --questions-per-image 10 --features attributes          # chapter 5's default data
"""
from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

from . import executor, render, scenes, templates
from .executor import ProgramError

PREFIX = "miniCLEVR"
SPLITS = ("train", "val")
IMAGE_SIZE = 96
QUESTIONS_PER_IMAGE = 5
ANSWERS = tuple(sorted(set(scenes.COLORS + scenes.SHAPES + scenes.SIZES + scenes.MATERIALS
                           + ("yes", "no") + tuple(str(n) for n in range(scenes.MAX_OBJECTS + 1)))))
SYNONYMS = {"large": ("big",), "small": ("tiny",), "metal": ("metallic", "shiny"), "rubber": ("matte",),
            "cube": ("block",), "sphere": ("ball",)}
SYNONYM_RATE = 0.25
RELATION_WORDS = {"left": "left of", "right": "right of", "front": "in front of", "behind": "behind"}
# How many of one answer a family may hold: at most BALANCE x its fair share, plus SLACK.
# Counts are naturally skewed (large counts are rare), so their share is looser.
BALANCE, COUNT_BALANCE, SLACK = 1.05, 1.5, 2
ANSWER_SPACE = {"query_color": len(scenes.COLORS), "query_shape": len(scenes.SHAPES),
                "query_size": len(scenes.SIZES), "query_material": len(scenes.MATERIALS)}
PLACEHOLDER = re.compile(r"<([ZCMSR])(\d?)>(s?)")


class Rejected(Exception):
    """This draw of a question does not qualify; draw again."""


def image_filename(split: str, index: int) -> str:
    return f"{PREFIX}_{split}_{index:06d}.png"


def scenes_path(out: Path, split: str) -> Path:
    return Path(out) / "scenes" / f"{PREFIX}_{split}_scenes.json"


def questions_path(out: Path, split: str) -> Path:
    return Path(out) / "questions" / f"{PREFIX}_{split}_questions.json"


# --------------------------------------------------------------------------------------------
# Filling a template


def _chains(flat) -> dict[str, list[int]]:
    """Filter-chain node indices by placeholder suffix (``""``, ``"2"``, ``"3"``)."""
    chains: dict[str, list[int]] = defaultdict(list)
    for index, (function, _, placeholder) in enumerate(flat):
        if function.startswith("filter_"):
            chains[placeholder[2:-1]].append(index)
    return chains


def _consumer(flat, index: int) -> str:
    """The function of the node that reads node ``index``."""
    return next(function for function, inputs, _ in flat if index in inputs)


def _fill_unique(objects, candidates, letters, rng) -> dict[str, str]:
    """Attributes of one candidate, added in random order until it is the only one that fits."""
    if not candidates:
        raise Rejected("nothing to refer to")
    target = objects[rng.choice(candidates)]
    chosen: dict[str, str] = {}
    remaining = list(candidates)
    for letter in rng.sample(letters, len(letters)):
        attribute = templates.LETTERS[letter]
        narrowed = [i for i in remaining if objects[i][attribute] == target[attribute]]
        if len(narrowed) < len(remaining) or rng.random() < 0.2:   # sometimes a redundant word
            chosen[letter] = target[attribute]
            remaining = narrowed
        if len(remaining) == 1 and rng.random() < 0.75:
            break
    if len(remaining) != 1:
        raise Rejected("the allowed attributes cannot single out one object")
    return chosen


def _fill_set(objects, candidates, letters, from_scene, rng) -> dict[str, str]:
    """One to three attribute values describing a set: copied from a candidate (so the set is
    not empty) or drawn at random. After a relation, no attribute at all is allowed too."""
    if candidates and rng.random() < 0.6:
        source = objects[rng.choice(candidates)]
    else:
        source = {attribute: rng.choice(values) for attribute, values in scenes.ATTRIBUTES.items()}
    smallest = 1 if from_scene else 0
    k = min(len(letters), rng.choice((smallest, 1, 1, 2, 2, 3)))
    return {letter: source[templates.LETTERS[letter]] for letter in rng.sample(letters, k)}


def fill(family: templates.Family, scene: dict, rng: random.Random) -> tuple[list[dict], dict]:
    """Fill the family's placeholders on ``scene``; return CLEVR's program and the values.

    Raises Rejected when this draw does not qualify (and ProgramError never escapes: a
    ``unique`` that does not find one object is a rejection too).
    """
    flat, objects = family.flat, scene["objects"]
    chains = _chains(flat)
    values: dict[str, str] = {}
    unique_of: dict[str, int] = {}
    outputs: list = []
    for index, (function, inputs, placeholder) in enumerate(flat):
        if placeholder is not None and placeholder not in values:
            if placeholder.startswith("<R"):
                values[placeholder] = rng.choice(scenes.RELATIONS)
            else:
                tag = placeholder[2:-1]
                chain = chains[tag]
                letters = [flat[i][2][1] for i in chain]
                source = flat[chain[0]][1][0]                   # the node the chain filters
                candidates = outputs[source]
                if _consumer(flat, chain[-1]) == "unique":
                    chosen = _fill_unique(objects, candidates, letters, rng)
                else:
                    chosen = _fill_set(objects, candidates, letters, flat[source][0] == "scene", rng)
                for letter in letters:
                    values[f"<{letter}{tag}>"] = chosen.get(letter, "")
        value = values.get(placeholder) if placeholder else None
        args = [outputs[i] for i in inputs]
        if function.startswith("filter_") and not value:
            outputs.append(args[0])                         # an empty filter is dropped
            continue
        try:
            outputs.append(executor.apply(function, args, value, scene))
        except ProgramError as error:
            raise Rejected(str(error)) from None
        if function == "unique" and flat[inputs[0]][0].startswith("filter_"):
            unique_of[flat[inputs[0]][2][2:-1]] = outputs[-1]      # keyed by the chain's suffix
    for a, b in family.different_objects:
        if unique_of[a] == unique_of[b]:
            raise Rejected("the two objects are the same object")
    for a, b in family.different_sets:
        if [values.get(f"<{x}{a}>", "") for x in "ZCMS"] == [values.get(f"<{x}{b}>", "") for x in "ZCMS"]:
            raise Rejected("the two sets are described the same way")
    return _program(flat, values), values


def _program(flat, values) -> list[dict]:
    """CLEVR's node list without the empty filters, inputs renumbered."""
    program: list[dict] = []
    new_index: dict[int, int] = {}
    for index, (function, inputs, placeholder) in enumerate(flat):
        value = values.get(placeholder) if placeholder else None
        if function.startswith("filter_") and not value:
            new_index[index] = new_index[inputs[0]]
            continue
        program.append({"function": function, "inputs": [new_index[i] for i in inputs],
                        "value_inputs": [value] if value else []})
        new_index[index] = len(program) - 1
    return program


def render_text(text: str, values: dict, rng: random.Random) -> str:
    """The sentence with placeholders replaced by words (sometimes synonyms), tidied up."""
    def word(match):
        letter, tag, plural = match.groups()
        value = values.get(f"<{letter}{tag}>", "")
        if letter == "R":
            return RELATION_WORDS[value]
        if letter == "S" and not value:
            value = "thing"
        elif value in SYNONYMS and rng.random() < SYNONYM_RATE:
            value = rng.choice(SYNONYMS[value])
        return value + plural if value else ""

    sentence = re.sub(r"\s+", " ", PLACEHOLDER.sub(word, text)).strip()
    sentence = re.sub(r" ([?;,])", r"\1", sentence)
    return sentence[0].upper() + sentence[1:]


# --------------------------------------------------------------------------------------------
# Generating a split


class Balancer:
    """Per family, refuse an answer that already holds more than its share (BALANCE, SLACK),
    and count each family's questions."""

    def __init__(self):
        self.counts: dict[tuple, Counter] = defaultdict(Counter)

    def accepts(self, key, last_function: str, answer: str) -> bool:
        counts = self.counts[key]
        total = sum(counts.values())
        if last_function == "count":
            space = len(counts) + (answer not in counts)      # the counts seen so far
            return counts[answer] <= COUNT_BALANCE * total / space + SLACK
        space = ANSWER_SPACE.get(last_function, 2)            # 2: yes / no
        return counts[answer] <= BALANCE * total / space + SLACK

    def questions(self, key) -> int:
        return sum(self.counts[key].values())

    def add(self, key, answer: str):
        self.counts[key][answer] += 1


def _questions_for(scene: dict, rng: random.Random, balancer: Balancer, n_questions: int,
                   families) -> list[dict]:
    """Up to ``n_questions`` distinct questions about one scene."""
    made: list[dict] = []
    texts: set[str] = set()
    for _slot in range(n_questions):
        for _family_try in range(6):
            # the less used of two random families, so that hard families are not starved
            first, second = rng.choice(families), rng.choice(families)
            filename, family_index, family = min(
                (first, second), key=lambda f: balancer.questions((f[0], f[1])))
            question = None
            for _attempt in range(25):
                try:
                    program, values = fill(family, scene, rng)
                except Rejected:
                    continue
                answer = executor.execute(program, scene)
                if not balancer.accepts((filename, family_index), program[-1]["function"], answer):
                    continue
                text = render_text(rng.choice(family.texts), values, rng)
                if text in texts:
                    continue
                question = {"question": text, "answer": answer, "program": program,
                            "question_family_index": family_index, "template_filename": filename}
                balancer.add((filename, family_index), answer)
                break
            if question is not None:
                texts.add(question["question"])
                made.append(question)
                break
    return made


FEATURES = ("pixels", "attributes")


def generate_split(out: str | Path, split: str, n_images: int, seed: int = 0,
                   image_size: int = IMAGE_SIZE, questions_per_image: int = QUESTIONS_PER_IMAGE,
                   features_grid: int | None = None, features_kind: str = "pixels") -> dict:
    """Write one split (images, scenes JSON, questions JSON, and features unless
    ``features_grid`` is None). ``features_kind``: ``"pixels"`` (the image average-pooled to
    ``features_grid`` cells a side) or ``"attributes"`` (each cell's object attributes,
    ``features.attribute_grid``). Returns {"images", "questions", "seconds"}."""
    if features_kind not in FEATURES:
        raise ValueError(f"features_kind must be one of {FEATURES}, got {features_kind!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise ValueError(f"n_images for split {split!r} must be an integer >= 1, got {n_images!r}")
    if isinstance(questions_per_image, bool) or not isinstance(questions_per_image, int) or questions_per_image < 1:
        raise ValueError(f"questions_per_image must be an integer >= 1, got {questions_per_image!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an integer >= 32 pixels, got {image_size!r}")
    start = time.perf_counter()
    out = Path(out)
    if split == "train":
        (out / "vocab.json").unlink(missing_ok=True)          # built from the old train split
    image_dir = out / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    families = templates.all_families()
    balancer = Balancer()
    all_scenes, all_questions = [], []
    for index in range(n_images):
        name = image_filename(split, index)
        scene = scenes.make_scene(random.Random(f"{PREFIX}/{seed}/{split}/{index}/scene"),
                                  split, index, name, image_size)
        render.draw_scene(scene, image_size).save(image_dir / name, optimize=False, compress_level=1)
        all_scenes.append(scene)
        rng = random.Random(f"{PREFIX}/{seed}/{split}/{index}/questions")
        for question in _questions_for(scene, rng, balancer, questions_per_image, families):
            all_questions.append({"split": split, "image_index": index, "image_filename": name,
                                  **question, "question_index": len(all_questions)})
    info = {"split": split, "version": "mini-1.0", "generator": "adaptive.clevr.minigen",
            "seed": seed, "image_size": [image_size, image_size], "license": "CC BY 4.0"}
    _write_json(scenes_path(out, split), {"info": info, "scenes": all_scenes})
    question_info = dict(info, families=[[f, i, fam.name] for f, i, fam in families], answers=list(ANSWERS),
                         types=sorted({fam.flat[-1][0] for _, _, fam in families}))
    _write_json(questions_path(out, split), {"info": question_info, "questions": all_questions})
    if features_grid is not None:
        from . import features  # h5py only when features are wanted
        if features_kind == "pixels":
            features.write_pixel_features(image_dir, out / "features" / f"{split}.h5", grid=features_grid)
        else:
            features.write_attribute_features(scenes_path(out, split), out / "features" / f"{split}.h5",
                                              image_size=image_size, grid=features_grid)
    return {"images": n_images, "questions": len(all_questions), "seconds": time.perf_counter() - start}


def _write_json(path: Path, payload: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, separators=(",", ":")))
    tmp.replace(path)


def summary(questions: list[dict]) -> list[str]:
    """One line per family: file, index, name, questions, mean program length, top answers."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for question in questions:
        groups[(question["template_filename"], question["question_family_index"])].append(question)
    lines = []
    for filename, index, family in templates.all_families():
        group = groups.get((filename, index), [])
        if not group:
            lines.append(f"  {filename:<14} {index}  {family.name:<22} no questions")
            continue
        length = sum(len(q["program"]) for q in group) / len(group)
        top = Counter(q["answer"] for q in group).most_common(3)
        lines.append(f"  {filename:<14} {index}  {family.name:<22} {len(group):5d} questions, "
                     f"{length:4.1f} program nodes, answers {', '.join(f'{a} {n / len(group):.0%}' for a, n in top)}")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m adaptive.clevr.minigen", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/mini-clevr", help="output folder (default data/mini-clevr)")
    parser.add_argument("--train", type=int, default=2000, help="number of training images")
    parser.add_argument("--val", type=int, default=500, help="number of validation images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE, help="image width = height in pixels")
    parser.add_argument("--questions-per-image", type=int, default=QUESTIONS_PER_IMAGE)
    parser.add_argument("--features", choices=FEATURES, default="pixels",
                        help="pixels: the images average-pooled to GRID x GRID; attributes: each "
                             "cell's object colour, shape, size and material (default pixels)")
    parser.add_argument("--grid", type=int, default=None,
                        help="feature cells a side (default 32 for pixels, 16 for attributes)")
    parser.add_argument("--no-features", action="store_true", help="do not write features/<split>.h5")
    args = parser.parse_args(argv)
    for split, n in (("train", args.train), ("val", args.val)):
        grid = args.grid or (32 if args.features == "pixels" else 16)
        report = generate_split(args.out, split, n, args.seed, args.image_size, args.questions_per_image,
                                None if args.no_features else grid, args.features)
        print(f"{split}: {report['images']} images, {report['questions']} questions "
              f"in {report['seconds']:.1f} s -> {Path(args.out).resolve()}")
        if split == "train":
            questions = json.loads(questions_path(Path(args.out), split).read_text())["questions"]
            print("\n".join(summary(questions)))


if __name__ == "__main__":
    main()
