"""The paper's Figs. 3 to 5 and the extended paper's T_sync trade-off, drawn from a table
of runs (``pf.analysis.results.collect``): ``fig3_selection_flops``,
``fig4_fused_vs_scratch``, ``fig5_prunefuse_vs_svp`` and ``tsync_accuracy_and_cost``, each
called by ``pf.analysis.figures.make_figures``. Each writes its figure as PNG and PDF and
returns the files it wrote, or a one-line reason when the results hold nothing to draw.

Why it works this way: docs/internals.md, "pf.analysis.prunefuse_figures".
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator, MultipleLocator, NullFormatter

from pf.analysis.point_labels import clear_labels, label_point
from pf.analysis.plotting import (ACCURACY, BUDGET, MAX_COLUMNS, Drawing, footer, mean_sd_lines,
                                  palette, panel_grid, per_dataset, ratio_color, sd_errorbar,
                                  spread)
from pf.analysis.results import summarize
from pf.experiments.methods import BASELINE, METHODS, PRUNEFUSE, SVP
from pf.experiments.record import OVERLOADED
from pf.flops import UNIT
from pf.select import STRATEGIES

__all__ = ["fig3_selection_flops", "fig4_fused_vs_scratch", "fig5_prunefuse_vs_svp",
           "tsync_accuracy_and_cost"]

SELECTION_FRACTIONS = (0.1, 0.3, 0.5)  # Fig. 3's budgets
FUSION_RATIOS = (0.5, 0.6)  # Fig. 4's pruning ratios
SVP_FRACTION = 0.5  # Fig. 5's budget
LABEL_DECADES = 0.3  # Fig. 5: about the width of a point's label, in decades of parameters
MIN_SPAN_IMAGES = 10  # Fig. 5's y-axis spans at least this many test images ...
MIN_SPAN = 2.0  # ... or this many percentage points where the test-set size is unknown
MAX_IMAGE_TICKS = 40  # Fig. 5 marks single test images on its y-axis up to this many


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

def _the_2024_method(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of runs without the extended paper's selector options: no synchronisation,
    no warm start (NaN, a baseline's or an older run's, counts as without)."""
    return runs[~(runs.sync_every > 0) & runs.selector_start.ne("warm")]


def _nearest(rows: pd.DataFrame, fractions) -> list[int]:
    """The labeled counts in ``rows`` whose budget fraction is nearest each of ``fractions``
    (ties go to the smaller budget), sorted, without repeats."""
    budgets = rows.drop_duplicates("labeled").sort_values("labeled")
    return sorted({int(budgets.labeled.iloc[(budgets.budget_fraction - f).abs().argmin()])
                   for f in fractions})


# ---------------------------------------------------------------------------------------
# Fig. 3: data-selection cost
# ---------------------------------------------------------------------------------------

# What Fig. 3 shows, a column of panels each: column, axis label (the unit's power of ten
# is added to the MACs' label), and whether the bars are scaled by a power of ten.
SELECTION_COSTS = (("data_selection_macs", "data-selection cost ({scale}MACs)", True),
                   ("data_selection_seconds", "data-selection wall-clock (s)", False))
RATIO_HEADROOM = 1.12  # Fig. 3's y-range over its tallest bar: room for the ratio above it


