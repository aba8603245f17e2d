"""The HTML book, built from the quick executed notebooks and opened in headless Chromium.

``make html QUICK=1`` builds build/quick/book/_build/html from build/quick/notebooks (which
the ``quick_runs`` fixture fills). Static checks read the HTML files; the browser checks load
every page of the toc in Chromium with name resolution switched off, read the DOM after the
page's scripts ran (MathJax included) and save a screenshot to build/screenshots/.
``make html-student QUICK=1`` builds the same book with the solutions hidden into
build/quick/book-student/_build/html, which must show every exercise and no solution.
"""
from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
HTML_DIR = REPO / "build" / "quick" / "book" / "_build" / "html"
STUDENT_HTML_DIR = REPO / "build" / "quick" / "book-student" / "_build" / "html"   # make html-student
SCREENSHOTS = REPO / "build" / "screenshots"
REPOSITORY = "adaptive-computation/adaptive-book"
BRANCH = "main"
# Chapters that must show at least one figure drawn by the notebook.
FIGURE_CHAPTERS = {"01_halting_mechanisms", "02_dact_bound", "03_parity", "05_clevr", "06_spatial"}
# Pages that are written with equations and must therefore show rendered math.
MATH_PAGES = {"book/intro", "book/code"}


def code_page_functions() -> dict[str, list[str]]:
    """The functions book/code.md includes with literalinclude :pyobject:, by module."""
    text = (REPO / "book" / "code.md").read_text()
    found: dict[str, list[str]] = {}
    for module, function in re.findall(
            r"```\{literalinclude\} \.\./adaptive/([\w/]+)\.py\n(?::[^\n]*\n)*?:pyobject: (\w+)", text):
        found.setdefault(module.replace("/", "."), []).append(function)
    return found


REFERENCE_TITLES = [
    "Adaptive Computation Time for Recurrent Neural Networks",
    "Spatially Adaptive Computation Time for Residual Networks",
    "Probabilistic Adaptive Computation Time",
    "Differentiable Adaptive Computation Time for Visual Reasoning",
    "Learning to Ponder",
    "Compositional Attention Networks for Machine Reasoning",
]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", "--disable-dev-shm-usage", "--hide-scrollbars",
    # No network: every host name fails to resolve, so anything not bundled fails to load.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--virtual-time-budget=10000",
]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Page(HTMLParser):
    """What the checks need from one HTML document, read with the standard library parser."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, set[str]]] = []
        self.text: list[str] = []          # visible text
        self.prose: list[str] = []         # visible text outside code, pre and rendered math
        self.math = 0                      # elements of class "math" (Sphinx's math nodes)
        self.math_rendered = 0             # ... of which hold a MathJax mjx-container
        self.math_errors = 0               # MathJax <mjx-merror> elements
        self.output_images: list[str] = []  # src of <img> inside a notebook cell output
        self.error_outputs = 0             # notebook outputs of class traceback / error
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.ids: dict[str, set[str]] = {}   # id -> the classes of the element that has it
        self._open_math: list[list[bool]] = []
        self.feed(html)
        self.close()

    def _inside(self, cls: str | None = None, tags: tuple[str, ...] = ()) -> bool:
        return any((cls and cls in classes) or tag in tags for tag, classes in self.stack)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        if tag == "link" and "stylesheet" in (attrs.get("rel") or ""):
            self.stylesheets.append(attrs.get("href", ""))
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if attrs.get("id"):
            self.ids.setdefault(attrs["id"], classes)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
            if self._inside("cell_output"):
                self.output_images.append(attrs.get("src", ""))
        if tag == "mjx-merror":
            self.math_errors += 1
        if tag == "mjx-container":
            for flags in self._open_math:
                flags[0] = True
        if "output" in classes and classes & {"traceback", "error"}:
            self.error_outputs += 1
        if tag in VOID:
            return
        if "math" in classes:
            self.math += 1
            self._open_math.append([False])
        self.stack.append((tag, classes))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                for _, classes in self.stack[i:]:
                    if "math" in classes:
                        self.math_rendered += self._open_math.pop()[0]
                del self.stack[i:]
                return

    def handle_data(self, data):
        if self._inside(tags=("script", "style", "head", "title")):
            return
        self.text.append(data)
        if not self._inside("math", ("pre", "code", "mjx-container")):
            self.prose.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)

    @property
    def prose_text(self) -> str:
        return "".join(self.prose)


def page_path(docname: str, html_dir: Path = HTML_DIR) -> Path:
    return html_dir / f"{docname}.html"


def exercise_labels(notebook: str) -> tuple[list[str], list[str]]:
    """The labels of a chapter's {exercise} and {solution} directives, from its committed source."""
    nb = nbformat.read(REPO / "notebooks" / f"{notebook}.ipynb", as_version=4)
    text = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    found = {kind: re.findall(rf"^[`:]{{3,}}\{{{kind}\}}.*\n:label: (\S+)$", text, re.M)
             for kind in ("exercise", "solution")}
    return found["exercise"], found["solution"]


