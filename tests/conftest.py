"""Shared fixtures: the book's table of contents and one quick papermill run of its notebooks.

The notebooks are executed with the Makefile's own rule (``make execute QUICK=1``, one
notebook per call so that each gets its own wall time), with the interpreter that runs
pytest. The executed copies land in build/quick/notebooks/, their results JSON in
build/quick/results/, and the wall times in build/quick/timings.json.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
TOC = REPO / "book" / "_toc.yml"
QUICK_DIR = REPO / "build" / "quick"
# How long one quick notebook may run before the make call is abandoned (the budget of 90 s
# is reported at the end of the session, not asserted);
# this only keeps a hung kernel from hanging the session.
HANG_LIMIT_S = 900


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of small-tensor tests (``pytestmark = usefixtures(...)``).

    Tensors this small run as fast on one thread, and the timings stay steady on a busy
    machine, where two threads competing with other processes for two cores slow down many times.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def book_script(name: str):
    """The module of the build helper ``book/<name>.py`` (the book's scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "book" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toc_files() -> list[str]:
    """Every page of book/_toc.yml in reading order, as paths without suffix (book/intro, ...)."""
    toc = yaml.safe_load(TOC.read_text())
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({key: value for key, value in toc.items() if key != "root"})
    return files


def toc_notebooks() -> list[str]:
    """Names of the notebooks the book shows, e.g. ``03_parity``, in reading order."""
    return [Path(f).name for f in toc_files() if f.startswith("notebooks/")]


def repo_notebooks() -> list[str]:
    """The toc's notebooks and every notebooks/*.ipynb, so a notebook missing on disk still shows up."""
    on_disk = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
    return toc_notebooks() + [name for name in on_disk if name not in toc_notebooks()]


def pytest_generate_tests(metafunc):
    if "toc_notebook" in metafunc.fixturenames:
        metafunc.parametrize("toc_notebook", toc_notebooks())
    if "repo_notebook" in metafunc.fixturenames:
        metafunc.parametrize("repo_notebook", repo_notebooks())
    if "toc_page" in metafunc.fixturenames:
        metafunc.parametrize("toc_page", toc_files())


def run_make(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """``make ARGS`` at the repository root, in the environment that runs the tests.

    PY= points the Makefile at this interpreter and INSTALL= skips its install check; the
    variables of an enclosing make (``make test``) are not passed down.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    command = ["make", "--no-print-directory", *args, f"PY={sys.executable}", "INSTALL="]
    try:
        return subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return subprocess.CompletedProcess(command, 124, out, f"timed out after {timeout} s")


@dataclass
class NotebookRun:
    name: str
    source: str
    executed: str
    results: str
    seconds: float | None
    returncode: int | None
    log: str

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.splitlines()[-lines:])


def _say(config, message: str) -> None:
    """Progress lines that show through pytest's output capture."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(message, flush=True)
        return
    with capture.global_and_fixture_disabled():
        print(message, flush=True)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def toc_pages() -> list[str]:
    """Every page of the toc in reading order (book/intro, notebooks/01_..., ...)."""
    return toc_files()


@pytest.fixture(scope="session")
def make():
    """``make(*args, timeout=...)``: the Makefile, run as the tests' own notebooks are run."""
    return run_make


@pytest.fixture(scope="session")
def quick_runs(pytestconfig) -> dict[str, NotebookRun]:
    """Execute every notebook of the toc once per session in quick mode; name -> NotebookRun."""
    runs = {}
    for name in toc_notebooks():
        source = REPO / "notebooks" / f"{name}.ipynb"
        executed = QUICK_DIR / "notebooks" / f"{name}.ipynb"
        results = QUICK_DIR / "results" / f"{name}.json"
        run = NotebookRun(name, str(source), str(executed), str(results), None, None, "")
        runs[name] = run
        if not source.exists():
            run.log = f"{source.relative_to(REPO)} is listed in book/_toc.yml but does not exist"
            continue
        # Always a fresh run: no copy or results left over from an earlier session count.
        executed.unlink(missing_ok=True)
        results.unlink(missing_ok=True)
        _say(pytestconfig, f"\n[quick] executing notebooks/{name}.ipynb ...")
        start = time.perf_counter()
        proc = run_make("execute", "QUICK=1", f"NOTEBOOKS=notebooks/{name}.ipynb",
                        "CELL_TIMEOUT=600", timeout=HANG_LIMIT_S)
        run.seconds = time.perf_counter() - start
        run.returncode = proc.returncode
        run.log = proc.stdout
        _say(pytestconfig, f"[quick] {name}: exit {proc.returncode} in {run.seconds:.1f} s")
    QUICK_DIR.mkdir(parents=True, exist_ok=True)
    (QUICK_DIR / "timings.json").write_text(json.dumps(
        {name: {"seconds": run.seconds, "returncode": run.returncode} for name, run in runs.items()},
        indent=2) + "\n")
    return runs


_SESSION_START = time.time()


@pytest.fixture(autouse=True)
def ieee_subnormals():
    """Every test starts and ends with subnormal floats on (the process-wide default)."""
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)


def pytest_terminal_summary(terminalreporter):
    """Print each quick run's wall time against the 90 s budget (a report, not a test)."""
    timings = QUICK_DIR / "timings.json"
    if not timings.exists() or timings.stat().st_mtime < _SESSION_START:
        return                                   # no notebook ran in this session
    terminalreporter.write_sep("-", "quick notebook runs (budget 90 s each)")
    for name, run in json.loads(timings.read_text()).items():
        seconds = run.get("seconds")
        mark = "" if seconds is None or seconds <= 90 else "  OVER BUDGET"
        shown = "n/a" if seconds is None else f"{seconds:.1f} s"
        terminalreporter.write_line(f"{name:28s} {shown:>9s}  exit {run.get('returncode')}{mark}")


# Tests that need these fixtures execute the chapters (or read what they wrote, or the book
# built from them): they are marked ``notebook``; those that open the book in Chromium are
# marked ``browser``. Both imply ``slow``, so ``pytest -m "not slow"`` is the quick inner loop.
NOTEBOOK_FIXTURES = {"quick_runs", "quick_book", "static_pages"}
BROWSER_FIXTURES = {"rendered"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        if fixtures & (NOTEBOOK_FIXTURES | BROWSER_FIXTURES):
            item.add_marker(pytest.mark.notebook)
        if item.get_closest_marker("notebook") or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)


def repeats_here(request, name: str, entry: dict) -> bool:
    """Whether this test can repeat the shipped ``entry``'s digits in this process.

    True on the machine that trained it. On an AVX512 CPU of its model that rounds as it did with
    the kernels held back (``pretrained.kernels_to_repeat``), the test runs again in a pytest process
    under those variables, must pass there, and False is returned: nothing more to check here.
    Elsewhere the test is skipped, naming both machines (float rounding differs, so do the digits).
    """
    from adaptive.infra import pretrained
    variables = pretrained.kernels_to_repeat(entry)
    if variables is None:
        pytest.skip(f"{name} was recorded on {entry['machine']}, this is {pretrained.machine()}: its digits differ")
    if not variables:
        return True
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid],
                          cwd=REPO, env={**os.environ, **variables}, capture_output=True, text=True)
    assert done.returncode == 0, (f"under {variables}, as {name} was trained:\n" + done.stdout[-4000:])
    return False
