"""The student's side of the book: the chapters without their solutions.

Every exercise of a chapter is an ``{exercise}`` directive (sphinx-exercise), most followed
by a ``{solution}`` directive. Two ways to give students the exercises alone:

- ``make handouts`` writes build/handouts/<name>.ipynb: each notebook of notebooks/ with
  every ``{solution}`` block removed from its markdown cells and every output cleared, to
  open in Jupyter, Colab or Binder. The exercises stay word for word.
- ``make html-student`` builds the book with sphinx-exercise's ``hide_solutions`` on, from
  a copy of book/_config.yml that this script writes, into its own folder.

    python book/handouts.py notebooks build/handouts notebooks/*.ipynb
    python book/handouts.py config book/_config.yml build/book-student/_config.yml
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import nbformat
import yaml

# The opening fence of a solution: three or more backticks or colons, then {solution}.
SOLUTION_FENCE = re.compile(r"^ {0,3}(`{3,}|:{3,})\{solution\}")


def remove_solutions(markdown: str) -> str:
    """The markdown without its ``{solution}`` blocks (and the blank lines after each)."""
    lines = markdown.split("\n")
    kept: list[str] = []
    i = 0
    while i < len(lines):
        opening = SOLUTION_FENCE.match(lines[i])
        if not opening:
            kept.append(lines[i])
            i += 1
            continue
        fence = opening.group(1)
        # MyST closes a fence at a line of the same character, at least as long, and nothing else.
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), None)
        if end is None:
            raise ValueError(f"a {{solution}} block opened by {fence!r} is never closed: {lines[i]!r}")
        i = end + 1
        while i < len(lines) and not lines[i].strip():
            i += 1
    return "\n".join(kept).rstrip("\n") if len(kept) < len(lines) else markdown


def handout(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook, in place, with no solution in its markdown and no output in its code."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = remove_solutions(cell.source)
        elif cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def write_handouts(out_dir: Path, paths: list[Path]) -> list[Path]:
    """Write the handout of each notebook to out_dir/<its name>; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        target = out_dir / path.name
        nbformat.write(handout(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


def student_config(config: dict) -> dict:
    """A Jupyter Book configuration that hides every solution (sphinx-exercise's hide_solutions)."""
    sphinx = dict(config.get("sphinx") or {})
    sphinx["config"] = {**(sphinx.get("config") or {}), "hide_solutions": True}
    return {**config, "sphinx": sphinx}


def write_student_config(source: Path, target: Path) -> None:
    config = student_config(yaml.safe_load(source.read_text()))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f"# Written by book/handouts.py from {source}: the same book, solutions hidden.\n"
                      + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    notebooks = commands.add_parser("notebooks", help="write solution-free, output-free copies of notebooks")
    notebooks.add_argument("out_dir", type=Path)
    notebooks.add_argument("notebooks", type=Path, nargs="+")
    config = commands.add_parser("config", help="write a copy of a book config with hide_solutions on")
    config.add_argument("source", type=Path)
    config.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    if args.command == "notebooks":
        written = write_handouts(args.out_dir, args.notebooks)
        print(f"{len(written)} handout(s) without solutions in {args.out_dir}")
    else:
        write_student_config(args.source, args.target)


if __name__ == "__main__":
    main()