@pytest.fixture(scope="session")
def quick_book(quick_runs, make):
    """Build the HTML book from the quick executed copies; returns the html folder."""
    failed = [name for name, run in quick_runs.items() if run.returncode != 0]
    if failed:
        pytest.fail(f"the book needs every notebook of the toc; {failed} did not execute "
                    f"(see tests/test_notebooks.py)", pytrace=False)
    proc = make("html", "QUICK=1", timeout=1800)
    assert proc.returncode == 0, (f"make html QUICK=1 failed (exit {proc.returncode}):\n"
                                  + "\n".join(proc.stdout.splitlines()[-60:]))
    assert (HTML_DIR / "index.html").exists(), f"no index.html in {HTML_DIR}"
    return HTML_DIR


@pytest.fixture(scope="session")
def static_pages(quick_book, toc_pages) -> dict[str, Page]:
    return {doc: Page(page_path(doc).read_text()) for doc in toc_pages if page_path(doc).exists()}


def static_page(static_pages: dict[str, Page], doc: str) -> Page:
    if doc not in static_pages:
        pytest.fail(f"{doc}: no page at {page_path(doc)}")
    return static_pages[doc]


# --- static checks ------------------------------------------------------------------------------

def test_every_toc_page_is_built(quick_book, toc_page):
    assert page_path(toc_page).exists(), f"{toc_page}: no page at {page_path(toc_page)}"


def test_nothing_loads_from_the_network(static_pages, toc_page):
    page = static_page(static_pages, toc_page)
    remote = [url for url in page.scripts + page.stylesheets + page.images
              if urlparse(url).scheme in ("http", "https") or url.startswith("//")]
    assert not remote, f"{toc_page} loads resources from the network: {remote}"
    mathjax = [src for src in page.scripts if "mathjax" in src.lower()]
    if page.math:
        assert mathjax and all("_static/mathjax/tex-chtml.js" in src for src in mathjax), (
            f"{toc_page}: MathJax must come from the bundled _static/mathjax, got {mathjax}")


def test_chapter_pages_have_launch_buttons(static_pages, toc_notebook):
    doc = f"notebooks/{toc_notebook}"
    links = static_page(static_pages, doc).links
    colab = f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/{doc}.ipynb"
    binder = f"https://mybinder.org/v2/gh/{REPOSITORY}/{BRANCH}?urlpath=tree/{doc}.ipynb"
    assert colab in links, f"{doc}: no Colab button to {colab}"
    assert binder in links, f"{doc}: no Binder button to {binder}"


def test_chapter_pages_start_with_the_text(static_pages, toc_notebook):
    """The install, parameters and injected cells are collapsed, the set-up cell's code hidden
    (book/hide_cells.py), so the first thing a page shows is its prose."""
    html = page_path(f"notebooks/{toc_notebook}").read_text()
    assert html.count("tag_hide-cell") >= 3, f"{toc_notebook}: the preliminary cells are not collapsed"
    assert "tag_hide-input" in html, f"{toc_notebook}: the set-up cell's code is not hidden"
    first_cell = html.find('class="cell docutils container')
    first_open_cell = html.find('class="cell docutils container"')
    assert first_cell == -1 or first_open_cell == -1 or html.find("<p>") < first_open_cell, \
        f"{toc_notebook}: a visible code cell comes before the first paragraph"


