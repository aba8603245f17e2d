"""Running a CLEVR functional program on a scene.

A program is CLEVR's list of nodes ``{"function", "inputs", "value_inputs"}`` in execution
order: ``inputs`` are indices of earlier nodes, ``value_inputs`` the literal arguments
(``["red"]`` for ``filter_color``, ``["left"]`` for ``relate``). The answer is the output of
the last node. Object sets are sorted lists of object indices; an object is one index.

Functions (CLEVR's names): scene, filter_{color,shape,size,material}, unique, relate,
query_{...}, same_{...} (the *other* objects sharing the attribute), equal_{...}, count,
exist, union, intersect, equal_integer, less_than, greater_than.

Mini-CLEVR's answers are computed with this executor, and the tests re-run every stored
program with it. It reads real CLEVR v1.0 scenes and programs too.
"""
from __future__ import annotations

ATTRIBUTES = ("color", "shape", "size", "material")


class ProgramError(ValueError):
    """A program that cannot run on a scene, e.g. ``unique`` on a set that is not one object."""


def answer_text(value) -> str:
    """An executor output as CLEVR writes answers: booleans as yes/no, integers as digits."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise ProgramError(f"a program must end in an answer (yes/no, a number or an attribute value), "
                       f"not in {type(value).__name__} {value!r}")


def _objects(name, value):
    if not isinstance(value, list):
        raise ProgramError(f"{name} needs a set of objects, got {value!r}")
    return value


def _object(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProgramError(f"{name} needs one object (the output of unique), got {value!r}")
    return value


def apply(function: str, args: list, value, scene: dict):
    """The output of one node: ``function`` applied to the outputs ``args`` of its inputs.

    ``value`` is the node's single value input (None when it has none).
    """
    objects = scene["objects"]
    if function == "scene":
        return list(range(len(objects)))
    if function.startswith("filter_"):
        attribute = function[len("filter_"):]
        return [i for i in _objects(function, args[0]) if objects[i][attribute] == value]
    if function == "unique":
        members = _objects(function, args[0])
        if len(members) != 1:
            raise ProgramError(f"unique needs exactly one object, got {len(members)}: {members}")
        return members[0]
    if function == "relate":
        relations = scene["relationships"] if "relationships" in scene else scene["relations"]
        return list(relations[value][_object(function, args[0])])
    if function.startswith("query_"):
        return objects[_object(function, args[0])][function[len("query_"):]]
    if function.startswith("same_"):
        attribute = function[len("same_"):]
        me = _object(function, args[0])
        return [i for i in range(len(objects)) if i != me and objects[i][attribute] == objects[me][attribute]]
    if function in ("equal_color", "equal_shape", "equal_size", "equal_material", "equal_integer"):
        return args[0] == args[1]
    if function == "less_than":
        return args[0] < args[1]
    if function == "greater_than":
        return args[0] > args[1]
    if function == "count":
        return len(_objects(function, args[0]))
    if function == "exist":
        return len(_objects(function, args[0])) > 0
    if function == "union":
        return sorted(set(_objects(function, args[0])) | set(_objects(function, args[1])))
    if function == "intersect":
        return sorted(set(_objects(function, args[0])) & set(_objects(function, args[1])))
    raise ProgramError(f"unknown program function {function!r}")


def run(program: list[dict], scene: dict) -> list:
    """The output of every node of ``program`` on ``scene`` (same order as the program)."""
    outputs = []
    for index, node in enumerate(program):
        inputs = node.get("inputs", [])
        if any(not 0 <= i < index for i in inputs):
            raise ProgramError(f"node {index} ({node['function']}) reads inputs {inputs}; "
                               f"inputs must be indices of earlier nodes")
        values = node.get("value_inputs", [])
        outputs.append(apply(node["function"], [outputs[i] for i in inputs],
                             values[0] if values else None, scene))
    return outputs


def execute(program: list[dict], scene: dict) -> str:
    """The answer of ``program`` on ``scene`` as CLEVR writes it (``"yes"``, ``"3"``, ``"red"``)."""
    if not program:
        raise ProgramError("an empty program has no answer")
    return answer_text(run(program, scene)[-1])
