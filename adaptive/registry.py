"""The halting mechanisms ``adaptive.loop`` can run, by name: one entry per mechanism module.

A new mechanism is a module that ends with its rule (``adaptive.rule.HaltingRule``) and one
entry here; the loop, the trainers and the benchmarks take their lists of methods from
``adaptive.loop.METHODS``, which is ``fixed`` followed by these.
"""
from __future__ import annotations

from . import act, dact, pact, pondernet

MECHANISMS = {rule.name: rule for rule in (act.ActRule(), dact.DactRule(), pact.PactRule(),
                                            pondernet.PonderNetRule())}
