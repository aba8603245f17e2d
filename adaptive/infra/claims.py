"""The claims table that ends every chapter: each claim of the papers, their number, ours, over seeds.

A chapter does not say "reproduced" because one run looked right: a run on another machine
rounds floats differently, and short trainings amplify that (chapter 3 once gave 0.986 on one
machine and 0.955 on another for the same commit and seed). So each claim is measured in every
seed, and the table says in how many it holds::

    claim = claims.Claim("ACT's steps rise with difficulty", "Graves 2016, Fig. 12", "rising",
                         "Spearman ρ ≥ 0.9", values=[0.96, 0.93, 0.88], holds=[True, True, False])
    claims.markdown([claim])        # one row: ... | 0.923 ± 0.041 (0.88–0.96) | 2 of 3 | partly

A claim is *reproduced* when it holds in every seed and there are at least ``MIN_SEEDS`` of
them, *partly* when it holds in some, *not reproduced* in none; with fewer seeds the verdict
says so (a quick run has one).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MIN_SEEDS = 3
COLUMNS = ("claim", "paper", "paper's number", "our criterion", "ours, over seeds", "holds in", "reproduced")


@dataclass(frozen=True)
class Claim:
    """One claim of a paper and what our runs measured for it.

    Args:
        claim: what the paper claims, in a few words.
        source: where, e.g. ``"Graves 2016, Fig. 12"``.
        paper: the paper's number or finding, as text.
        criterion: what counts as holding in our runs, as text (e.g. ``"accuracy ≥ 0.95"``).
        values: our measured number, one per seed.
        holds: whether the claim holds in each seed's run.
        digits: decimals shown for ``values``.
    """

    claim: str
    source: str
    paper: str
    criterion: str
    values: Sequence[float]
    holds: Sequence[bool]
    digits: int = 3

    def __post_init__(self):
        if len(self.values) != len(self.holds) or not self.values:
            raise ValueError(f"claim {self.claim!r}: values and holds must have one entry per seed, and at least "
                             f"one; got {len(self.values)} values and {len(self.holds)} holds")

    def verdict(self) -> str:
        """``reproduced``, ``partly``, ``not reproduced``, or that too few seeds were run to say."""
        held, seeds = sum(bool(h) for h in self.holds), len(self.holds)
        if seeds < MIN_SEEDS:
            return f"{seeds} seed{'s' if seeds > 1 else ''}: too few to say (≥ {MIN_SEEDS} needed)"
        return "reproduced" if held == seeds else "partly" if held else "not reproduced"

    def ours(self) -> str:
        """Mean ± standard deviation over seeds, and the range."""
        return spread_text(self.values, self.digits)

    def row(self) -> dict:
        return dict(zip(COLUMNS, (self.claim, self.source, self.paper, self.criterion, self.ours(),
                                  f"{sum(bool(h) for h in self.holds)} of {len(self.holds)}", self.verdict())))


def spread(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (0 for one value), min and max of ``values``; NaNs are left out."""
    finite = [float(v) for v in values if not math.isnan(float(v))]
    if not finite:
        return {"mean": math.nan, "sd": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    mean = sum(finite) / len(finite)
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else 0.0
    return {"mean": mean, "sd": sd, "min": min(finite), "max": max(finite), "n": len(finite)}


def spread_text(values: Sequence[float], digits: int = 3) -> str:
    """``"0.923 ± 0.041 (0.880–0.960)"``, or the value alone for one seed."""
    s = spread(values)
    if s["n"] == 0:
        return "n/a"
    if s["n"] == 1:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def measured(claim: str, source: str, paper: str, criterion: str, values: Sequence[float],
             test: Callable[[float], bool], digits: int = 3) -> Claim:
    """A ``Claim`` whose seeds hold where ``test(value)`` is true (a NaN never holds)."""
    values = [float(v) for v in values]
    return Claim(claim, source, paper, criterion, values,
                 [not math.isnan(v) and bool(test(v)) for v in values], digits)


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation of two equally long sequences (ties get their mean rank); NaN when
    either is constant or shorter than 2."""
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys must be equally long, got {len(xs)} and {len(ys)}")

    def ranks(values: Sequence[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        rank = [0.0] * len(values)
        start = 0
        while start < len(order):                   # a run of ties shares the mean of its ranks
            end = start
            while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
                end += 1
            for i in order[start:end + 1]:
                rank[i] = (start + end) / 2
            start = end + 1
        return rank
    if len(xs) < 2:
        return math.nan
    rx, ry = ranks(list(xs)), ranks(list(ys))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else math.nan


def rows(claims: Sequence[Claim]) -> list[dict]:
    """The table as dicts (for a results file's ``measurements``), with each claim's values and holds."""
    return [{**claim.row(), "values": list(claim.values), "holds_per_seed": [bool(h) for h in claim.holds]}
            for claim in claims]


def markdown(claims: Sequence[Claim]) -> str:
    """The table in Markdown, one row per claim."""
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(value) for value in claim.row().values()) + " |" for claim in claims]
    return "\n".join(lines)
