"""The paper's four claims, each tested on one sweep's runs: ``claims_table`` writes
``claims.csv`` and ``claims.md``, a row per test, called by
``pf.analysis.figures.make_figures``.

The claims (PAPERS.md sections 1 and 7) and the tests that read them:

1. A selector pruned at p picks as well as the dense target, at (1-p)^2 of its cost:
   the target trained from scratch on PruneFuse's picks (no fusion) minus the AL
   baseline; the fused PruneFuse target minus the AL baseline (the paper's tables); the
   MACs spent on data selection, PruneFuse over the AL baseline, against (1-p)^2, and
   the seconds beside them (users pay in seconds; not the paper's measure, not judged).
2. Fusion converges faster and ends higher: fused minus not fused at the same p, at the
   first epoch tested in each budget's training (faster) and at the budgets' end (higher).
3. PruneFuse beats SVP at a similar selector size: PruneFuse p minus each SVP proxy.
4. T_sync = 1 is the best trade-off: T_sync = 1 minus T_sync = 0 and minus the authors'
   warm selector, with T_sync = 1's selection MACs over each one's.

Accuracy tests are paired by seed (``pf.analysis.paired.compare``), per budget and over
the area under the accuracy-budget curve; a row's verdict reads the area (else the last
budget): the interval clear of 0 on the claim's side is "supported", on the other side
"contradicted", otherwise "not decided". A cost test is supported when the last budget's
ratio is at most ``COST_TOLERANCE`` times (1-p)^2. A test whose arms the sweep lacks is
left out; the arms are found by the label each method gives its runs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pf.analysis.paired import (AREA, BETTER, GROUP, UNDECIDED, WORSE, arm_names, compare,
                                interval_text)
from pf.analysis.plotting import write_table
from pf.experiments.methods import BASELINE, METHODS, PRUNEFUSE, SVP

__all__ = ["CLAIMS", "COST_TOLERANCE", "claim_tests", "claims_table"]

CLAIMS = {
    1: "A selector pruned at p picks as well as the dense target, at (1-p)^2 of its cost",
    2: "Fusion converges faster and ends higher",
    3: "PruneFuse beats SVP at a similar selector size",
    4: "T_sync = 1 is the best trade-off",
}
# (1-p)^2 counts the convolutions between pruned layers; the stem's input and the
# classifier's output keep their width, so a pruned network's MACs sit a little above it
# (0.253 for ResNet-20 at p = 0.5).
COST_TOLERANCE = 1.1
SUPPORTED, CONTRADICTED = "supported", "contradicted"
VERDICTS = {BETTER: SUPPORTED, WORSE: CONTRADICTED, UNDECIDED: UNDECIDED}
NOT_JUDGED = "shown, not judged"


def _label(method: str, name: dict | None = None, **departures) -> str:
    """The label ``method`` gives a run named by ``name`` (the settings its name shows:
    prune_ratio, proxy_arch) whose settings depart from the defaults by ``departures``
    only (e.g. fusion=False, sync_every=1). The method's own ``label`` says how each
    departure reads; the defaults' values do not matter to it, so none are loaded here
    (the config module would load the trainer)."""
    defaults = {"fusion": True, "kd": True, **dict.fromkeys(METHODS[method].recipe)}
    return METHODS[method].label({**defaults, **(name or {}), **departures}, defaults)


def _accuracy_test(runs: pd.DataFrame, claim: int, test: str, arm: str, other: str) -> dict:
    """``arm`` minus ``other``, paired by seed: a cell per budget and the area, and the
    verdict of the area (else of the last budget)."""
    compared = compare(runs, arm, other)
    budgets = compared[compared.budget != AREA].sort_values("budget")
    area = compared[compared.budget == AREA]
    deciding = (area if not area.empty and area.n.iloc[0] > 1 else budgets).iloc[-1]
    cells = {str(row.budget): interval_text(row) for _, row in budgets.iterrows()}
    return {"claim": claim, "test": test, **cells,
            "area": interval_text(area.iloc[0]) if not area.empty else "",
            "verdict": VERDICTS[deciding.verdict]}


def _first_tested_epoch(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with each round's accuracy at the first epoch its training was tested
    (rounds tested only at the end, or at different first epochs, left out)."""
    tested = runs[runs.curve.map(len) > 1]
    first = tested.curve_epochs.map(lambda epochs: epochs[0])
    tested = tested[first == first.min()]
    return tested.assign(target_accuracy=tested.curve.map(lambda curve: curve[0]))


def _faster_test(runs: pd.DataFrame, fused: str, scratch: str) -> dict | None:
    """Claim 2's "faster": fused minus not fused at the first tested epoch, per budget and
    over the budgets (the area: the mean first-epoch accuracy); None without curves."""
    early = _first_tested_epoch(runs[runs.arm.isin([fused, scratch])])
    if set(early.arm) != {fused, scratch}:
        return None
    epoch = int(early.curve_epochs.iloc[0][0])
    return _accuracy_test(early, 2, f"{fused} minus {scratch}, after epoch {epoch}", fused,
                          scratch)


