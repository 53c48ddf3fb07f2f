"""The companion methods' figures and tables from a synthetic results tree: data-pruning
runs read back (collect_scores, labels), correlations and accuracies in the tables, random
pruning counted once per seed, what is drawn and what is not. No training."""

import dataclasses
import math

import pytest

import pf.analysis.companion_figures as companion_figures
from pf.analysis.companion_figures import (accuracy_vs_prune_rate, correlation_table, plot_scores,
                                           pruning_table, score_correlation,
                                           selection_metrics_vs_budget)
from pf.analysis.figures import make_figures
from pf.analysis.plotting import FONT_SIZE, TITLE_SIZE, theme
from fakes import extrapolation_tree, fake_pruning_record, write_run
from conftest import text_sizes
from pf.analysis.results import SCORE_COLUMNS, collect, collect_scores
from pf.experiments.record import SCORES_FILE, scoring_label
from pf.storage import write_json


def test_collect_scores_gives_one_row_per_data_pruning_run(tmp_path):
    root = extrapolation_tree(tmp_path / "results")
    write_run(root, "al_run", method="baseline")  # not a data-pruning run: no row
    scores = collect_scores(root)
    assert list(scores.columns) == SCORE_COLUMNS and len(scores) == 12
    knn = scores[scores.run_dir == "knn0.1_s1"].iloc[0]
    assert (knn.label, knn.scored, knn.subset_fraction) == ("DU, kNN k=10 from 10 %", 5000, 0.1)
    assert knn.pearson == pytest.approx(0.6) and knn.spearman == pytest.approx(0.5)
    full = scores[scores.run_dir == "full_s0"].iloc[0]
    assert full.label == "DU, full run" and math.isnan(full.pearson)


def test_scoring_labels_name_the_score_the_extrapolation_and_the_subset():
    block = fake_pruning_record(extrapolation="knn", weighting="exp", k=20, subset=0.1).scores
    assert scoring_label(block) == "DU, kNN-exp k=20 from 10 %"
    block = fake_pruning_record(extrapolation="gnn", subset=0.25).scores
    assert scoring_label(block) == "DU, GNN k=10 from 25 %"
    tdds = dataclasses.replace(block, score="tdds", tdds_span="first", tdds_span_epochs=10)
    assert scoring_label(tdds) == "TDDS (first 10 epochs), GNN k=10 from 25 %"
    assert scoring_label(dataclasses.replace(tdds, tdds_span="last")) != scoring_label(tdds)


def test_the_correlation_table_averages_seeds_of_runs_with_a_reference(tmp_path):
    scores = collect_scores(extrapolation_tree(tmp_path / "results"))
    files = correlation_table(scores, tmp_path / "figures")
    text = files[1].read_text()
    # kNN at 10 %: Pearson 0.5 and 0.6 over seeds 0 and 1; runs without a reference are absent.
    assert "| DU, kNN k=10 from 10 % | 0.550 ± 0.071 (n=2) | 0.450 ± 0.071 (n=2) |" in text
    assert "| DU, GNN k=10 from 20 % | 0.550 ± 0.071 (n=2) |" in text
    assert "full run" not in text and text.count("kNN") == 2
    drawn = score_correlation(scores, tmp_path / "figures")
    assert [p.name for p in drawn] == ["score_correlation.png", "score_correlation.pdf"]


def test_random_pruning_counts_once_per_seed_in_the_pruning_table(tmp_path):
    table = collect(extrapolation_tree(tmp_path / "results"))
    text = pruning_table(table, tmp_path / "figures")[1].read_text()
    # Both the full and the kNN runs of a seed pruned at random: the same training, once.
    assert "| random | 88.00 ± 0.00 (n=2) | 70.00 ± 0.00 (n=2) |" in text
    assert "| DU, full run | 92.00 ± 0.00 (n=2) | 86.00 ± 1.41 (n=2) |" in text
    assert "| DU, kNN k=10 from 20 % | 91.00 ± 0.00 (n=2) | 80.00 ± 0.00 (n=2) |" in text
    drawn = accuracy_vs_prune_rate(table, tmp_path / "figures")
    assert [p.name for p in drawn] == ["accuracy_vs_prune_rate.png", "accuracy_vs_prune_rate.pdf"]


def test_selection_metrics_are_compared_only_where_a_method_ran_two(tmp_path):
    root = tmp_path / "results"
    for seed in (0, 1):
        write_run(root, f"lc_s{seed}", method="baseline", seed=seed)
    reason = selection_metrics_vs_budget(collect(root), tmp_path / "figures")
    assert isinstance(reason, str) and "two or more selection metrics" in reason
    for seed in (0, 1):
        write_run(root, f"gs_s{seed}", method="baseline", seed=seed, metric="norm_gs")
    drawn = selection_metrics_vs_budget(collect(root), tmp_path / "figures")
    assert [p.name for p in drawn] == ["selection_metrics_vs_budget.png",
                                       "selection_metrics_vs_budget.pdf"]


def test_make_figures_keeps_data_pruning_out_of_the_active_learning_figures(tmp_path):
    root = extrapolation_tree(tmp_path / "results")
    made = make_figures(root, tmp_path / "figures")
    for name in ("accuracy_vs_budget", "main_table", "selection_metrics_vs_budget",
                 "paired_differences", "paired_table", "win_tie_loss", "claims"):
        assert isinstance(made[name], str) and "no runs" in made[name], name
    for name in ("score_correlation", "score_correlation_table", "accuracy_vs_prune_rate",
                 "pruning_table"):
        assert isinstance(made[name], list), name


def test_plot_scores_needs_a_full_run_reference(tmp_path):
    fake_pruning_record(reference=False).write(tmp_path)
    write_json(tmp_path / SCORES_FILE, {"scores": [0.1, 0.2], "scored_indices": [0],
                                          "reference_scores": None})
    with pytest.raises(ValueError, match="score_reference=true"):
        plot_scores(tmp_path)


def test_every_text_of_every_companion_figure_has_one_of_two_sizes(tmp_path):
    root = extrapolation_tree(tmp_path / "results")
    for metric in ("least_confidence", "norm_gs"):
        write_run(root, metric, method="baseline", metric=metric)
    table = collect(root)
    with theme():
        figures = [companion_figures._metrics_vs_budget(table[table.selection.isna()]),
                   companion_figures._correlation(collect_scores(root)),
                   companion_figures._accuracy_vs_rate(table)]
    for figure in figures:
        assert text_sizes(figure) == ({TITLE_SIZE}, {FONT_SIZE})
        assert len(figure.legends) == 1  # one legend for all panels, none inside a panel
        assert [ax.get_legend() for ax in figure.axes] == [None] * len(figure.axes)
