"""Mini-CLEVR's question templates, written for this project, grouped in template files.

As in CLEVR, templates live in several files and ``question_family_index`` counts families
*inside one file* (every file starts at 0); a global family id is made later from the sorted
(template_filename, question_family_index) pairs (``questions.build_vocab``).

A family is a program with placeholders plus a few ways of saying it. Placeholders:
``<Z>`` size, ``<C>`` colour, ``<M>`` material, ``<S>`` shape, ``<R>`` relation, with a
suffix (``<C2>``, ``<R2>``) telling apart the objects of one question. In the text,
``<S>s`` is the plural. The generator (``minigen``) fills the placeholders from the scene; an
attribute filter left empty is dropped from the program and from the sentence (an empty
``<S>`` reads "thing"). A family's text omits the placeholders of attributes it must not
mention (``skip``): "What color is the red cube?" would give its answer away.

Reasoning depth grows from file to file: zero_hop (find one object, read an attribute),
exist and count (filter a set), one_hop (find, step along a relation, find again), compare
(find two objects and compare them), and_or (combine two sets; the intersections also
walk two relations).
"""
from __future__ import annotations

from dataclasses import dataclass, field

LETTERS = {"Z": "size", "C": "color", "M": "material", "S": "shape"}
FILTER_ORDER = ("Z", "C", "M", "S")                    # CLEVR's order of filters in a chain


@dataclass(frozen=True)
class Node:
    """One program node of a template: ``value`` is a placeholder (``"<C2>"``) or None."""

    function: str
    inputs: tuple[Node, ...] = ()
    value: str | None = None


@dataclass(frozen=True)
class Family:
    """A question family: a program template, its phrasings and its constraints.

    different_objects: pairs of placeholder suffixes whose unique objects must differ.
    different_sets: pairs of suffixes whose filter values must differ.
    """

    name: str
    texts: tuple[str, ...]
    program: Node
    different_objects: tuple[tuple[str, str], ...] = ()
    different_sets: tuple[tuple[str, str], ...] = ()
    flat: list = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "flat", flatten(self.program))


def flatten(root: Node) -> list[tuple[str, list[int], str | None]]:
    """The template as CLEVR's node list: (function, input indices, placeholder), inputs first."""
    nodes: list[tuple[str, list[int], str | None]] = []

    def visit(node: Node) -> int:
        inputs = [visit(child) for child in node.inputs]
        nodes.append((node.function, inputs, node.value))
        return len(nodes) - 1

    visit(root)
    return nodes


SCENE = Node("scene")


def filters(source: Node, tag: str = "", skip: str = "") -> Node:
    """The chain filter_size -> filter_color -> filter_material -> filter_shape on ``source``,
    without the attributes named in ``skip`` (letters Z, C, M, S)."""
    node = source
    for letter in FILTER_ORDER:
        if letter not in skip:
            node = Node(f"filter_{LETTERS[letter]}", (node,), f"<{letter}{tag}>")
    return node


def ref(tag: str = "", skip: str = "", source: Node = SCENE) -> Node:
    """The one object described by "the <Z> <C> <M> <S>" (``unique`` of a filter chain)."""
    return Node("unique", (filters(source, tag, skip),))


def relate(obj: Node, tag: str = "") -> Node:
    return Node("relate", (obj,), f"<R{tag}>")


def fn(function: str, *inputs: Node) -> Node:
    return Node(function, tuple(inputs))


def _query_family(attribute: str, texts, skip) -> Family:
    return Family(f"query_{attribute}", tuple(texts), fn(f"query_{attribute}", ref("", skip)))


def _relate_query_family(attribute: str, texts, skip) -> Family:
    target = ref("2", skip, source=relate(ref("")))
    return Family(f"relate_query_{attribute}", tuple(texts), fn(f"query_{attribute}", target))


def _equal_family(attribute: str, texts, skip) -> Family:
    a, b = fn(f"query_{attribute}", ref("", skip)), fn(f"query_{attribute}", ref("2", skip))
    return Family(f"equal_{attribute}", tuple(texts), fn(f"equal_{attribute}", a, b),
                  different_objects=(("", "2"),))


def _compare_count_family(name: str, function: str, texts) -> Family:
    a, b = fn("count", filters(SCENE, "")), fn("count", filters(SCENE, "2"))
    return Family(name, tuple(texts), fn(function, a, b), different_sets=(("", "2"),))


A = "<Z> <C> <M> <S>"                                     # the first object or set
B = "<Z2> <C2> <M2> <S2>"                                 # the second one
BOTH = fn("intersect", relate(ref(""), ""), relate(ref("2"), "2"))

