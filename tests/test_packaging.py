"""The installed package declares what it imports, as ranges; the book and test tools are extras."""
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

BOOK_AND_TEST_TOOLS = {"jupyter-book", "sphinx", "myst-nb", "papermill", "jupyterlab", "ipykernel", "nbclient",
                       "nbformat", "jupytext", "matplotlib", "seaborn", "pandas", "pytest", "hypothesis", "ruff",
                       "nbstripout", "pre-commit", "pyyaml", "sphinx-exercise", "sphinx-proof"}


def requirements() -> list[Requirement]:
    return [Requirement(line) for line in metadata.requires("adaptive") or []]


def unconditional() -> list[Requirement]:
    return [r for r in requirements() if r.marker is None]


def test_torch_is_a_range_not_a_pin():
    torch = [r for r in unconditional() if r.name == "torch"]
    assert torch, "the package imports torch and must declare it"
    assert all(spec.operator not in ("==", "===") for spec in torch[0].specifier), torch[0]


def test_no_book_or_test_tool_is_an_unconditional_requirement():
    names = {r.name.lower() for r in unconditional()}
    assert not names & BOOK_AND_TEST_TOOLS, names & BOOK_AND_TEST_TOOLS
    assert {"torch", "numpy", "tqdm", "h5py", "pillow"} <= names


def test_the_extras_carry_the_rest_of_the_lock():
    """Every package that requirements.txt locks is a runtime requirement or in an extra."""
    lock = [Requirement(line) for line in (Path(__file__).resolve().parents[1] / "requirements.txt").read_text()
            .splitlines() if line.strip() and not line.startswith("#")]
    declared = {r.name.lower() for r in requirements()}
    assert {r.name.lower() for r in lock} <= declared, {r.name for r in lock} - declared
    extras = {extra for r in requirements() if r.marker for extra in ("book", "test")
              if r.marker.evaluate({"extra": extra})}
    assert extras == {"book", "test"}


def test_the_lock_satisfies_the_ranges():
    """make book installs requirements.txt, then the package: the pins must lie in its ranges."""
    lock = {Requirement(line).name.lower(): Requirement(line) for line in
            (Path(__file__).resolve().parents[1] / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    for requirement in requirements():
        pinned = lock.get(requirement.name.lower())
        assert pinned is not None, f"{requirement.name} is declared but not locked in requirements.txt"
        version = next(iter(pinned.specifier)).version
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)
