"""The plumbing every figure of ``pf.analysis.figures`` and ``companion_figures`` shares.

A figure is drawn per dataset (``per_dataset``) onto a grid of panels (``panel_grid``),
captioned with the dataset, target and seed counts (``footer``) and saved as PNG and
PDF (``save``); tables of mean ± std cells (``cell_table``) are written as CSV and
Markdown (``write_table``). Figures are
matplotlib ``Figure`` objects on the Agg canvas, never pyplot, so a notebook that uses
them keeps its own backend and style. A drawing function returns either a figure or a
one-line reason why there is nothing to draw (``Drawing``). One-run plots for notebooks
are pyplot figures instead (``notebook_figure``), so that they show inline.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import matplotlib.style
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pf.data import DATASET_TITLES
from pf.analysis.results import mean_std

__all__ = ["STYLE", "PANEL_SIZE", "ACCURACY", "BUDGET", "Drawing", "panel_grid", "legend",
           "notebook_figure", "footer", "save", "per_dataset", "spread", "cell_table",
           "write_table"]

STYLE = "seaborn-v0_8-whitegrid"  # seaborn's look, applied per figure, never globally
PANEL_SIZE = (4.4, 3.4)  # inches per panel
ACCURACY = "target test accuracy (%)"
BUDGET = "labeled budget (% of training set)"
Drawing = Figure | str  # a figure, or the reason there is none
LEGEND_INSIDE = 6  # entries a legend may hold inside its panel without hiding the data


def panel_grid(count: int, columns: int = 3) -> tuple[Figure, list]:
    """A figure with exactly ``count`` axes, up to ``columns`` per row, in reading order."""
    columns = min(count, columns)
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows))
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(rows, columns, squeeze=False).ravel())
    for unused in axes[count:]:
        unused.remove()  # a last row that is not full would otherwise show empty axes
    return fig, axes[:count]


def legend(ax) -> None:
    """The panel's legend: inside when it is short; with more than ``LEGEND_INSIDE``
    entries, to the right of the panel with its labels wrapped, the figure widened by the
    legend's width so that the panel keeps its size."""
    handles, labels = ax.get_legend_handles_labels()
    if len(labels) <= LEGEND_INSIDE:
        ax.legend(fontsize=7)
        return
    box = ax.legend(handles, [textwrap.fill(label, 40) for label in labels], fontsize=7,
                    loc="upper left", bbox_to_anchor=(1.02, 1))
    fig = ax.figure
    fig.set_figwidth(fig.get_figwidth()
                     + box.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi)


def notebook_figure(figsize: tuple[float, float]) -> Figure:
    """An empty pyplot figure, which a notebook shows inline, for one-run plots.

    Create it before entering a style context and add the axes inside: the notebook's
    backend loads with the first pyplot figure and switches interactive mode on, and a
    style context around that moment would switch it off again on exit, so that no later
    figure of the session would show.
    """
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def footer(fig: Figure, runs: pd.DataFrame, counts, extra: str = "") -> None:
    """Caption the figure (dataset, target, seeds per point, ``extra``) and lay it out."""
    low, high = int(min(counts)), int(max(counts))
    datasets = sorted(DATASET_TITLES.get(name, name) for name in runs.dataset.unique())
    text = (f"Dataset {', '.join(datasets)}; target "
            f"{', '.join(sorted(runs.arch.unique()))}; seeds per point: n="
            f"{low if low == high else f'{low}-{high}'}. {extra}")
    lines = textwrap.wrap(text, int(fig.get_figwidth() * 19))  # ~19 characters per inch at 7 pt
    height = 0.1 + 0.14 * len(lines)
    fig.set_figheight(fig.get_figheight() + height)
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, ha="left", va="bottom", color="0.25")
    fig.tight_layout(rect=(0, height / fig.get_figheight(), 1, 1))


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem``.png and ``stem``.pdf."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"
    fig.savefig(png, dpi=200)
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
        with matplotlib.style.context(STYLE):
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
