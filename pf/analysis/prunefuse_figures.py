"""The paper's figures and main table, drawn from a table of runs
(``pf.analysis.results.collect``); ``pf.analysis.figures.make_figures`` calls each. Each
writes its figure as PNG and PDF:

- ``accuracy_vs_budget``: the target's final test accuracy against the labeled budget
  (% of the training set), mean ± std over seeds, for PruneFuse at each p, the AL
  baseline and SVP; one panel per (target arch, selection metric), with random selection
  drawn dotted in every panel of its target as the floor. With it
  ``main_table.csv`` and ``main_table.md``: a row per (dataset, arch, metric, method), a
  column per budget, cells "mean ± std (n=seeds)" in %.
- ``fig3_selection_flops`` (paper Fig. 3): data-selection MACs (top row) and seconds
  (bottom row) of PruneFuse and of the AL baseline at the budgets nearest 10, 30 and
  50 %, a column per p, with the ratio.
- ``fig4_fused_vs_scratch`` (Fig. 4): the target's test accuracy per epoch, fused
  (fusion=True) vs trained from theta's initialisation (fusion=False), p = 0.5 and 0.6.
- ``fig5_prunefuse_vs_svp`` (Fig. 5): final accuracy at the budget nearest 50 % against
  the selector's parameter count, one panel per target arch.
- ``tsync_accuracy_and_cost`` (the extended paper's synchronisation): at the last budget,
  PruneFuse's target accuracy, data-selection MACs and data-selection seconds against
  T_sync (``sync_every``; 0 = never), a line per p, the AL baseline as a dotted line.

Figs. 3 to 5 show the 2024 method: runs that synchronise their selector or start it warm
(``pf.experiments.methods``) are left out there, since both change what is picked and the
first what picking costs; they appear, labelled, in ``accuracy_vs_budget``, the main table
and the T_sync figure.

Every function returns the files it wrote or, when the results hold nothing to draw, a
one-line reason, and then writes nothing: no empty axes, no exception. A figure's PNG
and PDF files left in ``out_dir`` by an earlier build are removed first. Results with
several datasets give one figure per dataset, named with the dataset appended
(``accuracy_vs_budget_cifar10.png``); a single dataset keeps the plain name. Panels
split further by target arch and metric where the results hold several. Figures are
matplotlib ``Figure`` objects on the Agg canvas (``pf.analysis.plotting``), never pyplot,
so a notebook that uses this module keeps its own backend and style.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from pf.analysis.plotting import (ACCURACY, BUDGET, Drawing, cell_table, footer, legend,
                                  panel_grid, per_dataset, spread, write_table)
from pf.analysis.results import summarize
from pf.experiments.methods import METHODS
from pf.flops import UNIT
from pf.select import STRATEGIES

__all__ = ["accuracy_vs_budget", "main_table", "fig3_selection_flops", "fig4_fused_vs_scratch",
           "fig5_prunefuse_vs_svp", "tsync_accuracy_and_cost"]

SELECTION_FRACTIONS = (0.1, 0.3, 0.5)  # Fig. 3's budgets
FUSION_RATIOS = (0.5, 0.6)  # Fig. 4's pruning ratios
SVP_FRACTION = 0.5  # Fig. 5's budget
# One colour per pruning ratio, none of them the baseline's grey or SVP's orange.
RATIO_COLORS = ("tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                "tab:olive", "tab:cyan")
# The recipe's line (first), then one per departure from it (no fusion, T_sync, ...).
VARIANT_STYLES = ({"linestyle": "-", "marker": "o"}, {"linestyle": "--", "marker": "s"},
                  {"linestyle": ":", "marker": "^"}, {"linestyle": "-.", "marker": "v"},
                  {"linestyle": (0, (5, 1)), "marker": "D"},
                  {"linestyle": (0, (3, 1, 1, 1, 1, 1)), "marker": "P"})
FLOOR_STYLE = {"linestyle": ":", "marker": "x", "alpha": 0.8}  # random selection's lines


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

def _the_2024_method(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of runs without the extended paper's selector options: no synchronisation,
    no warm start (NaN, a baseline's or an older run's, counts as without)."""
    return runs[~(runs.sync_every > 0) & runs.selector_start.ne("warm")]


def _ratio_color(ratio: float, ratios: list) -> str:
    """PruneFuse's colour at ``ratio``, one of ``ratios`` (all the ratios drawn)."""
    return RATIO_COLORS[ratios.index(ratio) % len(RATIO_COLORS)]


