"""book/hide_cells.py: the book's pages start with the text, the preliminaries behind toggles."""
import nbformat
from conftest import book_script

hide_cells = book_script("hide_cells")


def notebook(*cells):
    nb = nbformat.v4.new_notebook()
    for kind, source, tags in cells:
        cell = (nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell)(source)
        cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    return nb


def tags(nb):
    return [cell.metadata.get("tags", []) for cell in nb.cells]


def test_preliminaries_collapse_and_the_setup_code_hides():
    nb = hide_cells.tag_preliminaries(notebook(
        ("md", "# Title", []), ("code", hide_cells.INSTALL_MARKER + " ...", []),
        ("code", "quick = False", ["parameters"]),
        ("code", "quick = True", ["injected-parameters"]), ("code", "import torch", []), ("md", "## Text", []),
        ("code", "print(1)", [])))
    assert tags(nb) == [[], ["hide-cell"], ["parameters", "hide-cell"], ["injected-parameters", "hide-cell"],
                        ["hide-input"], [], []]


def test_tagging_twice_changes_nothing_and_a_notebook_without_parameters_is_left_alone():
    nb = notebook(("code", "quick = False", ["parameters"]), ("code", "import torch", []))
    once = tags(hide_cells.tag_preliminaries(nb))
    assert tags(hide_cells.tag_preliminaries(nb)) == once == [["parameters", "hide-cell"], ["hide-input"]]
    plain = notebook(("code", "x = 1", []), ("code", "y = 2", []))
    assert tags(hide_cells.tag_preliminaries(plain)) == [[], []]


def test_every_chapter_has_the_cells_the_script_looks_for(repo_root):
    for path in sorted((repo_root / "notebooks").glob("*.ipynb")):
        nb = hide_cells.tag_preliminaries(nbformat.read(path, as_version=4))
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        assert "hide-cell" in code[0].metadata["tags"] and "parameters" in code[1].metadata["tags"], path.name
        assert "hide-input" in code[2].metadata["tags"], path.name
