"""Paired comparisons (pf.analysis.paired) on runs whose differences are known by hand."""

import math

import pytest

from fakes import write_run
from pf.analysis.paired import (AREA, arm_names, area_under_curve, compare, interval,
                                paired_summary, win_tie_loss)
from pf.analysis.paired_figures import _win_tie_loss
from pf.analysis.plotting import MAX_COLUMNS, PANEL_SIZE
from pf.analysis.results import collect

FINAL = (0.90, 0.91, 0.93)  # the AL baseline's accuracy at the last budget, seeds 0..2
MIDDLE = (-0.01, 0.0, 0.01)  # PruneFuse minus the baseline at the middle budget, per seed
LAST = (0.010, 0.012, 0.014)  # ... and at the last
GAP = (0.029, 0.030, 0.031)  # the baseline minus random at the last budget (10 points less
# at the middle one); a spread, as real seeds have: equal differences never decide
T_975_2 = 4.302653  # Student's t, 97.5 % quantile, 2 degrees of freedom


def _tree(root):
    """Seeds 0..2 of the AL baseline, random selection and PruneFuse p = 0.5 at budgets
    5,000, 15,000 and 25,000 (10, 30, 50 % of 50,000)."""
    for seed, final in enumerate(FINAL):
        write_run(root, f"s/baseline_{seed}", method="baseline", seed=seed,
                  accuracies=(0.78, 0.86, final))
        write_run(root, f"s/random_{seed}", method="baseline", metric="random", seed=seed,
                  accuracies=(0.78, 0.87 - GAP[seed], final - GAP[seed]))
        write_run(root, f"s/prunefuse_{seed}", seed=seed,
                  accuracies=(0.78, 0.86 + MIDDLE[seed], final + LAST[seed]))
    return collect(root)


def test_interval_is_students_t_over_the_paired_differences():
    decided = interval([1.0, 1.2, 1.4])
    half = T_975_2 * 0.2 / math.sqrt(3)
    assert decided["mean"] == pytest.approx(1.2)
    assert (decided["low"], decided["high"]) == pytest.approx((1.2 - half, 1.2 + half))
    assert decided["verdict"] == "better" and decided["n"] == 3
    assert interval([-1.0, 0.0, 1.0])["verdict"] == "not decided"
    assert interval([-2.0, -2.1])["verdict"] == "worse"  # t(1) = 12.7: -2.05 +- 0.64
    same = interval([0.28, 0.28])  # one test image at both seeds: no spread, no verdict
    assert (same["low"], same["high"], same["verdict"]) == (0.28, 0.28, "not decided")
    single = interval([3.0])
    assert single["verdict"] == "not decided" and math.isnan(single["low"])


def test_arms_name_the_metric_only_where_it_is_not_the_main_one(tmp_path):
    table = _tree(tmp_path)
    assert sorted(arm_names(table).unique()) == ["AL baseline", "AL baseline · random",
                                                 "PruneFuse p=0.5"]


def test_area_under_the_curve_is_the_curves_mean_accuracy(tmp_path):
    areas = area_under_curve(_tree(tmp_path)).set_index(["arm", "seed"])[AREA]
    # budgets 10, 30, 50 %: (a1 + 2 a2 + a3) / 4 over two equal widths
    for seed, final in enumerate(FINAL):
        expected = (78 + 2 * 86 + 100 * final) / 4
        assert areas[("AL baseline", seed)] == pytest.approx(expected)


def test_each_arm_is_paired_with_each_reference_seed_by_seed(tmp_path):
    summary = paired_summary(_tree(tmp_path)).set_index(["arm", "reference", "budget"])
    last = summary.loc[("PruneFuse p=0.5", "AL baseline", 25000)]
    half = T_975_2 * 0.2 / math.sqrt(3)
    assert (last.n, last["mean"], last.low, last.high) == pytest.approx(
        (3, 1.2, 1.2 - half, 1.2 + half))
    assert last.verdict == "better"
    assert summary.loc[("PruneFuse p=0.5", "AL baseline", 15000)].verdict == "not decided"
    first = summary.loc[("PruneFuse p=0.5", "AL baseline", 5000)]
    assert (first["mean"], first.verdict) == (0, "not decided")  # the same initial set
    # the area: (0 + 2 * middle + last) / 4 points per seed
    area = summary.loc[("PruneFuse p=0.5", "AL baseline", AREA)]
    assert area["mean"] == pytest.approx(sum((200 * m + 100 * d) / 4
                                             for m, d in zip(MIDDLE, LAST)) / 3)
    baseline = summary.loc[("AL baseline", "random", 25000)]
    assert baseline["mean"] == pytest.approx(3.0) and baseline.verdict == "better"
    # the references are compared once: the AL baseline minus random, not the reverse
    assert ("AL baseline · random", "AL baseline") not in {key[:2] for key in summary.index}
    assert ("AL baseline", "AL baseline") not in {key[:2] for key in summary.index}


def test_win_tie_loss_counts_the_budgets_each_interval_decides(tmp_path):
    counts = win_tie_loss(_tree(tmp_path)).set_index(["arm", "other"])
    assert tuple(counts.loc[("PruneFuse p=0.5", "AL baseline")]) == ("cifar10", "resnet56",
                                                                    1, 2, 0)
    assert tuple(counts.loc[("AL baseline", "PruneFuse p=0.5"), ["wins", "ties", "losses"]]) \
        == (0, 2, 1)
    # random is about 2 points lower at 30 % and 3 at 50 % at every seed: two losses
    assert tuple(counts.loc[("AL baseline · random", "AL baseline"),
                            ["wins", "ties", "losses"]]) == (0, 1, 2)


def test_compare_pairs_any_two_arms(tmp_path):
    compared = compare(_tree(tmp_path), "AL baseline · random", "PruneFuse p=0.5")
    last = compared.set_index("budget").loc[25000]
    # random is GAP under the baseline, PruneFuse LAST over it: -3.9, -4.2, -4.5
    assert (last.n, last["mean"], last.verdict) == (3, pytest.approx(-4.2), "worse")
    assert list(compared.budget) == [5000, 15000, 25000, AREA]


def test_a_large_win_tie_loss_matrix_keeps_to_a_notebooks_width_and_shows_every_label(
        tmp_path):
    results = tmp_path / "results"
    for seed in range(2):
        write_run(results, f"base{seed}", method="baseline", seed=seed)
        for ratio in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
            for sync in (0, 1):
                write_run(results, f"pf{ratio}_{sync}_{seed}", prune_ratio=ratio,
                          sync_every=sync, seed=seed, selector_start="warm")
    figure = _win_tie_loss(collect(results))
    assert figure.get_figwidth() <= MAX_COLUMNS * PANEL_SIZE[0] + 1e-9
    figure.canvas.draw()  # where the square matrix really sits (its aspect applies on drawing)
    renderer = figure.canvas.get_renderer()
    [ax] = figure.axes
    rows = ax.get_yticklabels()
    assert len(rows) == 13 and rows[0].get_text().startswith("1  ")
    assert [label.get_text() for label in ax.get_xticklabels()] == [
        str(number) for number in range(1, 14)]
    assert all(label.get_window_extent(renderer).x0 >= 0 for label in rows)