def _nearest(rows: pd.DataFrame, fractions) -> list[int]:
    """The labeled counts in ``rows`` whose budget fraction is nearest each of ``fractions``
    (ties go to the smaller budget), sorted, without repeats."""
    budgets = rows.drop_duplicates("labeled").sort_values("labeled")
    return sorted({int(budgets.labeled.iloc[(budgets.budget_fraction - f).abs().argmin()])
                   for f in fractions})


# ---------------------------------------------------------------------------------------
# Accuracy against budget, and the main table
# ---------------------------------------------------------------------------------------

def _reads_nothing(metric: str) -> bool:
    """Whether ``metric`` picks without reading the samples (random selection): the floor
    every other metric is measured against."""
    return STRATEGIES[metric].inputs == "none"


def _line_style(method: str, ratio: float, label: str, ratios: list, departures: dict) -> dict:
    """A line's colour, line style and marker in ``accuracy_vs_budget``: the method's
    colour; for PruneFuse a colour per p (one of ``ratios``), and its departures from the
    recipe (no fusion, T_sync, ...) in the same colour, each with a line style and marker of
    its own. ``departures`` counts, per p, the departures styled so far (updated here)."""
    if method != "prunefuse":
        return {"color": METHODS[method].color, **VARIANT_STYLES[0]}
    variant = 0
    if "(" in label:
        departures[ratio] = departures.get(ratio, 0) + 1
        variant = 1 + (departures[ratio] - 1) % (len(VARIANT_STYLES) - 1)
    return {"color": _ratio_color(ratio, ratios), **VARIANT_STYLES[variant]}


def _budget_panels(stats: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame, pd.DataFrame]]:
    """(arch, metric, its lines, the floor's lines) per panel of ``accuracy_vs_budget``: a
    panel per target and metric that reads the samples, the target's random-selection lines
    drawn in each as the floor; random selection gets a panel only for a target that has
    nothing else."""
    panels = []
    for arch, rows in stats.groupby("arch"):
        floor = rows[rows.metric.map(_reads_nothing)]
        measured = rows.drop(floor.index)
        if measured.empty:
            panels += [(arch, metric, panel, floor.iloc[:0])
                       for metric, panel in floor.groupby("metric")]
        panels += [(arch, metric, panel, floor) for metric, panel in measured.groupby("metric")]
    return panels


def _accuracy_vs_budget(runs: pd.DataFrame) -> Drawing:
    stats = summarize(runs, ["arch", "metric", "method", "prune_ratio", "label", "labeled",
                             "budget_fraction"])
    ratios = sorted(runs.prune_ratio.dropna().unique())
    panels = _budget_panels(stats)
    fig, axes = panel_grid(len(panels))
    for ax, (arch, metric, panel, floor) in zip(axes, panels):
        for lines, floor_lines in ((panel, False), (floor, True)):
            departures = {}  # per p, how many of PruneFuse's departures from its recipe so far
            for (method, ratio, label), line in lines.groupby(["method", "prune_ratio", "label"],
                                                              dropna=False):
                style = _line_style(method, ratio, label, ratios, departures)
                if floor_lines:
                    style |= FLOOR_STYLE
                    label = f"{label} · {STRATEGIES[line.metric.iloc[0]].label}"
                ax.errorbar(line.budget_fraction * 100, line["mean"] * 100, ms=4,
                            yerr=spread(line, 100), capsize=3, label=label, **style)
        ax.set(title=f"{arch} · {STRATEGIES[metric].label}", xlabel=BUDGET, ylabel=ACCURACY)
        legend(ax)
    floor_note = (" Dotted with crosses: the same method with random selection, the floor."
                  if any(not floor.empty for *_, floor in panels) else "")
    footer(fig, runs, stats.n, "Test split, final epoch; error bars: ± std over seeds."
           + floor_note)
    return fig