def _cost_test(runs: pd.DataFrame, claim: int, test: str, arm: str, other: str, column: str,
               expected: float | None) -> dict | None:
    """``arm``'s mean ``column`` (spent on data selection up to each budget) over
    ``other``'s, per budget where ``other`` spent any; judged against ``expected`` at the
    last budget (None: shown, not judged). None where ``other`` never spent any."""
    pair = runs[runs.arm.isin([arm, other])]
    means = pair.groupby(["arm", "labeled"])[column].mean()
    ratios = (means[arm] / means[other].where(means[other] > 0)).dropna().sort_index()
    if ratios.empty:
        return None
    cells = {str(budget): f"{ratio:.3f}x" for budget, ratio in ratios.items()}
    if column.endswith("seconds") and pair.under_load.any():
        test += " (timed under load)"  # pf.analysis.results.collect: seconds to distrust
    if expected is None:
        verdict = NOT_JUDGED
    else:
        test = f"{test} (expected {expected:.3f}x)"
        verdict = SUPPORTED if ratios.iloc[-1] <= COST_TOLERANCE * expected else CONTRADICTED
    return {"claim": claim, "test": test, **cells, "area": "", "verdict": verdict}


def claim_tests(runs: pd.DataFrame) -> list[dict]:
    """The tests of ``CLAIMS`` that one (dataset, arch)'s runs support, a dict each:
    claim, test, a cell per labeled count, area, verdict (see the module docstring)."""
    runs = runs.assign(arm=arm_names(runs))
    arms = set(runs.arm)
    baseline = _label(BASELINE)
    tests = []  # None for a test its runs cannot give
    for ratio in sorted(runs[runs.method == PRUNEFUSE].prune_ratio.dropna().unique()):
        pruned = {"prune_ratio": ratio}
        fused, scratch = _label(PRUNEFUSE, pruned), _label(PRUNEFUSE, pruned, fusion=False)
        if {scratch, baseline} <= arms:
            tests.append(_accuracy_test(runs, 1, f"{scratch} minus {baseline}", scratch,
                                        baseline))
        if {fused, baseline} <= arms:
            tests.append(_accuracy_test(runs, 1, f"{fused} minus {baseline}", fused, baseline))
            for column, expected in (("data_selection_macs", (1 - ratio) ** 2),
                                     ("data_selection_seconds", None)):
                unit = "MACs" if column.endswith("macs") else "seconds"
                tests.append(_cost_test(runs, 1, f"{fused} / {baseline}, selection {unit}",
                                        fused, baseline, column, expected))
        if {fused, scratch} <= arms:
            tests.append(_faster_test(runs, fused, scratch))
            tests.append(_accuracy_test(runs, 2, f"{fused} minus {scratch}", fused, scratch))
        for proxy in sorted(runs[runs.method == SVP].proxy_arch.dropna().unique()):
            svp = _label(SVP, {"proxy_arch": proxy})
            if {fused, svp} <= arms:
                tests.append(_accuracy_test(runs, 3, f"{fused} minus {svp}", fused, svp))
        synced = _label(PRUNEFUSE, pruned, sync_every=1)
        for other in (fused, _label(PRUNEFUSE, pruned, selector_start="warm")):
            if {synced, other} <= arms:
                tests.append(_accuracy_test(runs, 4, f"{synced} minus {other}", synced, other))
                tests.append(_cost_test(runs, 4, f"{synced} / {other}, selection MACs", synced,
                                        other, "data_selection_macs", None))
    return sorted((test for test in tests if test), key=lambda test: test["claim"])


def claims_table(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """``claims.csv`` and ``claims.md``: per (dataset, arch), each test of the paper's four
    claims the runs support (``claim_tests``), its cells per budget and over the area, and
    its verdict."""
    if table.empty:
        return "claims not written: no runs found"
    rows = [{**dict(zip(GROUP, key)), **test} for key, runs in table.groupby(GROUP)
            for test in claim_tests(runs)]
    if not rows:
        return "claims not written: no arms that test a claim"
    budgets = sorted({int(b) for b in table.labeled.unique()})
    wide = pd.DataFrame(rows).reindex(columns=[*GROUP, "claim", "test", *map(str, budgets),
                                               "area", "verdict"])
    claims = "; ".join(f"{number}. {claim}" for number, claim in CLAIMS.items())
    caption = (f"The paper's four claims ({claims}), tested on these runs. Accuracy tests: "
               "the first arm minus the second at the same seed, in points of test accuracy "
               "(final epoch unless named), mean [95 % t-interval] (n = seeds both have), bold "
               "where the interval excludes 0; the verdict reads the area under the "
               "accuracy-budget curve (else the last budget). Cost tests: the first arm's "
               "data-selection MACs or seconds up to each budget over the second's (means "
               "over seeds); "
               f"MACs are judged against the expected ratio with {COST_TOLERANCE:g}x slack, "
               "seconds are shown only. Columns: TOTAL labeled count.")
    return write_table(wide.fillna("").set_index([*GROUP, "claim", "test"]),
                       Path(out_dir) / "claims", caption)