def _selection_panels(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per row of Fig. 3: per target, metric and p, PruneFuse's runs and the
    AL baseline's at the budgets nearest ``SELECTION_FRACTIONS`` that both reached after the
    random initial set, with ``who`` (the method's title) and ``budget`` ("20.9 %"); only
    where the baseline's selection costs MACs (random picks cost nothing: no ratio)."""
    baseline, pruned = runs[runs.method == BASELINE], runs[runs.method == PRUNEFUSE]
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
        rows = pd.concat([theirs, ours])
        rows = rows[rows.labeled.isin(_nearest(shared, SELECTION_FRACTIONS))]
        if summarize(rows[rows.method == BASELINE], "labeled", "data_selection_macs")[
                "mean"].min() > 0:
            rows = rows.assign(who=rows.method.map(lambda method: METHODS[method].title),
                               budget=[f"{100 * f:.1f} %" for f in rows.budget_fraction])
            panels.append((f"{arch} · {STRATEGIES[metric].label} · p={ratio:g}", rows))
    return panels


def _under_load_note(marked: str) -> str:
    """The caption's sentence for the seconds a figure marks (``marked``: how) as timed
    under load (``pf.analysis.results.collect``'s ``under_load``)."""
    return (f" {marked}: seconds timed under load (above {OVERLOADED:g} runnable threads per "
            "core, or named in the sweep's under_load.json), so inflated; their MACs are not.")


def _cost_bars(ax, rows: pd.DataFrame, value: str, scale: float) -> bool:
    """One panel of Fig. 3: ``value`` × ``scale`` of the baseline and of PruneFuse per budget
    (seaborn's ``barplot``: mean ± std over seeds), PruneFuse / baseline above each pair;
    seconds of runs timed under load (``under_load``) hatched. Returns whether any were."""
    rows = rows.assign(shown=rows[value] * scale).sort_values("labeled")
    order, methods = list(rows.budget.unique()), (BASELINE, PRUNEFUSE)
    sns.barplot(data=rows, x="budget", y="shown", hue="who", order=order,
                hue_order=[METHODS[method].title for method in methods],
                palette={METHODS[method].title: METHODS[method].color for method in methods},
                errorbar=sd_errorbar(rows, ["who", "budget"], "shown"), capsize=0.15,
                err_kws={"linewidth": 1}, ax=ax)
    hatched = False
    if value.endswith("_seconds") and "under_load" in rows:
        loaded = rows.groupby(["method", "budget"]).under_load.any()
        for bars, method in zip(ax.containers, methods):
            for bar, budget in zip(bars, order):
                if loaded.get((method, budget), False):
                    bar.set(hatch="///", edgecolor="white")
                    hatched = True
    stats = rows.groupby(["method", "budget"]).shown.agg(["mean", "std"]).fillna(0)
    ours, theirs = stats.loc[PRUNEFUSE].reindex(order), stats.loc[BASELINE].reindex(order)
    # Centred over the budget's pair of bars, above both bars and their error bars: a ratio
    # wider than one bar would otherwise run into its neighbour.
    top = np.maximum(ours["mean"] + ours["std"], theirs["mean"] + theirs["std"])
    for base_bar, bar, mean, base, height in zip(ax.containers[0], ax.containers[1],
                                                  ours["mean"], theirs["mean"], top):
        middle = (base_bar.get_x() + bar.get_x() + bar.get_width()) / 2
        ax.annotate(f"{mean / base:.2f}×", (middle, height), xytext=(0, 2),
                    textcoords="offset points", ha="center", va="bottom")
    ax.set_ylim(top=ax.get_ylim()[1] * RATIO_HEADROOM)
    return hatched


def _selection_flops(runs: pd.DataFrame) -> Drawing:
    runs = _the_2024_method(runs)
    # A protocol's planned costs (pf.flops, flops.ipynb) have MACs but no seconds.
    costs = [cost for cost in SELECTION_COSTS if cost[0] in runs]
    panels = _selection_panels(runs)
    if not panels:
        return ("no PruneFuse and AL-baseline runs with the same target and metric share a "
                "budget after the random initial set with a selection cost above 0")
    largest = max(rows[rows.method == BASELINE].groupby("labeled").data_selection_macs.mean()
                  .max() for _, rows in panels)
    exponent = 3 * max(0, int(math.log10(largest) // 3))
    # A row per p, its MACs beside its seconds; MACs alone (a protocol) in rows of three.
    fig, axes = panel_grid(len(costs) * len(panels),
                           columns=len(costs) if len(costs) > 1 else MAX_COLUMNS)
    hatched = False
    for index, (title, rows) in enumerate(panels):
        for ax, (value, ylabel, scaled) in zip(axes[index * len(costs):], costs):
            hatched |= _cost_bars(ax, rows, value, 10.0**-exponent if scaled else 1.0)
            ax.set(title=title, xlabel=BUDGET,
                   ylabel=ylabel.format(scale=f"$10^{{{exponent}}}$ " if exponent else ""))
    used = pd.concat([rows for _, rows in panels])
    wall_clock = ""
    if len(costs) > 1:
        wall_clock = f" Wall-clock on {', '.join(sorted(used.device.unique()))}."
    if hatched:
        wall_clock += _under_load_note("Hatched")
    counts = pd.concat([summarize(rows, ["who", "labeled"], "data_selection_macs").n
                        for _, rows in panels])
    footer(fig, used, counts,
           f"Unit: {UNIT}. Above each pair of bars: PruneFuse / AL baseline.{wall_clock}")
    return fig


def fig3_selection_flops(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """Paper Fig. 3: MACs (left) and wall-clock seconds (right) spent choosing the labeled
    set (``data_selection_macs``/``_seconds``), PruneFuse vs the AL baseline, grouped bars
    at the budgets nearest 10, 30 and 50 % (after the free random initial set), a row per
    p, the PruneFuse/baseline ratio on top of its bar; one legend below the panels."""
    return per_dataset(table, "fig3_selection_flops", out_dir, _selection_flops)


# ---------------------------------------------------------------------------------------
# Fig. 4: fused vs from-scratch training curves
# ---------------------------------------------------------------------------------------

def _curves(at: pd.DataFrame) -> pd.DataFrame:
    """``at``'s runs as a row per (run, evaluated epoch) with ``epoch`` and ``accuracy``
    (%), and the name of their line: the label, with the schedule where the runs differ in
    it and with the epochs tested where a label's runs were tested after different epochs
    (a mean over them would zigzag), and n."""
    at = at.assign(evaluated=at.curve_epochs.map(tuple))
    names = at.label + (", " + at.epochs.astype(str) + " epochs" if at.epochs.nunique() > 1
                        else "")
    tested = at.groupby(names).evaluated.transform("nunique") > 1
    names = names.where(~tested, names + ", tested after " + at.evaluated.map(len).astype(str)
                        + " epochs")
    at = at.assign(line=names + " (n=" + names.map(names.value_counts()).astype(str) + ")")
    curves = at.explode(["curve_epochs", "curve"])
    return curves.assign(epoch=curves.curve_epochs.astype(int),
                         accuracy=curves.curve.astype(float) * 100)


def _fused_vs_scratch(runs: pd.DataFrame, budget: int | None) -> Drawing:
    runs = _the_2024_method(runs)
    pruned = runs[(runs.method == PRUNEFUSE) & runs.prune_ratio.round(6).isin(FUSION_RATIOS)]
    panels = []
    for (arch, metric, ratio), group in pruned.groupby(["arch", "metric", "prune_ratio"]):
        shared = set(group[group.fusion].labeled) & set(group[~group.fusion].labeled)
        chosen = budget if budget is not None else max(shared, default=None)
        if chosen in shared:
            at = group[group.labeled == chosen]
            title = (f"{arch} · {STRATEGIES[metric].label} · p={ratio:g} · "
                     f"b={100 * at.budget_fraction.iloc[0]:.1f} %")
            panels.append((title, _curves(at)))
    if not panels:
        at = "" if budget is None else f" at budget {budget}"
        return f"no PruneFuse runs with both fusion=True and fusion=False at p=0.5 or 0.6{at}"
    colors = palette(sorted({line for _, curves in panels for line in curves.line}))
    fig, axes = panel_grid(len(panels))
    for ax, (title, curves) in zip(axes, panels):
        sns.lineplot(data=curves, x="epoch", y="accuracy", hue="line", errorbar="sd",
                     hue_order=sorted(curves.line.unique()), palette=colors, ax=ax)
        ax.set(title=title, xlabel="epoch", ylabel=ACCURACY)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    counts = [n for _, curves in panels
              for n in curves.drop_duplicates("run_dir").line.value_counts()]
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

def _one_test_image(runs: pd.DataFrame) -> tuple[float, int] | None:
    """(percentage points one test image is worth, the test-set size) of ``runs``, the
    smallest test set's where they differ; None when the table has no ``test_size``."""
    if "test_size" not in runs or runs.test_size.isna().any():
        return None
    images = int(runs.test_size.min())
    return 100 / images, images


def _show_resolution(ax, one_image: float | None) -> bool:
    """Fig. 5's y-axis spans at least ``MIN_SPAN_IMAGES`` test images (``MIN_SPAN`` pp
    without the test-set size), centred on what it shows, so that a difference of an image
    or two does not read as a ranking; with minor ticks one image apart where that makes
    at most ``MAX_IMAGE_TICKS`` ticks (returns whether it made them)."""
    span = MIN_SPAN_IMAGES * one_image if one_image else MIN_SPAN
    low, high = ax.get_ylim()
    if high - low < span:
        middle = (low + high) / 2
        low, high = middle - span / 2, middle + span / 2
        ax.set_ylim(low, high)
    if one_image and (high - low) / one_image <= MAX_IMAGE_TICKS:
        ax.yaxis.set_minor_locator(MultipleLocator(one_image))
        ax.tick_params(axis="y", which="minor", left=True, length=3, width=0.6, color="0.4")
        return True
    return False


def _label_sides(stats: pd.DataFrame) -> list[tuple[str, float, float, bool]]:
    """(label, parameters, accuracy in %, whether the label goes above) per point of a Fig. 5
    panel. Points closer than ``LABEL_DECADES`` along the (log) x-axis (a proxy often has
    about the parameters of a pruned selector) label away from each other, the closest
    pair first: the higher above, the lower below, or opposite a side already taken; the
    others above."""
    x, y = np.log10(stats.selector_params.to_numpy(float)), stats["mean"].to_numpy() * 100
    above = [None] * len(x)
    close = sorted((abs(x[i] - x[j]), i, j) for i in range(len(x)) for j in range(i + 1, len(x))
                   if abs(x[i] - x[j]) < LABEL_DECADES)
    for _, i, j in close:
        if above[i] is None and above[j] is None:
            above[i] = bool(y[i] >= y[j])
            above[j] = not above[i]
        elif above[i] is None or above[j] is None:
            fixed, free = (i, j) if above[j] is None else (j, i)
            above[free] = not above[fixed]
    return [(label, 10 ** x[index], y[index], above[index] is not False)
            for index, label in enumerate(stats.label)]


def _prunefuse_vs_svp(runs: pd.DataFrame) -> Drawing:
    # Fig. 5 compares selectors; ablations of the target's training belong to Fig. 4.
    runs = _the_2024_method(runs[(runs.method != PRUNEFUSE) | (runs.fusion & runs.kd)])
    panels = []
    for (arch, metric), group in runs.groupby(["arch", "metric"]):
        svp = group[group.method == SVP]
        shared = group[(group.method == PRUNEFUSE) & group.labeled.isin(svp.labeled)]
        if shared.empty:
            continue
        [chosen] = _nearest(shared, [SVP_FRACTION])
        stats = summarize(group[group.labeled == chosen],
                          ["method", "label", "selector_params", "budget_fraction"])
        panels.append((f"target {arch} · {STRATEGIES[metric].label}", stats))
    if not panels:
        return "no PruneFuse and SVP runs with the same target, metric and budget"
    resolution = _one_test_image(runs)
    one_image = resolution[0] if resolution else None
    fig, axes = panel_grid(len(panels))
    marked = False  # whether a panel marks single test images
    # matplotlib, not seaborn: each point is labelled from the statistics it shows.
    for ax, (title, stats) in zip(axes, panels):
        for method, points in stats.groupby("method"):
            ax.errorbar(points.selector_params, points["mean"] * 100, fmt="o", capsize=3,
                        yerr=spread(points, 100), color=METHODS[method].color,
                        label=METHODS[method].title)
        for label, x, y, above in _label_sides(stats):
            label_point(ax, label.removeprefix("PruneFuse ").removeprefix("SVP "), (x, y), above)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 3)))
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 10k, 30k, 100k
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.3)  # room for the point labels at both ends
        marked |= _show_resolution(ax, one_image)
        ax.set(title=f"{title} · b={100 * stats.budget_fraction.iloc[0]:.1f} %",
               xlabel="selector parameters", ylabel=ACCURACY)
    if resolution:
        scale = (f" One test image = {one_image:.2g} pp ({resolution[1]} test images): the "
                 f"y-axis spans at least {MIN_SPAN_IMAGES} images"
                 + (", its minor ticks one image apart." if marked else "."))
    else:
        scale = f" The y-axis spans at least {MIN_SPAN:g} pp."
    counts = pd.concat([stats.n for _, stats in panels])
    footer(fig, runs, counts, "Test split, final epoch; error bars: ± std over seeds; "
                              "PruneFuse points are labelled with p, SVP points with the proxy."
                              + scale)
    for ax in axes:  # once laid out: the spots are in points, the marks in data coordinates
        clear_labels(ax)
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


def _ring_under_load(ax, rows: pd.DataFrame, value: str) -> bool:
    """Ring each point of the T_sync figure's ``value`` panel (a line per ``line``, means
    over seeds) whose seconds include a run timed under load; returns whether any was."""
    if not value.endswith("_seconds") or "under_load" not in rows:
        return False
    points = rows.groupby(["line", "sync_every"]).agg(mean=(value, "mean"),
                                                       loaded=("under_load", "any"))
    loaded = points[points.loaded].reset_index()
    if loaded.empty:
        return False
    ax.scatter(loaded.sync_every, loaded["mean"], s=160, facecolors="none", edgecolors="0.2",
               linewidths=1.2, zorder=4, clip_on=False)  # a ring at the edge stays whole
    return True


def _sync_accuracy_and_cost(runs: pd.DataFrame) -> Drawing:
    ratios = sorted(runs.prune_ratio.dropna().unique())
    # Fused, distilled targets with selectors retrained from their start: T_sync alone varies.
    pruned = runs[(runs.method == PRUNEFUSE) & runs.fusion & runs.kd
                  & runs.selector_start.eq("init")]
    groups = []
    for (arch, metric), group in pruned.groupby(["arch", "metric"]):
        if group.sync_every.nunique() > 1:
            last = group[group.labeled == group.labeled.max()]
            baseline = runs[(runs.method == BASELINE) & (runs.arch == arch)
                            & (runs.metric == metric) & (runs.labeled == last.labeled.iloc[0])]
            groups.append((f"{arch} · {STRATEGIES[metric].label}", last, baseline))
    if not groups:
        return "no PruneFuse runs that differ in sync_every (T_sync) for one target and metric"
    colors = {f"PruneFuse p={ratio:g}": ratio_color(ratio, ratios) for ratio in ratios}
    fig, axes = panel_grid(len(SYNC_PANELS) * len(groups))
    counts, ringed, baseline_loaded = [], False, False
    for index, (title, last, baseline) in enumerate(groups):
        last = last.assign(line=[f"PruneFuse p={ratio:g}" for ratio in last.prune_ratio])
        panels = axes[index * len(SYNC_PANELS):(index + 1) * len(SYNC_PANELS)]
        for ax, (value, scale, ylabel, log) in zip(panels, SYNC_PANELS):
            mean_sd_lines(ax, last.assign(shown=last[value] * scale), "sync_every", "shown",
                          "line", hue_order=[line for line in colors if line in set(last.line)],
                          palette=colors, marker="o")
            counts += list(summarize(last, ["line", "sync_every"], value).n)
            ringed |= _ring_under_load(ax, last, value)
            if not baseline.empty:
                base = summarize(baseline, "method", value)
                ax.axhline(base["mean"].iloc[0] * scale, color=METHODS[BASELINE].color,
                           linestyle=":", label=f"AL baseline (n={base.n.iloc[0]})")
            ax.set_xticks(sorted(last.sync_every.unique()))
            ax.set(title=f"{title} · b={100 * last.budget_fraction.iloc[0]:.1f} %",
                   xlabel="T_sync (sync_every; 0 = never)", ylabel=ylabel)
            if log:
                ax.set_yscale("log")
        baseline_loaded |= "under_load" in baseline and bool(baseline.under_load.any())
    devices = ", ".join(sorted(pruned.device.unique()))
    wall_clock = f" Wall-clock on {devices}."
    if ringed:
        wall_clock += _under_load_note("Ringed")
    if baseline_loaded:
        wall_clock += " The AL baseline's seconds (dotted) were timed under load."
    footer(fig, pruned, counts, f"Last budget; test split, final epoch; error bars: ± std over "
                                f"seeds. Unit: {UNIT}.{wall_clock}")
    return fig


def tsync_accuracy_and_cost(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """The extended paper's trade-off: at the last budget, PruneFuse's final target accuracy,
    its data-selection MACs and seconds against T_sync (``sync_every``, 0 = never), a line
    per p (fused, distilled targets; selectors started from their initialisation), the AL
    baseline dotted, the seconds of runs timed under load ringed; one row of panels per
    (target arch, metric) with several T_sync."""
    return per_dataset(table, "tsync_accuracy_and_cost", out_dir, _sync_accuracy_and_cost)
