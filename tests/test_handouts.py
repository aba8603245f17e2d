"""book/handouts.py and the student targets: the exercises stay, every solution goes."""
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import book_script

REPO = Path(__file__).resolve().parents[1]
handouts = book_script("handouts")

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
OPENING = re.compile(r"^(`{3,}|:{3,})\{(exercise|solution)\}(.*)$")


def blocks(markdown: str, kind: str) -> list[str]:
    """The ``{kind}`` directives of a markdown text, each from its opening to its closing fence."""
    lines, found, i = markdown.split("\n"), [], 0
    while i < len(lines):
        opening = OPENING.match(lines[i])
        if opening and opening.group(2) == kind:
            fence = opening.group(1)
            end = next(j for j in range(i + 1, len(lines))
                       if re.fullmatch(rf"{re.escape(fence[0])}{{{len(fence)},}}\s*", lines[j]))
            found.append("\n".join(lines[i:end + 1]))
            i = end
        i += 1
    return found


def label(block: str) -> str:
    return re.search(r"^:label: (\S+)$", block, re.M).group(1)


def markdown_of(nb) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "markdown"]


EXERCISE = """## Exercises

````{exercise} A title with $h$
:label: ex-demo-1

Compute this:

```python
print(1)
```
````

````{solution} ex-demo-1
:label: sol-demo-1
:class: dropdown

Like so:

```python
print(2)
```
````

:::{exercise}
:label: ex-demo-2

No title, colon fence.
:::

:::{solution} ex-demo-2
:class: dropdown
Answer two.
:::

```{exercise}
:label: ex-demo-3

Without a solution.
```"""


def synthetic():
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("print(3)")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="3\n")]
    code.execution_count = 7
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter"), code, nbformat.v4.new_markdown_cell(EXERCISE)]
    return nb


def test_a_synthetic_notebook_loses_its_solutions_and_outputs_and_keeps_its_exercises():
    nb = synthetic()
    ids = [cell.id for cell in nb.cells]
    exercises = blocks(EXERCISE, "exercise")
    assert len(exercises) == 3 and len(blocks(EXERCISE, "solution")) == 2
    out = handouts.handout(nb)
    text = out.cells[2].source
    assert "{solution}" not in text and "Like so" not in text and "Answer two" not in text
    assert blocks(text, "exercise") == exercises
    assert text.startswith("## Exercises\n\n") and "\n\n\n" not in text and not text.endswith("\n")
    assert out.cells[1].outputs == [] and out.cells[1].execution_count is None
    assert [cell.id for cell in out.cells] == ids and out.cells[0].source == "# A chapter"


def test_markdown_without_solutions_is_left_as_it_is():
    text = "Some text\n\n```python\nx = 1\n```\n"
    assert handouts.remove_solutions(text) == text


def test_an_unclosed_solution_is_an_error():
    with pytest.raises(ValueError, match="never closed"):
        handouts.remove_solutions("```{exercise}\n:label: ex-a\nQ\n```\n\n````{solution} ex-a\nA\n```")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_exercise_is_labelled_and_every_solution_answers_one(path):
    text = "\n".join(markdown_of(nbformat.read(path, as_version=4)))
    exercises = [label(block) for block in blocks(text, "exercise")]
    assert exercises, f"{path.name}: no {{exercise}}"
    assert exercises == [f"ex-{exercises[0].split('-')[1]}-{n}" for n in range(1, len(exercises) + 1)], exercises
    for block in blocks(text, "solution"):
        target = OPENING.match(block.split("\n")[0]).group(3).strip()
        assert target in exercises, f"{path.name}: a solution to {target!r}, not an exercise of this chapter"
        assert ":class: dropdown" in block.split("\n\n")[0], f"{path.name}: the solution to {target} is not a dropdown"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_handout_of_a_chapter_keeps_every_exercise_and_no_solution(path, tmp_path):
    source = nbformat.read(path, as_version=4)
    (written,) = handouts.write_handouts(tmp_path, [path])
    out = nbformat.read(written, as_version=4)
    assert written == tmp_path / path.name
    text, before = "\n".join(markdown_of(out)), "\n".join(markdown_of(source))
    assert "{solution}" not in text
    assert blocks(text, "exercise") == blocks(before, "exercise")
    assert blocks(before, "solution"), f"{path.name} has no solution to remove"
    assert all(cell.outputs == [] for cell in out.cells if cell.cell_type == "code")
    assert [cell.id for cell in out.cells] == [cell.id for cell in source.cells]
    assert [cell.source for cell in out.cells if cell.cell_type == "code"] == \
        [cell.source for cell in source.cells if cell.cell_type == "code"]


def test_the_student_config_is_the_book_config_with_hide_solutions(tmp_path):
    target = tmp_path / "student" / "_config.yml"
    handouts.main(["config", str(REPO / "book" / "_config.yml"), str(target)])
    book = yaml.safe_load((REPO / "book" / "_config.yml").read_text())
    student = yaml.safe_load(target.read_text())
    assert student["sphinx"]["config"].pop("hide_solutions") is True
    assert "hide_solutions" not in book["sphinx"]["config"]
    assert student == book
    assert {"sphinx_exercise", "sphinx_proof"} <= set(book["sphinx"]["extra_extensions"])


def dry_run(*args: str) -> str:
    proc = subprocess.run(["make", "-n", "--no-print-directory", *args, "INSTALL="], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 0, proc.stdout
    return proc.stdout


def test_the_student_book_target_builds_into_its_own_folder_with_the_student_config():
    out = dry_run("html-student", "QUICK=1")
    config = "build/quick/book-student/_config.yml"
    assert f"book/handouts.py config book/_config.yml {config}" in out
    assert re.search(rf"jupyter-book build build/quick/book-student/src .*\n?.*--config {config}", out), out
    assert "book-student" in dry_run("book-student", "QUICK=1")


def test_the_handouts_target_writes_build_handouts_from_every_notebook():
    out = dry_run("handouts")
    assert "book/handouts.py notebooks build/handouts" in out
    assert all(str(path.relative_to(REPO)) in out for path in NOTEBOOKS)


def test_make_help_lists_the_student_targets():
    proc = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, text=True, capture_output=True,
                          timeout=60)
    assert "make html-student" in proc.stdout and "make handouts" in proc.stdout
    assert proc.stdout.rstrip().endswith("CELL_TIMEOUT=seconds per cell."), "make help prints past its text"
