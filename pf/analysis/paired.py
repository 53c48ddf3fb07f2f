"""Paired comparisons: what a study of a few seeds can tell apart.

Methods of one seed share their initial set and initial target weights, so the difference of
two methods' accuracies at one seed and budget cancels what that seed's draw did to both.
``arm_names`` and ``area_under_curve`` prepare the runs; ``paired_differences``,
``paired_summary`` (mean and ``CONFIDENCE`` interval over the seeds, with a verdict),
``compare`` and ``win_tie_loss`` compare them; ``interval_text`` writes an interval as a
table cell. Pass runs of one sweep only.

Why it works this way: docs/internals.md, "pf.analysis.paired".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from pf.experiments.methods import BASELINE
from pf.select import LEAST_CONFIDENCE, STRATEGIES

__all__ = ["CONFIDENCE", "AREA", "BETTER", "WORSE", "UNDECIDED", "GROUP", "arm_names",
           "area_under_curve", "interval", "interval_text", "paired_differences",
           "paired_summary", "compare", "win_tie_loss"]

CONFIDENCE = 0.95  # two-sided, of every paired interval
# Below this spread (points) paired differences count as all equal: float32 accuracies
# differ by ~1e-5 points where the test images counted are the same.
NO_SPREAD = 1e-4
AREA = "area"  # the ``budget`` of a paired_summary row about the area under the curve
GROUP = ["dataset", "arch"]  # what must match for two runs to be comparable at all
RUN_KEYS = (*GROUP, "method", "metric", "label", "arm", "seed")  # area_under_curve's
BETTER, WORSE, UNDECIDED = "better", "worse", "not decided"


def _main_metric(metrics: pd.Series) -> str:
    """The metric a group of runs is about: the paper's least confidence where it ran,
    else the most frequent one."""
    return LEAST_CONFIDENCE if (metrics == LEAST_CONFIDENCE).any() else metrics.mode().iloc[0]


def arm_names(table: pd.DataFrame) -> pd.Series:
    """The arm of each row of a ``collect`` table: its label, with " · <metric>" appended
    where the metric is not its (dataset, arch) rows' main one (``_main_metric``)."""
    main = table.groupby(GROUP)["metric"].agg(_main_metric)
    main_metric = pd.Series([main.get(key) for key in zip(*(table[c] for c in GROUP))],
                            index=table.index)
    suffix = table.metric.map(lambda metric: f" · {STRATEGIES[metric].label}")
    return table.label.where(table.metric == main_metric, table.label + suffix)


def _references(table: pd.DataFrame) -> dict[str, str]:
    """The reference arms a study is read against, by role: the AL baseline (the dense
    target selecting with the main metric) and random selection (with the baseline's
    target: no selector, plain training); absent roles are left out."""
    baseline = table[table.method == BASELINE]
    floor = baseline.metric.map(lambda metric: STRATEGIES[metric].inputs == "none")
    roles = {"AL baseline": baseline[~floor & (baseline.arm == baseline.label)],
             "random": baseline[floor]}
    return {role: rows.arm.iloc[0] for role, rows in roles.items() if not rows.empty}


def area_under_curve(table: pd.DataFrame) -> pd.DataFrame:
    """Per run (``run_dir``), the area under its accuracy-budget curve over the budget
    range it spans, in percent: trapezoids over ``budget_fraction`` divided by that range,
    i.e. the curve's mean accuracy. Columns: the run's dataset, arch, method, metric,
    label, arm and seed, its run_dir, and area."""
    table = table.assign(arm=arm_names(table)) if "arm" not in table else table
    rows = []
    for run_dir, run in table.sort_values("budget_fraction").groupby("run_dir", sort=False):
        x, y = run.budget_fraction.to_numpy(), 100 * run.target_accuracy.to_numpy()
        span = x[-1] - x[0]
        area = float(np.trapezoid(y, x) / span) if span > 0 else float(y[0])
        first = run.iloc[0]
        rows.append({**{key: first[key] for key in RUN_KEYS}, "run_dir": run_dir, AREA: area})
    return pd.DataFrame(rows, columns=[*RUN_KEYS, "run_dir", AREA])


def interval(differences) -> dict:
    """Mean of paired ``differences`` and its two-sided ``CONFIDENCE`` t-interval, with n
    and the verdict; one difference gives no interval (NaN bounds, not decided).

    Differences that are all equal give a zero-width interval, but no estimate of the
    spread: on a small test set accuracies move in steps (one digits test image is 0.28
    points), so two seeds often differ by the same step by chance. Such an interval is
    reported as it is and never decides.
    """
    values = np.asarray(list(differences), dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "low": math.nan, "high": math.nan, "verdict": UNDECIDED}
    spread = values.std(ddof=1)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * spread / math.sqrt(n)
    low, high = mean - half, mean + half
    verdict = (UNDECIDED if spread < NO_SPREAD else BETTER if low > 0 else WORSE if high < 0
               else UNDECIDED)
    return {"n": n, "mean": mean, "low": low, "high": high, "verdict": verdict}


