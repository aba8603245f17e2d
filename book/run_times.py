"""Write the course guide's table of measured run times, from the runs this build has.

Every number comes from a run: papermill records each executed notebook's wall time in its
metadata (``metadata.papermill.duration``), so the table reads the executed copies of the
full run (``build/executed``) and of the quick run (``build/quick``, which ``make test``
writes), and the GPU report of ``make gpu-check`` (``build/gpu-check/gpu-check.json``) when
one exists. A chapter without a run says so instead of showing a number. ``make html`` runs
this script and includes the table in ``book/course.md``.

    python book/run_times.py OUT.md [--build build]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def chapters() -> list[str]:
    """The notebooks of the toc, in reading order (e.g. ``03_parity``)."""
    toc = yaml.safe_load((REPO / "book" / "_toc.yml").read_text())
    return [Path(item["file"]).name for part in toc["parts"] for item in part["chapters"]
            if item["file"].startswith("notebooks/")]


def duration(path: Path) -> float | None:
    """The wall time papermill recorded for an executed notebook, in seconds, or None."""
    if not path.is_file():
        return None
    papermill = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
    return papermill.get("duration") if papermill.get("exception") in (None, False) else None


def gpu_durations(report: Path) -> tuple[dict[str, float], str | None]:
    """Chapter -> quick-mode seconds on the GPU of ``make gpu-check``, and the GPU's name."""
    if not report.is_file():
        return {}, None
    data = json.loads(report.read_text())
    times = {}
    for step in data.get("steps", []):
        for name in chapters():
            if f"chapter {name} " in step["name"] and step["returncode"] == 0:
                times[name] = step["seconds"]
    return times, data.get("gpu")


def shown(seconds: float | None) -> str:
    if seconds is None:
        return "not run in this build"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def table(build: Path) -> str:
    gpu, gpu_name = gpu_durations(build / "gpu-check" / "gpu-check.json")
    lines = [f"| chapter | quick mode, CPU | full mode, CPU | quick mode, GPU{f' ({gpu_name})' if gpu_name else ''} |",
             "|---|---:|---:|---:|"]
    for name in chapters():
        quick = duration(build / "quick" / "notebooks" / f"{name}.ipynb")
        full = duration(build / "executed" / "notebooks" / f"{name}.ipynb")
        on_gpu = f"{gpu[name]:.0f} s" if name in gpu else "not measured yet"
        lines.append(f"| {name} | {shown(quick)} | {shown(full)} | {on_gpu} |")
    lines += ["", f"Measured by this build's own runs on {os.cpu_count()} CPU core(s) "
              f"({platform.machine()}, Python {platform.python_version()}): the wall time papermill "
              "recorded for each executed notebook (a run that found the checkpoints of an earlier run "
              "only evaluates them)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="the Markdown file to write")
    parser.add_argument("--build", default=str(REPO / "build"), help="the build folder to read the runs from")
    args = parser.parse_args(argv)
    Path(args.out).write_text(table(Path(args.build)))


if __name__ == "__main__":
    main()
