"""The paper's four claims (pf.analysis.claims) tested on runs whose differences are set by
hand: each verdict follows from the paired intervals and cost ratios the runs were given."""

import pytest

from fakes import write_run
from pf.analysis.claims import claim_tests, claims_table
from pf.analysis.results import collect

BASE = (0.78, 0.86, 0.90)  # the AL baseline's accuracy per budget (5,000 / 15,000 / 25,000)
SPREAD = (-0.002, 0.0, 0.002)  # per seed: real seeds never differ by exactly the same amount
# Each arm's accuracy minus the baseline's, per budget, before the seed's spread.
OFFSETS = {
    "fused": (0.03, 0.03, 0.03),        # PruneFuse p = 0.5
    "scratch": (0.0, 0.0, 0.0),         # the same without fusion: only the spread differs
    "svp": (0.01, 0.01, 0.01),          # two points under PruneFuse at every budget
    "synced": (0.01, 0.01, 0.01),       # T_sync = 1: two points under T_sync = 0
}
ARMS = {"fused": {}, "scratch": {"fusion": False}, "synced": {"sync_every": 1}}


def _tree(root):
    """Seeds 0..2 of the AL baseline, SVP (ResNet-20 proxy) and PruneFuse p = 0.5 fused, not
    fused and with T_sync = 1, each ``OFFSETS`` from the baseline."""
    for seed, spread in enumerate(SPREAD):
        write_run(root, f"s/baseline_{seed}", method="baseline", seed=seed, accuracies=BASE)
        # each arm spreads its own way, so that every difference of two arms has a spread
        for arm, weight in (("fused", 1), ("scratch", -1), ("synced", -1), ("svp", 0.5)):
            accuracies = [b + o + weight * spread for b, o in zip(BASE, OFFSETS[arm])]
            options = {"method": "svp"} if arm == "svp" else ARMS[arm]
            write_run(root, f"s/{arm}_{seed}", seed=seed, accuracies=accuracies, **options)
    return collect(root)


def _by_test(table):
    return {test["test"]: test for test in claim_tests(table)}


def test_each_claim_is_tested_by_the_arms_it_needs(tmp_path):
    tests = _by_test(_tree(tmp_path))
    assert [(test["claim"], name) for name, test in tests.items()] == [
        (1, "PruneFuse p=0.5 (no fusion) minus AL baseline"),
        (1, "PruneFuse p=0.5 minus AL baseline"),
        (1, "PruneFuse p=0.5 / AL baseline, selection MACs (expected 0.250x)"),
        (1, "PruneFuse p=0.5 / AL baseline, selection seconds"),
        (2, "PruneFuse p=0.5 minus PruneFuse p=0.5 (no fusion), after epoch 1"),
        (2, "PruneFuse p=0.5 minus PruneFuse p=0.5 (no fusion)"),
        (3, "PruneFuse p=0.5 minus SVP resnet20"),
        (4, "PruneFuse p=0.5 (T_sync=1) minus PruneFuse p=0.5"),
        (4, "PruneFuse p=0.5 (T_sync=1) / PruneFuse p=0.5, selection MACs")]


def test_verdicts_follow_the_paired_intervals_in_the_claims_direction(tmp_path):
    tests = _by_test(_tree(tmp_path))
    # +3 points with a spread: decided, the claim's way
    fused = tests["PruneFuse p=0.5 minus AL baseline"]
    assert fused["verdict"] == "supported"
    assert fused["25000"].startswith("**+3.00 [") and fused["25000"].endswith("(n=3)**")
    # two points under T_sync = 0 at every budget: decided against the claim
    assert tests["PruneFuse p=0.5 (T_sync=1) minus PruneFuse p=0.5"]["verdict"] == "contradicted"
    # the spread around 0: not decided
    scratch = tests["PruneFuse p=0.5 (no fusion) minus AL baseline"]
    assert scratch["verdict"] == "not decided" and scratch["area"].endswith(" [-0.50, +0.50] (n=3)")
    assert tests["PruneFuse p=0.5 minus SVP resnet20"]["verdict"] == "supported"


def test_faster_reads_the_first_tested_epoch(tmp_path):
    # The fakes' curves climb linearly over 4 epochs: after epoch 1, a quarter of the
    # final accuracy, so the fused target leads by a quarter of its final 3 points.
    faster = _by_test(_tree(tmp_path))[
        "PruneFuse p=0.5 minus PruneFuse p=0.5 (no fusion), after epoch 1"]
    assert faster["5000"].startswith("**+0.75 [") and faster["verdict"] == "supported"


@pytest.mark.parametrize("share, verdict", [(0.27, "supported"), (0.30, "contradicted")])
def test_selection_macs_are_judged_against_one_minus_p_squared(tmp_path, share, verdict):
    table = _tree(tmp_path)
    table["data_selection_macs"] = table.data_selection_macs.astype(float)
    baseline = table[table.label == "AL baseline"].set_index(["seed", "labeled"])
    pruned = table.label == "PruneFuse p=0.5"
    table.loc[pruned, "data_selection_macs"] = [
        share * baseline.data_selection_macs[(seed, labeled)]
        for seed, labeled in zip(table[pruned].seed, table[pruned].labeled)]
    cost = _by_test(table)["PruneFuse p=0.5 / AL baseline, selection MACs (expected 0.250x)"]
    assert cost["verdict"] == verdict and cost["25000"] == f"{share:.3f}x"
    assert "5000" not in cost  # the initial random set costs nothing to choose: no ratio


def test_seconds_are_shown_not_judged_and_say_when_timed_under_load(tmp_path):
    table = _tree(tmp_path)
    table.loc[table.label == "AL baseline", "under_load"] = True
    [seconds] = [test for test in claim_tests(table) if "seconds" in test["test"]]
    assert seconds["test"].endswith("(timed under load)")
    assert seconds["verdict"] == "shown, not judged"


def test_the_table_has_a_row_per_test_or_says_why_there_is_none(tmp_path):
    out = tmp_path / "figures"
    written = claims_table(_tree(tmp_path / "runs"), out)
    assert [path.name for path in written] == ["claims.csv", "claims.md"]
    lines = (out / "claims.md").read_text().splitlines()
    assert lines[2] == ("| dataset | arch | claim | test | 5000 | 15000 | 25000 | area | "
                        "verdict |")
    assert len(lines) == 4 + 9  # caption, blank, header, rule, a row per test
    for arm in ("baseline", "random"):
        write_run(tmp_path / "lean", arm, method="baseline",
                  metric="least_confidence" if arm == "baseline" else "random")
    assert claims_table(collect(tmp_path / "lean"), out / "lean") == (
        "claims not written: no arms that test a claim")
