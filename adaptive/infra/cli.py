"""A command line built from a configuration dataclass: one flag per field.

``add_config_arguments(parser, Config)`` adds ``--field-name`` for every field of ``Config``:

* a ``bool`` field becomes ``--name`` / ``--no-name``;
* a ``tuple[X, ...]`` field takes any number of values of type X (``--milestones 0.5 0.75``);
* an ``X | None`` field takes values of type X (or of ``parsers[name]``, e.g. ``json.loads``)
  and keeps None as its default;
* a field without a default is required;
* every help text ends with the default.

``config_from(Config, values)`` builds the configuration from the parsed values (lists back
to tuples), leaving out values that are not fields (``--checkpoint-dir`` and the like).
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable


def _value_type(annotation) -> tuple[type | None, bool]:
    """(the type of one value, whether the field is a tuple) of a field's annotation."""
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):           # X | None
        return _value_type(arguments[0]) if len(arguments) == 1 else (None, False)
    if origin is tuple:                                       # tuple[X, ...]
        return arguments[0], True
    return annotation, False


def add_config_arguments(parser: argparse.ArgumentParser, config_class, *, help_texts: dict[str, str] | None = None,
                         choices: dict[str, tuple] | None = None,
                         parsers: dict[str, Callable] | None = None) -> argparse.ArgumentParser:
    """Add one flag per field of the dataclass ``config_class`` to ``parser``; return ``parser``.

    Args:
        help_texts: help text by field name.
        choices: allowed values by field name (for a tuple field: of each value).
        parsers: the parser of a field's values by field name, where the annotation's type does
            not parse a string (e.g. ``json.loads`` for a dict).
    """
    help_texts, choices, parsers = help_texts or {}, choices or {}, parsers or {}
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        flag = "--" + field.name.replace("_", "-")
        text = help_texts.get(field.name, "")
        kind, is_tuple = _value_type(hints[field.name])
        kind = parsers.get(field.name, kind)
        if field.default is dataclasses.MISSING:
            parser.add_argument(flag, type=kind, required=True, choices=choices.get(field.name), help=text)
        elif kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=text)
        else:
            if "default" not in text:
                text = f"{text} (default {field.default})".strip()
            default = list(field.default) if is_tuple else field.default
            parser.add_argument(flag, type=kind, nargs="*" if is_tuple else None, default=default,
                                choices=choices.get(field.name), help=text)
    return parser


def config_from(config_class, values: dict):
    """A ``config_class`` from ``values`` (e.g. ``vars(parser.parse_args())``): its fields only,
    lists (argparse, JSON) turned back into tuples."""
    names = {field.name for field in dataclasses.fields(config_class)}
    return config_class(**{key: tuple(value) if isinstance(value, list) else value
                           for key, value in values.items() if key in names})
