"""The plumbing every figure of ``pf.analysis.figures`` shares (``budget_figures``,
``prunefuse_figures``, ``companion_figures``).

A figure is drawn per dataset (``per_dataset``) in the package's look (``theme``: seaborn's
whitegrid at the text sizes below) onto a grid of panels (``panel_grid``); lines of a
mean ± std over seeds are seaborn's (``mean_sd_lines``), in colours a figure keeps for
each line in every panel (``palette``); ``footer`` captions the figure with the dataset,
target and seed counts, gathers the panels' legends into one legend beside or below the
panels, never over the data, and lays it out; ``save`` writes PNG and PDF. Tables of mean ±
std cells (``cell_table``) are written as CSV and Markdown (``write_table``). Figures are
matplotlib ``Figure`` objects on the Agg canvas, never pyplot (seaborn's figure-level
functions, ``relplot`` and ``FacetGrid``, make pyplot figures, so only its axes-level
functions are used), and the theme is a context, never global, so a notebook that uses
them keeps its own backend and style. A drawing function returns either a figure or a
one-line reason why there is nothing to draw (``Drawing``). One-run plots for notebooks
are pyplot figures instead (``notebook_figure``), so that they show inline.

One text size: every text is ``FONT_SIZE`` points, panel titles ``TITLE_SIZE``. What a
reader sees is points times pixels per inch: a PNG holds ``PNG_DPI`` pixels per inch, the
scale at which a notebook shows its own figures, and a figure is at most ``MAX_COLUMNS``
panels of ``PANEL_SIZE`` wide (about 1,000 px, which JupyterLab shows at 100 % unscaled),
so that text shows at one size (9 pt: 12.5 px), a single panel or many.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pf.data import dataset_title
from pf.analysis.results import mean_std

__all__ = ["FONT_SIZE", "TITLE_SIZE", "PANEL_SIZE", "MAX_COLUMNS", "PNG_DPI", "ACCURACY",
           "BUDGET", "RATIO_COLORS", "Drawing", "theme", "panel_grid", "palette", "ratio_color",
           "sd_errorbar", "mean_sd_lines", "notebook_figure", "footer", "save", "per_dataset",
           "spread", "cell_table", "write_table"]

FONT_SIZE = 9  # points: ticks, axis labels, legends, annotations, footers
TITLE_SIZE = 10  # points: panel titles
PANEL_SIZE = (3.4, 2.6)  # inches per panel
MAX_COLUMNS = 3  # panels per row: 3 x 3.4 in at PNG_DPI fits a notebook's width unscaled
PNG_DPI = 100  # pixels per inch of a PNG: a notebook's own figures' scale (figure.dpi)
ACCURACY = "target test accuracy (%)"
BUDGET = "labeled budget (% of training set)"
Drawing = Figure | str  # a figure, or the reason there is none
# PruneFuse's colour per pruning ratio, none of them the baseline's grey or SVP's orange.
RATIO_COLORS = ("tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                "tab:olive", "tab:cyan")
LEGEND_ROWS = 4  # rows a legend may take below a single column of panels; longer: beside
LABEL_WIDTH = 40  # characters of a legend label per line (wrapped beyond)
PAD = 0.08  # inches between the panels, the legend, the footer and the figure's edges
Y_AXIS = 0.7  # inches of a panel's width its y-axis (ticks, label) takes beside the title
SIZES = {"font.size": FONT_SIZE, "axes.labelsize": FONT_SIZE, "axes.titlesize": TITLE_SIZE,
         "xtick.labelsize": FONT_SIZE, "ytick.labelsize": FONT_SIZE,
         "legend.fontsize": FONT_SIZE, "legend.title_fontsize": FONT_SIZE}


@contextmanager
def theme():
    """The package's look for the figures drawn inside: seaborn's whitegrid style and
    "paper" line widths, every text at ``FONT_SIZE`` and titles at ``TITLE_SIZE``. A
    context, so that nothing changes for whoever draws outside it."""
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", rc=SIZES):
        yield


def panel_grid(count: int, columns: int = MAX_COLUMNS) -> tuple[Figure, list]:
    """A figure with exactly ``count`` axes, up to ``columns`` per row, in reading order."""
    columns = min(count, columns)
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows))
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(rows, columns, squeeze=False).ravel())
    for unused in axes[count:]:
        unused.remove()  # a last row that is not full would otherwise show empty axes
    return fig, axes[:count]


def palette(levels: Iterable, fixed: dict | None = None) -> dict:
    """A colour per level: ``fixed``'s colour where it has one, the others the colours of
    seaborn's "tab10" palette in turn; a figure gives each line one colour in all its
    panels, so that its one legend (``footer``) holds for every panel."""
    fixed = fixed or {}
    levels = list(dict.fromkeys(levels))
    free = [level for level in levels if level not in fixed]
    colours = dict(zip(free, sns.color_palette("tab10", n_colors=max(len(free), 1))))
    return {level: fixed.get(level, colours.get(level)) for level in levels}


def ratio_color(ratio: float, ratios: list) -> str:
    """PruneFuse's colour at ``ratio``, one of ``ratios`` (all the ratios drawn)."""
    return RATIO_COLORS[ratios.index(ratio) % len(RATIO_COLORS)]