def check_figures(doc: str, page: Page, html_file: Path) -> None:
    if Path(doc).name not in FIGURE_CHAPTERS:
        return
    assert page.output_images, f"{doc}: no <img> of an output figure in the page"
    for src in page.output_images:
        target = (html_file.parent / unquote(urlparse(src).path)).resolve()
        assert target.is_file() and target.stat().st_size > 1000, f"{doc}: figure {src} missing or empty"


def check_no_errors(doc: str, page: Page) -> None:
    assert "Traceback" not in page.all_text, f"{doc}: the page shows a Traceback"
    assert page.error_outputs == 0, f"{doc}: {page.error_outputs} error output cell(s)"
    # a Markdown table printed by a notebook (IPython.display.Markdown) must become a table,
    # not a paragraph of pipes (myst-nb renders CommonMark, without tables, unless told otherwise)
    raw_tables = re.findall(r"\|\s*[-—–]+:?\s*\|", page.prose_text)   # smartquotes turn --- into —
    assert not raw_tables, f"{doc}: Markdown table syntax shown as text: {raw_tables[:3]}"


def check_code_page(page: Page) -> None:
    import importlib

    text = page.all_text
    assert "def can_halt(" in text, "book/code: the source of def can_halt is not on the page"
    functions_shown = code_page_functions()
    assert {"act", "dact", "pact", "pondernet", "loop"} <= set(functions_shown), functions_shown
    from adaptive import loop

    for rule in loop.RULES.values():                     # each rule is shown next to its equations
        module_name = type(rule).__module__.removeprefix("adaptive.")
        assert type(rule).__name__ in functions_shown.get(module_name, []), \
            f"book/code does not show {type(rule).__name__}, the rule of {rule.name!r}"
    for module_name, functions in functions_shown.items():
        module = importlib.import_module(f"adaptive.{module_name}")
        for function in functions:
            source = inspect.getsource(getattr(module, function))
            missing = [line.strip() for line in source.splitlines()
                       if line.strip() and line.strip() not in text]
            assert not missing, (f"book/code: adaptive.{module_name}:{function} is not shown as in "
                                 f"the package; missing lines: {missing[:3]}")


def test_static_pages_show_figures_and_no_errors(static_pages, toc_page):
    page = static_page(static_pages, toc_page)
    check_figures(toc_page, page, page_path(toc_page))
    check_no_errors(toc_page, page)


def test_code_page_includes_the_package_source(static_pages):
    check_code_page(static_page(static_pages, "book/code"))


def test_chapter_exercises_render_with_their_solutions(static_pages, toc_notebook):
    """Every {exercise} of a chapter is a sphinx-exercise box, every {solution} a dropdown after it."""
    exercises, solutions = exercise_labels(toc_notebook)
    if not exercises:
        return
    doc = f"notebooks/{toc_notebook}"
    page = static_page(static_pages, doc)
    for label in exercises:
        assert {"exercise", "admonition"} <= page.ids.get(label, set()), f"{doc}: exercise {label} not rendered"
    for label in solutions:
        assert {"solution", "dropdown"} <= page.ids.get(label, set()), f"{doc}: solution {label} not a dropdown"
    html = page_path(doc).read_text()
    assert html.count('class="exercise admonition"') == len(exercises)
    assert html.count('class="solution dropdown admonition"') == len(solutions)
    assert "{exercise}" not in page.all_text and "{solution}" not in page.all_text, f"{doc}: a raw directive"


