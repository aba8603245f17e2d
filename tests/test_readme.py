"""The README's Python examples run as written."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_a_python_example():
    assert BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index):
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), {})


def layout_rows() -> list[list[str]]:
    """The backticked paths of each row of the README's layout table."""
    section = README.read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.findall(r"`([^`]+)`", row.split("|")[1]) for row in rows]


def test_readme_layout_names_paths_that_exist():
    root = README.parent
    for names in layout_rows():
        folder = Path(names[0]).parent
        for name in names:
            path = root / name if "/" in name else root / folder / name
            assert path.exists() or path.name in (".venv", "build"), f"README layout names {name}, not in the tree"


def test_readme_layout_covers_every_module_of_the_package():
    root = README.parent
    named = {Path(name) if "/" in name else Path(names[0]).parent / name
             for names in layout_rows() for name in names}
    for module in sorted((root / "adaptive").rglob("*.py")):
        relative = module.relative_to(root)
        if relative.name == "__init__.py" and relative.parent == Path("adaptive"):
            continue
        assert any(relative == path or path in relative.parents for path in named), \
            f"{relative} is in no row of the README's layout table"