def sd_errorbar(data: pd.DataFrame, by: list[str], value: str) -> str | None:
    """seaborn's ``errorbar`` for a mean ± std of ``value`` over the rows (seeds) of each
    ``by`` group: "sd" (ddof=1; none for a single seed), or None where every std is 0,
    since zero-length bars would still draw their caps."""
    return "sd" if data.groupby(by, dropna=False)[value].std().fillna(0).gt(0).any() else None


def mean_sd_lines(ax, data: pd.DataFrame, x: str, y: str, hue: str, **style) -> None:
    """A line per ``hue`` level through the mean of ``y`` at each ``x`` over ``data``'s rows
    (the seeds), with ± std error bars (``sd_errorbar``; seaborn's ``lineplot``) with caps.
    ``style``: further ``lineplot`` arguments (hue_order, palette, markers, ...)."""
    sns.lineplot(data=data, x=x, y=y, hue=hue, errorbar=sd_errorbar(data, [hue, x], y),
                 err_style="bars", err_kws={"capsize": 3}, ax=ax, **style)


def notebook_figure(figsize: tuple[float, float]) -> Figure:
    """An empty pyplot figure, which a notebook shows inline, for one-run plots.

    Create it before entering ``theme`` and add the axes inside: the notebook's backend
    loads with the first pyplot figure and switches interactive mode on, and a style
    context around that moment would switch it off again on exit, so that no later
    figure of the session would show.
    """
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def _wrap(text, width: float, separator: str = " ") -> None:
    """Break ``text`` (an artist) at ``separator`` into lines at most ``width`` pixels wide
    (a piece wider than that keeps a line of its own); the separator goes at a break."""
    renderer = text.figure.canvas.get_renderer()
    pieces = text.get_text().split(separator)
    lines = [pieces[0]]
    for piece in pieces[1:]:
        text.set_text(lines[-1] + separator + piece)
        if text.get_window_extent(renderer).width <= width:
            lines[-1] += separator + piece
        else:
            lines.append(piece)
    text.set_text("\n".join(lines))


def _shared_legend(fig: Figure, title: str | None):
    """One legend for the figure from every panel's labelled artists, a label drawn in
    several panels once, the panels' own legends removed; below the panels in as many
    columns as fit the figure's width or, for a single column of panels whose legend
    would take more than ``LEGEND_ROWS`` rows, beside them in as many columns as keep it
    no taller than the panels. Returns it and whether it is beside (None, False without
    labels)."""
    handles = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if not handles:
        return None, False
    labels = [textwrap.fill(label, LABEL_WIDTH) for label in handles]
    columns = fig.axes[0].get_subplotspec().get_gridspec().ncols
    renderer = fig.canvas.get_renderer()
    if columns == 1 and len(labels) > LEGEND_ROWS:
        for ncols in range(1, len(labels) + 1):
            key = fig.legend(handles.values(), labels, loc="upper right", ncols=ncols,
                             title=title)
            if key.get_window_extent(renderer).height <= fig.bbox.height:
                return key, True
            key.remove()
    for ncols in range(len(labels), 0, -1):
        key = fig.legend(handles.values(), labels, loc="lower center", ncols=ncols, title=title)
        if ncols == 1 or key.get_window_extent(renderer).width <= fig.bbox.width:
            return key, False
        key.remove()