def test_the_halting_bound_is_a_theorem_with_its_proof(static_pages):
    page = static_page(static_pages, "notebooks/02_dact_bound")
    assert {"proof", "theorem"} <= page.ids.get("thm-dact-bound", set()), "no {prf:theorem} thm-dact-bound"
    html = page_path("notebooks/02_dact_bound").read_text()
    assert html.count('class="proof admonition"') == 1, "the theorem's {prf:proof} is not rendered"


@pytest.fixture(scope="session")
def student_book(quick_book, make) -> Path:
    """``make html-student QUICK=1``: the book with the solutions hidden, in its own folder."""
    proc = make("html-student", "QUICK=1", timeout=1800)
    assert proc.returncode == 0, (f"make html-student QUICK=1 failed (exit {proc.returncode}):\n"
                                  + "\n".join(proc.stdout.splitlines()[-60:]))
    assert (quick_book / "index.html").exists(), "the student build must not replace the book"
    return STUDENT_HTML_DIR


@pytest.mark.slow
def test_the_student_book_shows_the_exercises_and_no_solution(student_book, toc_notebook):
    exercises, solutions = exercise_labels(toc_notebook)
    html = page_path(f"notebooks/{toc_notebook}", student_book).read_text()
    page = Page(html)
    missing = [label for label in exercises if "exercise" not in page.ids.get(label, set())]
    assert not missing, f"{toc_notebook}: the student book lacks exercises {missing}"
    assert not [label for label in solutions if label in page.ids], f"{toc_notebook}: a solution is shown"
    assert 'class="solution' not in html, f"{toc_notebook}: the student book shows a solution"


def test_references_page_lists_the_papers(static_pages):
    # The bibliography style writes titles in sentence case.
    text = " ".join(static_page(static_pages, "book/references").all_text.split()).lower()
    missing = [title for title in REFERENCE_TITLES if title.lower() not in text]
    assert not missing, f"book/references lacks {missing}"


# --- in the browser -----------------------------------------------------------------------------

def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path:
        return path
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("chromium is not installed, and CI=true requires the browser checks "
                    "(.ci/run installs it with apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium): the browser checks of the "
                "book were skipped; the static checks still ran")


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def rendered(quick_book, tmp_path_factory):
    """docname -> the DOM after Chromium ran the page's scripts; also saves a screenshot."""
    cache: dict[str, str] = {}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def render(doc: str) -> str:
        if doc not in cache:
            chromium()
            url = page_path(doc).as_uri()
            profile = tmp_path_factory.mktemp("chromium")
            dump = run_chromium(["--dump-dom", url], profile)
            assert dump.returncode == 0 and "</html>" in dump.stdout, (
                f"{doc}: chromium --dump-dom failed (exit {dump.returncode}): {dump.stderr[-2000:]}")
            shot = SCREENSHOTS / f"{Path(doc).name}.png"
            shot.unlink(missing_ok=True)
            snap = run_chromium([f"--screenshot={shot}", "--window-size=1280,2400", url], profile)
            assert snap.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, (
                f"{doc}: chromium --screenshot failed (exit {snap.returncode}): {snap.stderr[-2000:]}")
            cache[doc] = dump.stdout
        return cache[doc]

    return render


def test_page_in_browser(rendered, static_pages, toc_page):
    dom = Page(rendered(toc_page))
    static = static_page(static_pages, toc_page)
    if toc_page in MATH_PAGES:
        assert static.math > 0, f"{toc_page} should contain math"
    if static.math:
        assert dom.math_rendered == dom.math == static.math, (
            f"{toc_page}: MathJax rendered {dom.math_rendered} of {static.math} math elements")
        assert dom.math_errors == 0, f"{toc_page}: {dom.math_errors} MathJax errors"
    raw = re.findall(r"\$\$|\$\\[A-Za-z]|\\\(|\\\[|\\begin\{", dom.prose_text)
    assert not raw, f"{toc_page}: raw TeX left in the rendered page: {raw[:5]}"
    check_figures(toc_page, dom, page_path(toc_page))
    check_no_errors(toc_page, dom)
    if toc_page == "book/code":
        check_code_page(dom)
