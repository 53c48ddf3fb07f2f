"""What a config field allows, and the one line that says so when a value breaks it.

``setting(default, ...)`` declares a field of ``pf.experiments.config``'s dataclasses with
what it allows: a registry's names (``choices``), a range (``at_least``, ``above``,
``at_most``, ``below``) or a rule of its own (``check``, e.g. ``budgets_rule``);
``refusal(key, value, rules)`` is the one-line message for a value that breaks them, or
None. ``pf.experiments.config.validate`` reads them for every field.
"""

from __future__ import annotations

import json
from dataclasses import field

from pf.data import dataset_kind, dataset_names

__all__ = ["setting", "schedule_rule", "budgets_rule", "fractions_rule", "dataset_rule",
           "range_text", "refusal"]


def setting(default, *, choices=None, noun: str = "", at_least=None, above=None,
            at_most=None, below=None, check=None):
    """A config field: its default and what it allows, read by ``validate``.

    ``choices``: the names allowed (a registry); ``noun`` words the refusal ("unknown
    model 'x'; choose one of ..."); ``at_least``/``above``/``at_most``/``below``: a
    range; ``check(value)``: a rule of its own, returning what is wrong or None.
    """
    rules = {"choices": choices, "noun": noun, "at_least": at_least, "above": above,
             "at_most": at_most, "below": below, "check": check}
    if isinstance(default, list):
        return field(default_factory=lambda: json.loads(json.dumps(default)), metadata=rules)
    return field(default=default, metadata=rules)


def schedule_rule(allow_empty: bool):
    """The rule of an ``[[epochs, lr], ...]`` schedule (empty allowed or not)."""
    def check(pieces: list) -> str | None:
        """[[epochs, lr], ...]: whole epochs and rates, all positive."""
        valid = all(isinstance(p, list) and len(p) == 2 and type(p[0]) is int and p[0] > 0
                    and type(p[1]) in (int, float) and p[1] > 0 for p in pieces)
        if valid and (pieces or allow_empty):
            return None
        return ("expected [[epochs, lr], ...] with positive epochs (whole numbers) and "
                f"learning rates, got {json.dumps(pieces)}")
    return check


def budgets_rule(budgets: list) -> str | None:
    """Budgets are TOTAL labeled counts: positive whole numbers, strictly increasing."""
    if not budgets or not all(type(b) is int and b > 0 for b in budgets):
        return f"expected a non-empty list of positive integers, got {json.dumps(budgets)}"
    if any(a >= b for a, b in zip(budgets, budgets[1:])):
        return f"must be strictly increasing TOTAL labeled counts, got {json.dumps(budgets)}"
    return None


def fractions_rule(fractions: list) -> str | None:
    """Fractions of the training set removed: distinct, each in [0, 1)."""
    if not all(type(f) in (int, float) and 0 <= f < 1 for f in fractions):
        return (f"expected a list of fractions in [0, 1) ([] = score only, no retraining), "
                f"got {json.dumps(fractions)}")
    if len(set(fractions)) != len(fractions):
        return f"must be distinct, got {json.dumps(fractions)}"
    return None


def names_rule(choices):
    """The rule of a list of distinct names from ``choices`` (a registry)."""
    def check(names: list) -> str | None:
        """A list of distinct names from its registry."""
        known = all(isinstance(n, str) and n in choices for n in names)
        if known and len(set(names)) == len(names):
            return None
        return f"expected distinct names from {', '.join(choices)}, got {json.dumps(names)}"
    return check


def dataset_rule(name: str) -> str | None:
    """A dataset of ``pf.data.DATASETS`` by name (``imagefolder:<path>``, ``stream:<path>``)."""
    if dataset_kind(name) is not None:
        return None
    return f"unknown dataset {name!r}; choose one of {dataset_names()}"


def range_text(rules: dict, integer: bool) -> str:
    """What a range asks, in words: "be a positive integer", "lie in [0, 1)", "be >= 0"."""
    low, high = rules["at_least"], rules["at_most"]
    if integer and rules["above"] is None and high is None and rules["below"] is None:
        return "be a positive integer" if low == 1 else f"be a whole number >= {low}"
    left = f"[{low:g}" if low is not None else (f"({rules['above']:g}"
                                                  if rules["above"] is not None else None)
    right = f"{high:g}]" if high is not None else (f"{rules['below']:g})"
                                                    if rules["below"] is not None else None)
    if left and right:
        return f"lie in {left}, {right}"
    if left:
        return ("be >= " if left[0] == "[" else "be > ") + left[1:]
    return ("be <= " if right[-1] == "]" else "be < ") + right[:-1]


def refusal(key: str, value, rules: dict) -> str | None:
    """What is wrong with ``value`` under ``rules`` (one line), or None."""
    if rules["choices"] is not None and value not in rules["choices"]:
        allowed = ", ".join(rules["choices"])
        if rules["noun"]:
            return f"{key}: unknown {rules['noun']} {value!r}; choose one of {allowed}"
        return f"{key}: {value!r} is not one of {allowed}"
    bounds = [(rules["at_least"], lambda v, b: v >= b), (rules["above"], lambda v, b: v > b),
              (rules["at_most"], lambda v, b: v <= b), (rules["below"], lambda v, b: v < b)]
    if not all(bound is None or holds(value, bound) for bound, holds in bounds):
        return f"{key}: must {range_text(rules, type(value) is int)}, got {value}"
    problem = rules["check"](value) if rules["check"] else None
    return f"{key}: {problem}" if problem else None
