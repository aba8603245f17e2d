"""Tag an executed notebook's preliminaries so that its page starts with the text.

The book shows papermill's executed copies. Before a reader meets the first sentence of a
chapter, its notebook runs four cells a reader need not see: the install cell (for Colab
and Binder), the ``parameters`` cell, papermill's ``injected-parameters`` cell and the set-up
cell of imports (the first code cell after the parameters). ``make html`` runs this script
on the staged copy of every executed notebook: it collapses the first three behind a toggle
(Jupyter Book's ``hide-cell``) and hides the set-up cell's code behind one (``hide-input``),
keeping what it prints. The committed notebooks and the executed copies stay untagged, so
Colab and Binder show every cell.

    python book/hide_cells.py build/book/src/notebooks/*.ipynb
"""
from __future__ import annotations

import sys

import nbformat

INSTALL_MARKER = "# On Colab or Binder, install the book's package first"
PRELIMINARY = ("parameters", "injected-parameters")


def tag_preliminaries(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Add ``hide-cell`` to the install, parameters and injected cells, ``hide-input`` to the set-up cell."""
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    seen_parameters = False
    for cell in code:
        tags = cell.metadata.setdefault("tags", [])
        if cell.source.startswith(INSTALL_MARKER) or any(tag in tags for tag in PRELIMINARY):
            seen_parameters = seen_parameters or any(tag in tags for tag in PRELIMINARY)
            if "hide-cell" not in tags:
                tags.append("hide-cell")
        elif seen_parameters:                    # the first code cell after them: the set-up
            if "hide-input" not in tags:
                tags.append("hide-input")
            break
    return nb


def main(paths: list[str]) -> None:
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.write(tag_preliminaries(nb), path)


if __name__ == "__main__":
    main(sys.argv[1:])