def accuracy_vs_budget(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """Final target accuracy (mean ± std over seeds) against the labeled budget, one line
    per method (PruneFuse per p, AL baseline, SVP per proxy), one panel per (arch, metric)."""
    return per_dataset(table, "accuracy_vs_budget", out_dir, _accuracy_vs_budget)


def main_table(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """``main_table.csv`` and ``main_table.md``: a row per (dataset, arch, metric, method),
    a column per budget ("25000 (50.0 %)": TOTAL labeled count and its share of the
    training set), cells "mean ± std (n=seeds)" of the final target accuracy in %."""
    if table.empty:
        return "main_table not written: no runs found"
    stats = summarize(table, ["dataset", "arch", "metric", "label", "labeled", "budget_fraction"])
    stats["budget"] = [f"{count} ({100 * fraction:.1f} %)"
                       for count, fraction in zip(stats.labeled, stats.budget_fraction)]
    order = stats.sort_values(["budget_fraction", "labeled"]).budget.unique()
    wide = cell_table(stats, ["dataset", "arch", "metric", "label"], "budget", order, "method")
    caption = ("Target test accuracy (%, test split, final epoch), mean ± std over seeds "
               "(n = seeds); columns: TOTAL labeled count (% of the training set).")
    return write_table(wide, Path(out_dir) / "main_table", caption)


# ---------------------------------------------------------------------------------------
# Fig. 3: data-selection cost
# ---------------------------------------------------------------------------------------

# What Fig. 3 shows, a row of panels each: column, axis label (the unit's power of ten is
# added to the MACs' label), and whether the bars are scaled by a power of ten.
LEGEND_HEADROOM = 1.3  # Fig. 3's y-range over its tallest bar: room for the legend above them
SELECTION_COSTS = (("data_selection_macs", "data-selection cost ({scale}MACs)", True),
                   ("data_selection_seconds", "data-selection wall-clock (s)", False))


def _selection_flops(runs: pd.DataFrame) -> Drawing:
    runs = _the_2024_method(runs)
    baseline, pruned = runs[runs.method == "baseline"], runs[runs.method == "prunefuse"]
    # A protocol's planned costs (pf.flops, flops.ipynb) have MACs but no seconds.
    costs = [cost for cost in SELECTION_COSTS if cost[0] in runs]
    panels = []
    for (arch, metric, ratio), ours in pruned.groupby(["arch", "metric", "prune_ratio"]):
        # Fusion, KD and the rest mode change only the target's training, not what selection
        # cost, so runs differing only in them count once per seed.
        ours = ours.drop_duplicates(["seed", "labeled"])
        theirs = baseline[(baseline.arch == arch) & (baseline.metric == metric)]
        # The initial random set costs nothing to choose; comparisons start after it.
        shared = ours[(ours["round"] > 0) & ours.labeled.isin(theirs.labeled)]
        if shared.empty:
            continue
        budgets = _nearest(shared, SELECTION_FRACTIONS)
        bars = {value: [summarize(rows[rows.labeled.isin(budgets)], ["labeled", "budget_fraction"],
                                  value) for rows in (theirs, ours)]
                for value, *_ in costs}
        if bars["data_selection_macs"][0]["mean"].min() > 0:  # random picks cost nothing: no ratio
            panels.append((f"{arch} · {STRATEGIES[metric].label} · p={ratio:g}", bars))
    if not panels:
        return ("no PruneFuse and AL-baseline runs with the same target and metric share a "
                "budget after the random initial set with a selection cost above 0")
    largest = max(bars["data_selection_macs"][0]["mean"].max() for _, bars in panels)
    exponent = 3 * max(0, int(math.log10(largest) // 3))
    # One column per p: its MACs above its seconds.
    fig, axes = panel_grid(len(costs) * len(panels), columns=len(panels))
    for row, (value, ylabel, scaled) in enumerate(costs):
        scale = 10.0**-exponent if scaled else 1.0
        for ax, (title, bars) in zip(axes[row * len(panels):], panels):
            theirs, ours = bars[value]
            x = np.arange(len(theirs))
            for offset, heights, method in ((-0.2, theirs, "baseline"), (0.2, ours, "prunefuse")):
                ax.bar(x + offset, heights["mean"] * scale, width=0.4, color=METHODS[method].color,
                       yerr=spread(heights, scale), capsize=3, label=METHODS[method].title)
            for position, cost, base_cost in zip(x, ours["mean"], theirs["mean"]):
                ax.annotate(f"{cost / base_cost:.2f}×", (position + 0.2, cost * scale),
                            xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
            ax.set_xticks(x, [f"{100 * f:.1f} %" for f in theirs.budget_fraction])
            ax.set(title=title, xlabel=BUDGET,
                   ylabel=ylabel.format(scale=f"$10^{{{exponent}}}$ " if exponent else ""))
            ax.set_ylim(top=ax.get_ylim()[1] * LEGEND_HEADROOM)
    axes[0].legend(fontsize=7, loc="upper right")  # the same two colours in every panel
    counts = pd.concat([heights.n for _, bars in panels for heights in bars["data_selection_macs"]])
    wall_clock = ""
    if len(costs) > 1:
        devices = ", ".join(sorted(pd.concat([baseline, pruned]).device.unique()))
        wall_clock = f" Wall-clock on {devices}."
    footer(fig, pd.concat([baseline, pruned]), counts,
           f"Unit: {UNIT}. Above the bars: PruneFuse / AL baseline.{wall_clock}")
    return fig


def fig3_selection_flops(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """Paper Fig. 3: MACs (top row) and wall-clock seconds (bottom row) spent choosing the
    labeled set (``data_selection_macs``/``_seconds``), PruneFuse vs the AL baseline,
    grouped bars at the budgets nearest 10, 30 and 50 % (after the free random initial
    set), a column per p, the PruneFuse/baseline ratio on top of its bar."""
    return per_dataset(table, "fig3_selection_flops", out_dir, _selection_flops)


# ---------------------------------------------------------------------------------------
# Fig. 4: fused vs from-scratch training curves
# ---------------------------------------------------------------------------------------

def _fused_vs_scratch(runs: pd.DataFrame, budget: int | None) -> Drawing:
    runs = _the_2024_method(runs)
    pruned = runs[(runs.method == "prunefuse") & runs.prune_ratio.round(6).isin(FUSION_RATIOS)]
    panels = []
    for (arch, metric, ratio), group in pruned.groupby(["arch", "metric", "prune_ratio"]):
        shared = set(group[group.fusion].labeled) & set(group[~group.fusion].labeled)
        chosen = budget if budget is not None else max(shared, default=None)
        if chosen in shared:
            title = f"{arch} · {STRATEGIES[metric].label} · p={ratio:g}"
            panels.append((title, group[group.labeled == chosen]))
    if not panels:
        at = "" if budget is None else f" at budget {budget}"
        return f"no PruneFuse runs with both fusion=True and fusion=False at p=0.5 or 0.6{at}"
    fig, axes = panel_grid(len(panels))
    counts = []
    for ax, (title, at) in zip(axes, panels):
        several_schedules = at.epochs.nunique() > 1
        at = at.assign(evaluated=at.curve_epochs.map(tuple))  # runs tested after the same epochs
        for (label, epochs, epoch), lines in at.groupby(["label", "epochs", "evaluated"]):
            curves = np.array(lines.curve.tolist(), dtype=float) * 100
            mean = curves.mean(axis=0)
            std = curves.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
            name = label + (f", {epochs} epochs" if several_schedules else "")
            (line,) = ax.plot(epoch, mean, label=f"{name} (n={len(curves)})")
            ax.fill_between(epoch, mean - std, mean + std, alpha=0.2, color=line.get_color())
            counts.append(len(curves))
        ax.set(title=f"{title} · b={100 * at.budget_fraction.iloc[0]:.1f} %", xlabel="epoch",
               ylabel=ACCURACY)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    footer(fig, pruned, counts, "Test accuracy after each evaluated epoch; band: ± std over seeds.")
    return fig


def fig4_fused_vs_scratch(table: pd.DataFrame, out_dir: str | Path,
                          budget: int | None = None) -> list[Path] | str:
    """Paper Fig. 4: the target's test accuracy per epoch, PruneFuse with fusion=True vs
    fusion=False (trained from theta's initialisation), mean over seeds with a ± std band,
    one panel per p in {0.5, 0.6} that has both; at ``budget`` (a TOTAL labeled count) or
    else the largest budget both have."""
    return per_dataset(table, "fig4_fused_vs_scratch", out_dir,
                        lambda runs: _fused_vs_scratch(runs, budget))


# ---------------------------------------------------------------------------------------
# Fig. 5: PruneFuse vs SVP against selector size
# ---------------------------------------------------------------------------------------

def _prunefuse_vs_svp(runs: pd.DataFrame) -> Drawing:
    # Fig. 5 compares selectors; ablations of the target's training belong to Fig. 4.
    runs = _the_2024_method(runs[(runs.method != "prunefuse") | (runs.fusion & runs.kd)])
    panels = []
    for (arch, metric), group in runs.groupby(["arch", "metric"]):
        svp = group[group.method == "svp"]
        shared = group[(group.method == "prunefuse") & group.labeled.isin(svp.labeled)]
        if shared.empty:
            continue
        [chosen] = _nearest(shared, [SVP_FRACTION])
        stats = summarize(group[group.labeled == chosen],
                          ["method", "label", "selector_params", "budget_fraction"])
        panels.append((f"target {arch} · {STRATEGIES[metric].label}", stats))
    if not panels:
        return "no PruneFuse and SVP runs with the same target, metric and budget"
    fig, axes = panel_grid(len(panels))
    for ax, (title, stats) in zip(axes, panels):
        for method, points in stats.groupby("method"):
            ax.errorbar(points.selector_params, points["mean"] * 100, fmt="o", capsize=3,
                        yerr=spread(points, 100), color=METHODS[method].color,
                        label=METHODS[method].title)
            for label, x, y in zip(points.label, points.selector_params, points["mean"] * 100):
                ax.annotate(label.removeprefix("PruneFuse ").removeprefix("SVP "), (x, y),
                            xytext=(4, 4), textcoords="offset points", fontsize=7)
        ax.set_xscale("log")
        ax.margins(x=0.2)  # room for the point labels at both ends
        ax.set(title=f"{title} · b={100 * stats.budget_fraction.iloc[0]:.1f} %",
               xlabel="selector parameters", ylabel=ACCURACY)
        ax.legend(fontsize=7)
    counts = pd.concat([stats.n for _, stats in panels])
    footer(fig, runs, counts, "Test split, final epoch; error bars: ± std over seeds; "
                               "PruneFuse points are labelled with p, SVP points with the proxy.")
    return fig


def fig5_prunefuse_vs_svp(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """Paper Fig. 5: final target accuracy at the budget nearest 50 % against the selector's
    parameter count (log axis): PruneFuse per p, SVP per proxy, and the AL baseline (the
    target itself selects) where present; one panel per (target arch, metric)."""
    return per_dataset(table, "fig5_prunefuse_vs_svp", out_dir, _prunefuse_vs_svp)


# ---------------------------------------------------------------------------------------
# The extended paper: synchronising the selector every T_sync rounds
# ---------------------------------------------------------------------------------------

# What the T_sync figure shows per (target, metric): column, scale, axis label, log axis.
SYNC_PANELS = (("target_accuracy", 100, ACCURACY, False),
               ("data_selection_macs", 1, "data-selection cost (MACs)", True),
               ("data_selection_seconds", 1, "data-selection wall-clock (s)", True))


def _sync_accuracy_and_cost(runs: pd.DataFrame) -> Drawing:
    ratios = sorted(runs.prune_ratio.dropna().unique())
    # Fused, distilled targets with selectors retrained from their start: T_sync alone varies.
    pruned = runs[(runs.method == "prunefuse") & runs.fusion & runs.kd
                  & runs.selector_start.eq("init")]
    groups = []
    for (arch, metric), group in pruned.groupby(["arch", "metric"]):
        if group.sync_every.nunique() > 1:
            last = group[group.labeled == group.labeled.max()]
            baseline = runs[(runs.method == "baseline") & (runs.arch == arch)
                            & (runs.metric == metric) & (runs.labeled == last.labeled.iloc[0])]
            groups.append((f"{arch} · {STRATEGIES[metric].label}", last, baseline))
    if not groups:
        return "no PruneFuse runs that differ in sync_every (T_sync) for one target and metric"
    fig, axes = panel_grid(len(SYNC_PANELS) * len(groups))
    counts = []
    for index, (title, last, baseline) in enumerate(groups):
        panels = axes[index * len(SYNC_PANELS):(index + 1) * len(SYNC_PANELS)]
        for ax, (value, scale, ylabel, log) in zip(panels, SYNC_PANELS):
            stats = summarize(last, ["prune_ratio", "sync_every"], value)
            for ratio, line in stats.groupby("prune_ratio"):
                ax.errorbar(line.sync_every, line["mean"] * scale, yerr=spread(line, scale),
                            marker="o", capsize=3, color=_ratio_color(ratio, ratios),
                            label=f"PruneFuse p={ratio:g}")
            counts += list(stats.n)
            if not baseline.empty:
                base = summarize(baseline, "method", value)
                ax.axhline(base["mean"].iloc[0] * scale, color=METHODS["baseline"].color,
                           linestyle=":", label=f"AL baseline (n={base.n.iloc[0]})")
            ax.set_xticks(sorted(last.sync_every.unique()))
            ax.set(title=f"{title} · b={100 * last.budget_fraction.iloc[0]:.1f} %",
                   xlabel="T_sync (sync_every; 0 = never)", ylabel=ylabel)
            if log:
                ax.set_yscale("log")
            ax.legend(fontsize=7)
    devices = ", ".join(sorted(pruned.device.unique()))
    footer(fig, pruned, counts, f"Last budget; test split, final epoch; error bars: ± std over "
                                f"seeds. Unit: {UNIT}. Wall-clock on {devices}.")
    return fig


def tsync_accuracy_and_cost(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """The extended paper's trade-off: at the last budget, PruneFuse's final target accuracy,
    its data-selection MACs and seconds against T_sync (``sync_every``, 0 = never), a line
    per p (fused, distilled targets; selectors started from their initialisation), the AL
    baseline dotted; one row of panels per (target arch, metric) with several T_sync."""
    return per_dataset(table, "tsync_accuracy_and_cost", out_dir, _sync_accuracy_and_cost)
