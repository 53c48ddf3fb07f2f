"""The paired comparisons of ``pf.analysis.paired`` as figures and a table, drawn from a
table of runs (``pf.analysis.results.collect``); ``pf.analysis.figures.make_figures``
calls each:

- ``paired_differences_figure``: a panel per arm, its per-seed accuracy difference to the AL
  baseline and to random selection at each budget (dots), their mean and 95 % interval
  (bars), on a line at 0: a bar clear of 0 is a difference the seeds decide.
- ``win_tie_loss``: the pairwise matrix: row arm against column arm, "wins/ties/losses"
  over the budgets, coloured by wins minus losses.
- ``paired_table.csv`` and ``paired_table.md``: a row per (arch, arm, reference), a column
  per budget and one for the area under the curve, cells "mean [low, high] (n=…)" in
  points, decided ones in bold.

Each returns the files it wrote or a one-line reason (see ``pf.analysis.plotting``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pf.analysis.paired import (AREA, CONFIDENCE, arm_names, interval_text, paired_differences,
                                paired_summary, win_tie_loss as win_tie_loss_counts)
from pf.analysis.plotting import (BUDGET, MAX_COLUMNS, PANEL_SIZE, Drawing, footer, panel_grid,
                                  per_dataset, write_table)

__all__ = ["paired_differences_figure", "win_tie_loss", "paired_table"]

REFERENCE_STYLES = {"AL baseline": ("0.35", "o", -0.25), "random": ("tab:red", "s", 0.25)}
DIFFERENCE = "accuracy difference (points)"
CELL_SIZE = 0.75  # inches per arm in the win/tie/loss matrix, where it fits ...
MIN_CELL_SIZE = 0.4  # ... else smaller down to this (a "0/4/0" at 9 pt still fits)
LABEL_SPACE = 3.2  # inches the matrix's row labels take
MATRIX_WIDTH = MAX_COLUMNS * PANEL_SIZE[0]  # the figures' width: a notebook's, unscaled
LABEL_WIDTH = 40  # characters per line of an arm's name (matrix axes, panel titles)


def _paired_differences(table: pd.DataFrame) -> Drawing:
    seeds = paired_differences(table)
    seeds = seeds[seeds.budget != AREA]
    summary = paired_summary(table, seeds)
    if summary.empty:
        return "no arm to compare with an AL baseline or random selection"
    fractions = dict(zip(table.labeled, 100 * table.budget_fraction))
    panels = list(dict.fromkeys(zip(summary.arch, summary.arm)))
    fig, axes = panel_grid(len(panels))
    step = min(np.diff(sorted(set(fractions.values()))), default=10) / 2
    for ax, (arch, arm) in zip(axes, panels):
        ax.axhline(0, color="0.2", linewidth=0.8)
        for role, (color, marker, shift) in REFERENCE_STYLES.items():
            rows = summary[(summary.arch == arch) & (summary.arm == arm)
                           & (summary.reference == role)]
            if rows.empty:
                continue
            x = rows.budget.map(fractions).to_numpy(float) + shift * step
            dots = seeds[(seeds.arm == arm) & (seeds.reference == role)]
            ax.scatter(dots.budget.map(fractions) + shift * step, dots.difference, color=color,
                       s=12, alpha=0.5, linewidths=0)
            low = (rows["mean"] - rows.low).fillna(0).to_numpy()
            high = (rows.high - rows["mean"]).fillna(0).to_numpy()
            ax.errorbar(x, rows["mean"], yerr=[low, high], color=color, marker=marker,
                        markersize=4, capsize=3, linestyle="none", label=f"minus {role}")
        ax.set(title=f"{arch} · {textwrap.fill(arm, LABEL_WIDTH)}", xlabel=BUDGET,
               ylabel=DIFFERENCE)
    footer(fig, table, summary.n, f"Paired by seed (same initial labels and weights): "
           f"dots single seeds, markers the mean, bars its {100 * CONFIDENCE:.0f} % t-interval "
           f"over the seeds (none with one seed). Test split, final epoch.")
    return fig


def paired_differences_figure(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """Each arm's per-seed accuracy difference to the AL baseline and to random selection
    against the budget, with the mean and its interval, a panel per arm."""
    return per_dataset(table, "paired_differences", out_dir, _paired_differences)


def _win_tie_loss(table: pd.DataFrame) -> Drawing:
    counts = win_tie_loss_counts(table)
    if counts.empty:
        return "fewer than two arms to compare"
    archs = sorted(counts.arch.unique())
    arms = list(dict.fromkeys(counts.arm))
    # Columns are numbered as the rows, so that the matrix keeps to the figures' width.
    cell = max(MIN_CELL_SIZE, min(CELL_SIZE, (MATRIX_WIDTH - LABEL_SPACE) / len(arms)))
    size = cell * len(arms)
    fig = Figure(figsize=(size + LABEL_SPACE, (size + 0.6) * len(archs)))
    FigureCanvasAgg(fig)
    for ax, arch in zip(fig.subplots(len(archs), 1, squeeze=False).ravel(), archs):
        mine = counts[counts.arch == arch]
        score = mine.pivot(index="arm", columns="other", values="wins") - \
            mine.pivot(index="arm", columns="other", values="losses")
        text = mine.assign(cell=[f"{w}/{t}/{lo}" for w, t, lo in
                                 zip(mine.wins, mine.ties, mine.losses)])
        cells = text.pivot(index="arm", columns="other", values="cell")
        order = [arm for arm in arms if arm in score.index]
        score, cells = score.reindex(index=order, columns=order), cells.reindex(
            index=order, columns=order).fillna("")
        budgets = int((mine.wins + mine.ties + mine.losses).max())
        sns.heatmap(score.astype(float), annot=cells.to_numpy(), fmt="", cmap="RdBu",
                    vmin=-budgets, vmax=budgets, cbar=False, square=True, linewidths=0.5,
                    linecolor="white", ax=ax)
        ax.set(title=f"{arch}: row arm against column arm over {budgets} budgets",
               xlabel="", ylabel="")
        numbers = [str(arms.index(arm) + 1) for arm in order]
        ax.set_yticklabels([textwrap.fill(f"{number}  {arm}", LABEL_WIDTH)
                            for number, arm in zip(numbers, order)])
        ax.set_xticklabels(numbers)
        ax.tick_params(axis="x", labelrotation=0)
        ax.set_anchor("E")  # a square matrix's spare width goes to its row labels
        ax.grid(False)
    named = table.assign(arm=arm_names(table))
    caption = ("Columns: the arms numbered as the rows. "
               "Cells: wins/ties/losses of the row's arm over the budgets; a win needs the "
               f"paired {100 * CONFIDENCE:.0f} % t-interval over seeds above 0, a loss below "
               "0; colour: wins minus losses (blue: the row wins).")
    footer(fig, table, named.groupby(["arm", "labeled"]).seed.nunique(), caption,
           shared_legend=False)
    return fig


def win_tie_loss(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """The pairwise win/tie/loss matrix of the arms over the budgets (paired intervals)."""
    return per_dataset(table, "win_tie_loss", out_dir, _win_tie_loss)


def paired_table(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """``paired_table.csv`` and ``.md``: each arm minus each reference, per budget and for
    the area under the accuracy-budget curve, mean and interval in points."""
    if table.empty:
        return "paired_table not written: no runs found"
    summary = paired_summary(table)
    if summary.empty:
        return "paired_table not written: no arm to compare with a reference"
    summary = summary.assign(cell=summary.apply(interval_text, axis=1), column=summary.budget.map(
        lambda budget: "area" if budget == AREA else str(budget)))
    order = [str(b) for b in sorted(b for b in summary.budget.unique() if b != AREA)] + ["area"]
    wide = summary.pivot_table(index=["dataset", "arch", "arm", "reference"], columns="column",
                               values="cell", aggfunc="first", sort=False)
    wide = wide.reindex(columns=order).fillna("").rename_axis(columns=None)
    caption = (f"Paired accuracy differences (points; test split, final epoch): the arm minus "
               f"the reference at the same seed, mean [{100 * CONFIDENCE:.0f} % t-interval] "
               "(n = seeds both have); bold: the interval excludes 0. Columns: TOTAL labeled "
               "count, and the area under the accuracy-budget curve (mean accuracy over the "
               "budgets).")
    return write_table(wide, Path(out_dir) / "paired_table", caption)
