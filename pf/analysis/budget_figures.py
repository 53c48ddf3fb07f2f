"""Accuracy against the labeled budget, the paper's main result, as a figure and as the
main table, drawn from a table of runs (``pf.analysis.results.collect``);
``pf.analysis.figures.make_figures`` calls both:

- ``accuracy_vs_budget``: the target's final test accuracy against the labeled budget
  (% of the training set), mean ± std over seeds, for PruneFuse at each p, the AL
  baseline and SVP, one panel per (target arch, selection metric), with random selection
  drawn dotted in it as the floor; PruneFuse's departures from its recipe (no fusion,
  T_sync, a warm selector, ...) in a panel per p beside it, with the recipe and the AL
  baseline to read them against, each departure in a colour, dash pattern and marker of
  its own (the same in every panel); one legend for all panels.
- ``main_table.csv`` and ``main_table.md``: a row per (dataset, arch, metric, method), a
  column per budget and one for the area under the accuracy-budget curve
  (``pf.analysis.paired.area_under_curve``), cells "mean ± std (n=seeds)" in %.

Both return the files written or, without runs, a one-line reason (see
``pf.analysis.plotting``); results with several datasets give one figure per dataset.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pf.analysis.plotting import (ACCURACY, BUDGET, Drawing, cell_table, footer, mean_sd_lines,
                                  panel_grid, per_dataset, ratio_color, write_table)
from pf.analysis.paired import AREA, area_under_curve
from pf.analysis.results import summarize
from pf.experiments.methods import BASELINE, METHODS, PRUNEFUSE
from pf.select import STRATEGIES

__all__ = ["accuracy_vs_budget", "main_table"]

# seaborn (dash pattern, marker) of a main line ("": solid), and of random selection's
# lines, the floor (dotted with crosses: no departure is dotted).
MAIN_STYLE = ("", "o")
FLOOR_STYLE = ((1, 1.5), "X")
FLOOR_ALPHA = 0.8
# (colour, dash pattern, marker) per departure from PruneFuse's recipe, in the order they
# first appear: colours none of the methods' or the ratios' lines use.
DEPARTURE_STYLES = (("black", (4, 1.5), "s"), ("darkgoldenrod", (6, 1.5, 1, 1.5), "^"),
                    ("teal", (8, 2), "v"), ("magenta", (5, 1, 1, 1, 1, 1), "D"),
                    ("saddlebrown", (10, 2, 3, 2), "P"), ("olivedrab", (12, 3), "*"))
AREA_COLUMN = "area (mean over budgets)"  # main_table's last column


def _reads_nothing(metric: str) -> bool:
    """Whether ``metric`` picks without reading the samples (random selection): the floor
    every other metric is measured against."""
    return STRATEGIES[metric].inputs == "none"


def _departure(line) -> str | None:
    """What a PruneFuse line departs from the recipe in (its label's parenthesis: "no
    fusion", "T_sync=1", ...); None for a recipe line, another method's, or the floor."""
    if line.method != PRUNEFUSE or line.floor or "(" not in line.label:
        return None
    return line.label[line.label.index("("):]


def _line_styles(lines: pd.DataFrame) -> dict[str, tuple]:
    """(colour, dashes, marker) per line of ``accuracy_vs_budget`` (``lines``: a row per
    line, sorted): the method's colour, PruneFuse's per p, solid with dots; random
    selection's lines (the floor) dotted with crosses; each departure from PruneFuse's
    recipe its own colour, dash pattern and marker, the same at every p."""
    ratios = sorted(lines.prune_ratio.dropna().unique())
    departures = list(dict.fromkeys(d for d in map(_departure, lines.itertuples()) if d))
    styles = {}
    for line in lines.itertuples():
        departure = _departure(line)
        if departure is not None:
            styles[line.line] = DEPARTURE_STYLES[departures.index(departure)
                                                 % len(DEPARTURE_STYLES)]
            continue
        color = (ratio_color(line.prune_ratio, ratios) if line.method == PRUNEFUSE
                 else METHODS[line.method].color)
        styles[line.line] = (color, *(FLOOR_STYLE if line.floor else MAIN_STYLE))
    return styles


def _budget_panels(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(title, its rows, the floor's rows) per panel of ``accuracy_vs_budget``: a panel per
    target and metric that reads the samples, with the target's random-selection rows as
    the floor (random selection gets a panel only for a target that has nothing else);
    then, per p with departures from PruneFuse's recipe, a panel of those, the recipe and
    the AL baseline, without the floor."""
    panels = []
    for arch, rows in runs.groupby("arch"):
        floor = rows[rows.floor]
        measured = rows.drop(floor.index)
        if measured.empty:
            panels += [(f"{arch} · {STRATEGIES[metric].label}", panel, floor.iloc[:0])
                       for metric, panel in floor.groupby("metric")]
        for metric, panel in measured.groupby("metric"):
            title = f"{arch} · {STRATEGIES[metric].label}"
            departs = panel.departure.notna()
            panels.append((title, panel[~departs], floor))
            for ratio, variants in panel[departs].groupby("prune_ratio"):
                reference = panel[~departs & ((panel.prune_ratio == ratio)
                                              | (panel.method == BASELINE))]
                panels.append((f"{title} · p={ratio:g} variants",
                               pd.concat([reference, variants]), floor.iloc[:0]))
    return panels


def _accuracy_vs_budget(runs: pd.DataFrame) -> Drawing:
    floor = runs.metric.map(_reads_nothing)
    runs = runs.assign(floor=floor, budget=runs.budget_fraction * 100,
                       accuracy=runs.target_accuracy * 100,
                       line=runs.label.where(~floor, runs.label + " · " + runs.metric.map(
                           lambda metric: STRATEGIES[metric].label)))
    runs = runs.assign(departure=[_departure(line) for line in runs.itertuples()])
    styles = _line_styles(runs.drop_duplicates("line").sort_values(
        ["floor", "method", "prune_ratio", "label"]))
    colors, dashes, markers = ({line: style[i] for line, style in styles.items()}
                               for i in range(3))
    panels = _budget_panels(runs)
    fig, axes = panel_grid(len(panels))
    for ax, (title, panel, floor_rows) in zip(axes, panels):
        for rows, alpha in ((panel, 1), (floor_rows, FLOOR_ALPHA)):
            if not rows.empty:  # seaborn maps a style variable's markers all filled or none
                mean_sd_lines(ax, rows, "budget", "accuracy", "line", style="line",
                              hue_order=[line for line in styles if line in set(rows.line)],
                              palette=colors, dashes=dashes, markers=markers, alpha=alpha)
        ax.set(title=title, xlabel=BUDGET, ylabel=ACCURACY)
    floor_note = (" Dotted with crosses: the same method with random selection, the floor."
                  if any(not rows.empty for *_, rows in panels) else "")
    variants_note = (" A \"variants\" panel: PruneFuse's departures from its recipe at one p,"
                     " beside the recipe and the AL baseline."
                     if runs.departure.notna().any() else "")
    footer(fig, runs, summarize(runs, ["arch", "metric", "line", "labeled"]).n,
           "Test split, final epoch; error bars: ± std over seeds." + floor_note + variants_note)
    return fig


def accuracy_vs_budget(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """Final target accuracy (mean ± std over seeds) against the labeled budget, one line
    per method (PruneFuse per p, AL baseline, SVP per proxy), one panel per (arch, metric)."""
    return per_dataset(table, "accuracy_vs_budget", out_dir, _accuracy_vs_budget)


def main_table(table: pd.DataFrame, out_dir: str | Path) -> list[Path] | str:
    """``main_table.csv`` and ``main_table.md``: a row per (dataset, arch, metric, method),
    a column per budget ("25000 (50.0 %)": TOTAL labeled count and its share of the
    training set) and one for the area under the accuracy-budget curve, cells "mean ±
    std (n=seeds)" of the final target accuracy in %."""
    if table.empty:
        return "main_table not written: no runs found"
    stats = summarize(table, ["dataset", "arch", "metric", "label", "labeled", "budget_fraction"])
    stats["budget"] = [f"{count} ({100 * fraction:.1f} %)"
                       for count, fraction in zip(stats.labeled, stats.budget_fraction)]
    order = [*stats.sort_values(["budget_fraction", "labeled"]).budget.unique(), AREA_COLUMN]
    areas = area_under_curve(table).assign(target_accuracy=lambda runs: runs[AREA] / 100)
    stats = pd.concat([stats, summarize(areas, ["dataset", "arch", "metric", "label"]).assign(
        budget=AREA_COLUMN)], ignore_index=True)
    wide = cell_table(stats, ["dataset", "arch", "metric", "label"], "budget", order, "method")
    caption = ("Target test accuracy (%, test split, final epoch), mean ± std over seeds "
               "(n = seeds); columns: TOTAL labeled count (% of the training set), and the "
               "area under the accuracy-budget curve divided by the budgets' range (the "
               "curve's mean accuracy).")
    return write_table(wide, Path(out_dir) / "main_table", caption)