def interval_text(result) -> str:
    """An ``interval`` (a dict, or a row of ``compare`` or ``paired_summary``) as a table
    cell: "+1.23 [-0.40, +2.90] (n=3)", bold when it decides, "+1.23 (n=1)" without one."""
    if math.isnan(result["low"]):
        return f"{result['mean']:+.2f} (n={result['n']})"
    text = f"{result['mean']:+.2f} [{result['low']:+.2f}, {result['high']:+.2f}] (n={result['n']})"
    return text if result["verdict"] == UNDECIDED else f"**{text}**"


def _per_seed(table: pd.DataFrame) -> pd.DataFrame:
    """Accuracy in % per (dataset, arch, arm, budget, seed), the area as one more budget."""
    table = table.assign(arm=arm_names(table))
    budgets = table.assign(budget=table.labeled.astype(object),
                           value=100 * table.target_accuracy)
    areas = area_under_curve(table).assign(budget=AREA).rename(columns={AREA: "value"})
    columns = [*GROUP, "arm", "budget", "seed", "value"]
    return pd.concat([budgets[columns], areas[columns]], ignore_index=True)


def _differences(values: pd.DataFrame, arm: str, other: str) -> pd.DataFrame:
    """Per (dataset, arch, budget, seed) both arms have: ``arm`` minus ``other``."""
    keys = [*GROUP, "budget", "seed"]
    pairs = values[values.arm == arm][[*keys, "value"]].merge(
        values[values.arm == other][[*keys, "value"]], on=keys, suffixes=("", "_other"))
    return pairs.assign(difference=pairs.value - pairs.value_other)[[*keys, "difference"]]


def paired_differences(table: pd.DataFrame) -> pd.DataFrame:
    """Every arm minus each reference arm (``_references``) at the same seed, per budget
    and for the area under the curve: columns dataset, arch, arm, reference (the role:
    "AL baseline" or "random"), budget (a labeled count, or ``AREA``), seed, difference
    (percentage points). An arm is not compared with itself, and the references with each
    other only once (the AL baseline minus random)."""
    table = table.assign(arm=arm_names(table))
    values, frames = _per_seed(table), []
    references = _references(table)
    for position, (role, reference) in enumerate(references.items()):
        # each pair of references once: the AL baseline minus random, not the reverse too
        later = list(references.values())[position:]
        for arm in table.arm.unique():
            if arm not in later:
                frames.append(_differences(values, arm, reference).assign(arm=arm,
                                                                          reference=role))
    columns = [*GROUP, "arm", "reference", "budget", "seed", "difference"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(
        columns=columns)


def paired_summary(table: pd.DataFrame, differences: pd.DataFrame | None = None) -> pd.DataFrame:
    """``paired_differences`` per (dataset, arch, arm, reference, budget): n, mean, low,
    high (the ``interval``, percentage points) and verdict; ``differences``: those of
    ``table`` when the caller has them already."""
    keys = [*GROUP, "arm", "reference", "budget"]
    differences = paired_differences(table) if differences is None else differences
    rows = [{**dict(zip(keys, key)), **interval(group.difference)} for key, group in
            differences.groupby(keys, sort=False)]
    return pd.DataFrame(rows, columns=[*keys, "n", "mean", "low", "high", "verdict"])


def compare(table: pd.DataFrame, arm: str, other: str) -> pd.DataFrame:
    """Any two arms, paired by seed: ``arm`` minus ``other`` per (dataset, arch, budget),
    the area under the curve included, with ``interval``'s n, mean, low, high and
    verdict (e.g. PruneFuse against SVP, or fused against not fused)."""
    return _compare(_per_seed(table), arm, other)


def _compare(values: pd.DataFrame, arm: str, other: str) -> pd.DataFrame:
    """``compare`` on per-seed values (``_per_seed``), computed once for many pairs."""
    keys = [*GROUP, "budget"]
    rows = [{**dict(zip(keys, key)), "arm": arm, "other": other, **interval(group.difference)}
            for key, group in _differences(values, arm, other).groupby(keys, sort=False)]
    return pd.DataFrame(rows, columns=[*keys, "arm", "other", "n", "mean", "low", "high",
                                       "verdict"])


def win_tie_loss(table: pd.DataFrame) -> pd.DataFrame:
    """For each ordered pair of arms (row arm, column arm) of one (dataset, arch): over the
    budgets both have, the count of budgets where the row arm is better, tied and worse by
    its paired interval (``compare``). Columns: dataset, arch, arm, other, wins, ties,
    losses."""
    rows = []
    for key, group in table.groupby(GROUP):
        values = _per_seed(group)
        arms = list(dict.fromkeys(values.arm))
        for arm in arms:
            for other in arms:
                if arm == other:
                    continue
                compared = _compare(values, arm, other)
                verdicts = list(compared[compared.budget != AREA].verdict)
                rows.append({**dict(zip(GROUP, key)), "arm": arm, "other": other,
                             "wins": verdicts.count(BETTER), "ties": verdicts.count(UNDECIDED),
                             "losses": verdicts.count(WORSE)})
    return pd.DataFrame(rows, columns=[*GROUP, "arm", "other", "wins", "ties", "losses"])
