"""book/run_times.py: the course guide's run times come from the runs' own records."""
import json
from pathlib import Path

from conftest import book_script

run_times = book_script("run_times")


def executed(path: Path, seconds: float, exception=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [], "metadata": {"papermill": {"duration": seconds, "exception": exception}}}))


def test_the_table_shows_what_was_run_and_says_what_was_not(tmp_path):
    first, second, *_ = run_times.chapters()
    executed(tmp_path / "quick" / "notebooks" / f"{first}.ipynb", 12.4)
    executed(tmp_path / "executed" / "notebooks" / f"{first}.ipynb", 600.0)
    executed(tmp_path / "executed" / "notebooks" / f"{second}.ipynb", 30.0, exception=True)   # a failed run
    (tmp_path / "gpu-check").mkdir()
    (tmp_path / "gpu-check" / "gpu-check.json").write_text(json.dumps(
        {"gpu": "NVIDIA H200", "steps": [{"name": f"chapter {first} (quick, cuda)", "returncode": 0, "seconds": 3.2}]}))
    rows = {line.split(" | ")[0].strip("| "): line for line in run_times.table(tmp_path).splitlines()
            if line.startswith("| 0")}
    assert rows.keys() == set(run_times.chapters())
    assert "| 12 s | 10.0 min | 3 s |" in rows[first]
    assert rows[second].count("not run in this build") == 2 and "not measured yet" in rows[second]
    assert "NVIDIA H200" in run_times.table(tmp_path)


def test_the_course_guide_includes_the_table_make_html_writes(repo_root):
    assert "```{include} ../run_times.md" in (repo_root / "book" / "course.md").read_text()
    assert "book/run_times.py $(SITE_DIR)/src/run_times.md" in (repo_root / "Makefile").read_text()