def footer(fig: Figure, runs: pd.DataFrame, counts, extra: str = "",
           legend_title: str | None = None, shared_legend: bool = True) -> None:
    """Caption the figure (dataset, target, seeds per point, ``extra``), wrapped to its
    width, with panel titles wrapped at " · " to their axes' width; gather the panels'
    legends into one beside or below the panels (``shared_legend``; titled
    ``legend_title``), so that no legend covers data; and lay the figure out, grown by
    what the legend and the caption take so that the panels keep their size."""
    low, high = int(min(counts)), int(max(counts))
    datasets = sorted(dataset_title(name) for name in runs.dataset.unique())
    text = (f"Dataset {', '.join(datasets)}; target "
            f"{', '.join(sorted(runs.arch.unique()))}; seeds per point: n="
            f"{low if low == high else f'{low}-{high}'}. {extra}").strip()
    key, beside = _shared_legend(fig, legend_title) if shared_legend else (None, False)
    renderer, dpi = fig.canvas.get_renderer(), fig.dpi
    key_box = key.get_window_extent(renderer) if key is not None else None
    if beside:
        fig.set_figwidth(fig.get_figwidth() + key_box.width / dpi + PAD)
    for ax in fig.axes:
        _wrap(ax.title, (PANEL_SIZE[0] - Y_AXIS) * dpi, " · ")
    caption = fig.text(0, 0, text, ha="left", va="bottom", color="0.25")
    _wrap(caption, fig.bbox.width - 2 * PAD * dpi)
    caption_height = caption.get_window_extent(renderer).height / dpi + 2 * PAD
    below = key_box.height / dpi + PAD if key is not None and not beside else 0
    fig.set_figheight(fig.get_figheight() + caption_height + below)
    width, height = fig.get_figwidth(), fig.get_figheight()
    caption.set_position((PAD / width, PAD / height))
    if key is not None:
        key.set_bbox_to_anchor((1, 1) if beside else (0.5, caption_height / height),
                               transform=fig.transFigure)
    right = 1 - (key_box.width / dpi + PAD) / width if beside else 1
    fig.tight_layout(rect=(0, (caption_height + below) / height, right, 1))


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem``.png and ``stem``.pdf."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"
    fig.savefig(png, dpi=PNG_DPI)
    fig.savefig(pdf, metadata={"CreationDate": None})  # no timestamp: rebuilds diff cleanly
    return [png, pdf]


def per_dataset(table: pd.DataFrame, name: str, out_dir: str | Path,
                draw: Callable[[pd.DataFrame], Drawing]) -> list[Path] | str:
    """Run ``draw`` on each dataset's rows; save what it draws as ``name`` (with the
    dataset appended when there are several), or say why nothing was drawn."""
    # A figure the results no longer support must not survive from an earlier build.
    for pattern in (f"{name}.p[nd][gf]", f"{name}_*.p[nd][gf]"):
        for stale in Path(out_dir).glob(pattern):
            stale.unlink()
    if table.empty:
        return f"{name} not drawn: no runs found"
    datasets = sorted(table.dataset.unique())
    written, reasons = [], []
    for dataset in datasets:
        with theme():
            drawing = draw(table[table.dataset == dataset])
            if isinstance(drawing, str):
                reasons.append(drawing if len(datasets) == 1 else f"{dataset}: {drawing}")
                continue
            suffix = "" if len(datasets) == 1 else "_" + re.sub(r"[^A-Za-z0-9_-]+", "-", dataset)
            written += save(drawing, Path(out_dir) / f"{name}{suffix}")
    return written or f"{name} not drawn: {'; '.join(reasons)}"


def spread(stats: pd.DataFrame, scale: float):
    """Error-bar lengths for ``stats`` (a ``summarize`` result), None when every std is 0
    or missing: zero-length bars would still draw their caps."""
    lengths = stats["std"].fillna(0) * scale
    return lengths if lengths.any() else None


def cell_table(stats: pd.DataFrame, rows: list[str], column: str, order,
               label_name: str) -> pd.DataFrame:
    """``stats`` (a ``summarize`` result of an accuracy) as a wide table: a row per
    ``rows`` key, a column per value of ``column`` in ``order``, cells "mean ± std (n=…)"
    in %; the ``label`` row key is renamed ``label_name``."""
    cells = [mean_std(m, s, n) for m, s, n in zip(stats["mean"], stats["std"], stats.n)]
    wide = stats.assign(cell=cells).pivot_table(index=rows, columns=column, values="cell",
                                                aggfunc="first")
    return wide.reindex(columns=order).fillna("").rename_axis(index={"label": label_name},
                                                              columns=None)


def write_table(wide: pd.DataFrame, stem: Path, caption: str) -> list[Path]:
    """Write ``wide`` (index = row keys, columns = cells) as ``stem``.csv and as a
    Markdown table under ``caption`` in ``stem``.md."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, markdown = stem.parent / f"{stem.name}.csv", stem.parent / f"{stem.name}.md"
    wide.to_csv(csv)
    header = [*wide.index.names, *wide.columns]
    rows = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    keys = (key if isinstance(key, tuple) else (key,) for key in wide.index)
    rows += ["| " + " | ".join(map(str, (*key, *cells))) + " |"
             for key, cells in zip(keys, wide.to_numpy())]
    markdown.write_text(caption + "\n\n" + "\n".join(rows) + "\n")
    return [csv, markdown]
