"""Figures of the two companion methods, regenerated from stored runs.

``pf.analysis.figures.make_figures`` calls these next to the PruneFuse figures; each writes PNG
and PDF (tables: CSV and Markdown) and returns the files, or a one-line reason when the
results hold nothing to draw (see ``pf.analysis.plotting``).

- ``selection_metrics_vs_budget`` (norm-based selection, Bar & Giryes): the target's
  final test accuracy against the labeled count, a line per selection metric (norm_gs,
  random, least confidence, k-centers, ...), one panel per (target arch, method); drawn
  only where runs of one method used at least two metrics.
- ``score_correlation`` and ``score_correlation.csv/md`` (score extrapolation, Schmidt,
  Dhungel et al.): Pearson and Spearman of extrapolated vs full-run scores on the
  samples the scoring subset did not see, against the subset size, a line per
  extrapolation (kNN per k and weighting, GNN per k).
- ``accuracy_vs_prune_rate`` and ``pruning_table.csv/md``: the retrained target's final
  test accuracy against the pruning rate, a line per way of scoring (full run, kNN, GNN)
  and random pruning.

``plot_scores(run_dir)`` draws one data-pruning run's extrapolated against full-run
scores for the extrapolation notebook.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from pf.analysis.plotting import (ACCURACY, BUDGET, PANEL_SIZE, Drawing, cell_table, footer,
                                  mean_sd_lines, notebook_figure, palette, panel_grid,
                                  per_dataset, theme, write_table)
from pf.analysis.results import mean_std, summarize
from pf.experiments.record import RANDOM_LABEL, SCORE_TITLES, SCORES_FILE, read_record
from pf.select import STRATEGIES

__all__ = ["selection_metrics_vs_budget", "score_correlation", "correlation_table",
           "accuracy_vs_prune_rate", "pruning_table", "plot_scores"]

CORRELATIONS = {"pearson": "Pearson", "spearman": "Spearman"}


# ---------------------------------------------------------------------------------------
# Norm-based selection: accuracy per metric
# ---------------------------------------------------------------------------------------

def _metrics_vs_budget(runs: pd.DataFrame) -> Drawing:
    stats = summarize(runs, ["arch", "label", "metric", "labeled"])
    groups = [key for key, group in stats.groupby(["arch", "label"])
              if group.metric.nunique() > 1]
    if not groups:
        return "no runs of one method and target with two or more selection metrics"
    runs = runs.assign(accuracy=runs.target_accuracy * 100, budget=runs.budget_fraction * 100,
                       shown=runs.metric.map(lambda metric: STRATEGIES[metric].label))
    metrics = sorted(runs.metric.unique())
    # A fixed colour per metric (its strategy's), the same in every panel and figure.
    colors = palette([STRATEGIES[metric].label for metric in metrics],
                     {STRATEGIES[metric].label: STRATEGIES[metric].color for metric in metrics})
    fig, axes = panel_grid(len(groups))
    for ax, (arch, label) in zip(axes, groups):
        rows = runs[(runs.arch == arch) & (runs.label == label)]
        mean_sd_lines(ax, rows, "budget", "accuracy", "shown", palette=colors, marker="o",
                      hue_order=[line for line in colors if line in set(rows.shown)])
        ax.set(title=f"{arch} · {label}", xlabel=BUDGET, ylabel=ACCURACY)
    used = stats.set_index(["arch", "label"]).loc[groups]
    footer(fig, runs, used.n, "Test split, final epoch; error bars: ± std over seeds. The "
                              "first budget is the same random draw for every metric of a seed.",
           legend_title="selection metric")
    return fig


def selection_metrics_vs_budget(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """Final target accuracy (mean ± std over seeds) against the TOTAL labeled count, a line
    per selection metric, one panel per (target arch, method) that ran two metrics or more.
    ``table``: ``pf.analysis.results.collect`` rows of active-learning runs."""
    return per_dataset(table, "selection_metrics_vs_budget", out_dir, _metrics_vs_budget)


# ---------------------------------------------------------------------------------------
# Score extrapolation: agreement with a full run
# ---------------------------------------------------------------------------------------

def _extrapolation_lines(scores: pd.DataFrame) -> pd.DataFrame:
    """Subset runs with a full-run reference, with the name of their line: the label
    without the subset size ("DU, kNN k=10"), which the x axis shows instead."""
    with_reference = scores[(scores.source == "subset") & scores.pearson.notna()].copy()
    with_reference["line"] = with_reference.label.str.replace(r" from [\d.]+ %$", "", regex=True)
    return with_reference


def _correlation(scores: pd.DataFrame) -> Drawing:
    runs = _extrapolation_lines(scores)
    if runs.empty:
        return "no runs with extrapolated scores and a full-run reference (score_reference=true)"
    runs = runs.assign(subset=runs.subset_fraction * 100)
    colors = palette(sorted(runs.line.unique()))
    groups = list(runs.groupby(["arch", "score"]))
    fig, axes = panel_grid(len(groups) * len(CORRELATIONS), columns=len(CORRELATIONS))
    counts = []
    width = len(CORRELATIONS)  # panels per (arch, score)
    for index, ((arch, score), group) in enumerate(groups):
        for ax, (column, name) in zip(axes[index * width:(index + 1) * width],
                                      CORRELATIONS.items()):
            mean_sd_lines(ax, group, "subset", column, "line", palette=colors, marker="o",
                          hue_order=sorted(group.line.unique()))
            counts += list(summarize(group, ["line", "subset"], column).n)
            # Without extrapolation: the subset run's own scores on the samples it saw.
            sns.lineplot(data=group.drop_duplicates(["seed", "scored"]), x="subset",
                         y=f"{column}_scored", errorbar=None, color="0.4", linestyle=":",
                         marker=".", label="subset's own scores (seen samples)", ax=ax)
            ax.set(title=f"{arch} · {SCORE_TITLES[score]} · {name}",
                   xlabel="scored subset (% of training set)", ylabel=f"{name} vs full-run scores")
    footer(fig, runs, counts, "Correlation on the samples the scoring subset did not see; "
                              "error bars: ± std over seeds.")
    return fig


def score_correlation(scores: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """Pearson and Spearman of extrapolated vs full-run scores on the unseen samples against
    the scored subset's size, a line per extrapolation (kNN per k and weighting, GNN per k);
    per (arch, score) a Pearson and a Spearman panel, with the subset run's own agreement on
    the samples it saw dotted. ``scores``: ``pf.analysis.results.collect_scores``."""
    return per_dataset(scores, "score_correlation", out_dir, _correlation)


def correlation_table(scores: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """``score_correlation.csv`` and ``.md``: a row per (dataset, arch, way of scoring),
    Pearson and Spearman on the unseen samples as "mean ± std (n=seeds)"."""
    runs = _extrapolation_lines(scores)
    if runs.empty:
        return ("score_correlation table not written: no runs with extrapolated scores and a "
                "full-run reference")
    columns = {}
    for column, name in CORRELATIONS.items():
        stats = summarize(runs, ["dataset", "arch", "label"], column)
        cells = [mean_std(m, s, n, scale=1, digits=3)
                 for m, s, n in zip(stats["mean"], stats["std"], stats.n)]
        columns[f"{name} (unseen)"] = pd.Series(cells, index=pd.MultiIndex.from_frame(
            stats[["dataset", "arch", "label"]]))
    wide = pd.DataFrame(columns).rename_axis(index={"label": "scores"})
    caption = ("Extrapolated vs full-run scores on the training samples the scoring subset "
               "did not see: mean ± std over seeds (n = seeds).")
    return write_table(wide, Path(out_dir) / "score_correlation", caption)


# ---------------------------------------------------------------------------------------
# Score extrapolation: accuracy after pruning
# ---------------------------------------------------------------------------------------

def _pruning_rounds(table: pd.DataFrame) -> pd.DataFrame:
    """Data-pruning rounds, random ones counted once per seed: random pruning does not
    depend on the scoring, so runs that differ only in how they score repeat it."""
    rounds = table[table.selection.notna()]
    random = rounds.label == RANDOM_LABEL
    once = rounds[random].drop_duplicates(["dataset", "arch", "score", "seed", "removed_fraction",
                                           "epochs"])
    return pd.concat([rounds[~random], once])


def _accuracy_vs_rate(table: pd.DataFrame) -> Drawing:
    rounds = _pruning_rounds(table)
    if rounds.empty:
        return "no runs of experiment=data_pruning with removed fractions"
    rounds = rounds.assign(rate=rounds.removed_fraction * 100,
                           accuracy=rounds.target_accuracy * 100)
    labels = sorted(rounds.label.unique())
    colors = palette(labels, {RANDOM_LABEL: "0.45"})
    dashes = {label: (4, 1.5) if label == RANDOM_LABEL else "" for label in labels}
    groups = list(rounds.groupby(["arch", "score"]))
    fig, axes = panel_grid(len(groups))
    for ax, ((arch, score), rows) in zip(axes, groups):
        mean_sd_lines(ax, rows, "rate", "accuracy", "label", style="label", palette=colors,
                      dashes=dashes, markers=dict.fromkeys(labels, "o"),
                      hue_order=[label for label in labels if label in set(rows.label)])
        ax.set(title=f"{arch} · {SCORE_TITLES[score]} scores",
               xlabel="pruning rate (% of training set removed)", ylabel=ACCURACY)
    footer(fig, rounds, summarize(rounds, ["arch", "score", "label", "removed_fraction"]).n,
           "Retrained from scratch on the kept samples; test split, final epoch; error bars: "
           "± std over seeds.")
    return fig


def accuracy_vs_prune_rate(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """Final test accuracy of the target retrained on the kept samples against the pruning
    rate, a line per way of keeping (the highest scores, however scored; each coreset rule;
    random), one panel per (arch, score). ``table``: ``pf.analysis.results.collect`` rows
    (only data-pruning rounds are used)."""
    return per_dataset(table, "accuracy_vs_prune_rate", out_dir, _accuracy_vs_rate)


def pruning_table(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """``pruning_table.csv`` and ``.md``: a row per (dataset, arch, way of scoring), a
    column per pruning rate, cells the retrained accuracy "mean ± std (n=seeds)" in %."""
    rounds = _pruning_rounds(table)
    if rounds.empty:
        return "pruning_table not written: no runs of experiment=data_pruning"
    stats = summarize(rounds, ["dataset", "arch", "score", "label", "removed_fraction"])
    stats["rate"] = [f"rate {rate:g}" for rate in stats.removed_fraction]
    order = stats.sort_values("removed_fraction").rate.unique()
    wide = cell_table(stats, ["dataset", "arch", "score", "label"], "rate", order, "kept by")
    caption = ("Test accuracy (%, test split, final epoch) of the target retrained from "
               "scratch on the samples kept at each pruning rate, mean ± std over seeds.")
    return write_table(wide, Path(out_dir) / "pruning_table", caption)


# ---------------------------------------------------------------------------------------
# One data-pruning run, for the extrapolation notebook
# ---------------------------------------------------------------------------------------

def plot_scores(run_dir: str | Path) -> Figure:
    """Extrapolated against full-run scores of one data-pruning run (``run_dir`` holds its
    record and scores file; needs ``score_reference=true``), seen and unseen samples
    in two colours, with their Pearson and Spearman in the legend. Pyplot, for notebooks."""
    run_dir = Path(run_dir)
    saved = json.loads((run_dir / SCORES_FILE).read_text())
    summary = read_record(run_dir).scores
    if saved["reference_scores"] is None:
        raise ValueError(f"{run_dir}: no full-run scores; run with score_reference=true")
    estimate, truth = np.array(saved["scores"]), np.array(saved["reference_scores"])
    seen = np.zeros(len(estimate), dtype=bool)
    seen[saved["scored_indices"]] = True
    fig = notebook_figure((PANEL_SIZE[0] * 1.4, PANEL_SIZE[1] * 1.4))
    with theme():
        ax = fig.subplots()
        for mask, name, suffix, color in ((~seen, "extrapolated (unseen)", "", "tab:blue"),
                                          (seen, "subset run's own (seen)", "_scored", "0.55")):
            ax.scatter(truth[mask], estimate[mask], s=5, alpha=0.5, color=color,
                       label=f"{name}: Pearson {getattr(summary, 'pearson' + suffix):.3f}, "
                             f"Spearman {getattr(summary, 'spearman' + suffix):.3f}")
        ax.set(title=f"{SCORE_TITLES[summary.score]} scores of {len(estimate)} training samples",
               xlabel="full-run score", ylabel="subset run's score")
        ax.legend(markerscale=3)
        fig.tight_layout()
    return fig