TEMPLATE_FILES: dict[str, list[Family]] = {
    "zero_hop.json": [
        _query_family("color", ["What color is the <Z> <M> <S>?",
                                "What is the color of the <Z> <M> <S>?"], "C"),
        _query_family("shape", ["What shape is the <Z> <C> <M> thing?",
                                "The <Z> <C> <M> thing has what shape?"], "S"),
        _query_family("size", ["What size is the <C> <M> <S>?",
                               "How big is the <C> <M> <S>?"], "Z"),
        _query_family("material", ["What material is the <Z> <C> <S>?",
                                   "What is the <Z> <C> <S> made of?"], "M"),
    ],
    "one_hop.json": [
        _relate_query_family("color", [f"What color is the <Z2> <M2> <S2> that is <R> the {A}?",
                                       f"There is a <Z2> <M2> <S2> <R> the {A}; what color is it?"], "C"),
        _relate_query_family("shape", [f"What shape is the <Z2> <C2> <M2> thing that is <R> the {A}?",
                                       f"There is a <Z2> <C2> <M2> thing <R> the {A}; what shape is it?"],
                             "S"),
        _relate_query_family("size", [f"What size is the <C2> <M2> <S2> that is <R> the {A}?",
                                      f"There is a <C2> <M2> <S2> <R> the {A}; how big is it?"], "Z"),
        _relate_query_family("material", [f"What material is the <Z2> <C2> <S2> that is <R> the {A}?",
                                          f"There is a <Z2> <C2> <S2> <R> the {A}; what is it made of?"],
                             "M"),
        Family("relate_count", (f"How many {B}s are <R> the {A}?",
                                f"What number of {B}s are <R> the {A}?"),
               fn("count", filters(relate(ref("")), "2"))),
        Family("relate_exist", (f"Are there any {B}s <R> the {A}?", f"Is there a {B} <R> the {A}?"),
               fn("exist", filters(relate(ref("")), "2"))),
    ],
    "compare.json": [
        _equal_family("color", ["Does the <Z> <M> <S> have the same color as the <Z2> <M2> <S2>?",
                                "Is the color of the <Z> <M> <S> the same as the <Z2> <M2> <S2>?"], "C"),
        _equal_family("shape", ["Does the <Z> <C> <M> thing have the same shape as the <Z2> <C2> <M2> thing?",
                                "Is the <Z> <C> <M> thing the same shape as the <Z2> <C2> <M2> thing?"], "S"),
        _equal_family("size", ["Is the <C> <M> <S> the same size as the <C2> <M2> <S2>?",
                               "Does the <C> <M> <S> have the same size as the <C2> <M2> <S2>?"], "Z"),
        _equal_family("material", ["Is the <Z> <C> <S> made of the same material as the <Z2> <C2> <S2>?",
                                   "Does the <Z> <C> <S> have the same material as the <Z2> <C2> <S2>?"],
                      "M"),
        Family("same_size_count", ("How many other things are the same size as the <C> <M> <S>?",
                                   "What number of other things have the same size as the <C> <M> <S>?"),
               fn("count", fn("same_size", ref("", "Z")))),
        Family("same_material_count", ("How many other things are made of the same material as the <Z> <C> <S>?",
                                       "What number of other things have the same material as the <Z> <C> <S>?"),
               fn("count", fn("same_material", ref("", "M")))),
    ],
    "count.json": [
        Family("count", (f"How many {A}s are there?", f"What number of {A}s are there?"),
               fn("count", filters(SCENE, ""))),
        _compare_count_family("more", "greater_than", [f"Are there more {A}s than {B}s?",
                                                       f"Is the number of {A}s greater than the number of {B}s?"]),
        _compare_count_family("fewer", "less_than", [f"Are there fewer {A}s than {B}s?",
                                                     f"Is the number of {A}s less than the number of {B}s?"]),
        _compare_count_family("same_number", "equal_integer",
                              [f"Are there the same number of {A}s and {B}s?",
                               f"Is the number of {A}s the same as the number of {B}s?"]),
    ],
    "exist.json": [
        Family("exist", (f"Are there any {A}s?", f"Is there a {A}?"), fn("exist", filters(SCENE, ""))),
        Family("same_color_exist", ("Is there anything else that has the same color as the <Z> <M> <S>?",
                                    "Are there any other things that are the same color as the <Z> <M> <S>?"),
               fn("exist", fn("same_color", ref("", "C")))),
        Family("same_shape_exist", ("Is there anything else that has the same shape as the <Z> <C> <M> thing?",
                                    "Are there any other things that have the same shape as the <Z> <C> <M> thing?"),
               fn("exist", fn("same_shape", ref("", "S")))),
    ],
    "and_or.json": [
        Family("union_count", (f"How many things are {A}s or {B}s?",
                               f"What number of things are either {A}s or {B}s?"),
               fn("count", fn("union", filters(SCENE, ""), filters(SCENE, "2"))),
               different_sets=(("", "2"),)),
        Family("union_exist", (f"Are there any {A}s or {B}s?", f"Is there a {A} or a {B}?"),
               fn("exist", fn("union", filters(SCENE, ""), filters(SCENE, "2"))),
               different_sets=(("", "2"),)),
        Family("intersect_count", (f"How many things are <R> the {A} and <R2> the {B}?",
                                   f"What number of things are both <R> the {A} and <R2> the {B}?"),
               fn("count", BOTH), different_objects=(("", "2"),)),
        Family("intersect_exist", (f"Is there a <Z3> <C3> <M3> <S3> that is <R> the {A} and <R2> the {B}?",
                                   f"Are there any <Z3> <C3> <M3> <S3>s that are both <R> the {A} and <R2> the {B}?"),
               fn("exist", filters(BOTH, "3")), different_objects=(("", "2"),)),
    ],
}


def all_families() -> list[tuple[str, int, Family]]:
    """Every (template_filename, question_family_index, family), indices per file from 0."""
    return [(filename, index, family) for filename, families in TEMPLATE_FILES.items()
            for index, family in enumerate(families)]
