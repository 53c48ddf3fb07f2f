"""Figures for the notebooks: one run at a glance (``plot_run``), a grid of images
(``show_images``) and training curves (``plot_curves``). Each returns a pyplot figure, so
that a notebook shows it inline."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from pf.analysis.plotting import (ACCURACY, BUDGET, FONT_SIZE, PANEL_SIZE, TITLE_SIZE, footer,
                                  notebook_figure, theme)
from pf.analysis.results import run_table
from pf.experiments.methods import METHODS
from pf.experiments.record import RunRecord
from pf.flops import UNIT

__all__ = ["plot_run", "show_images", "plot_curves"]


def plot_run(record: RunRecord | str | Path) -> Figure:
    """One run at a glance: final test accuracy of the target and the selector against the
    budget, the target's per-epoch test accuracy at each budget, and the data-selection MACs.

    ``record`` is what ``run_experiment`` returns, or a run folder. A pyplot figure, so
    that a notebook shows it inline; returns it.
    """
    rounds = run_table(record)
    budget = rounds.budget_fraction * 100
    fig = notebook_figure((3 * PANEL_SIZE[0] + 1, PANEL_SIZE[1]))  # + the budgets' legend
    with theme():
        final, curves, selection = fig.subplots(1, 3)
        final.plot(budget, rounds.target_accuracy * 100, "o-", label=f"target {rounds.arch[0]}")
        final.plot(budget, rounds.selector_accuracy * 100, "s--",
                   label=f"selector {rounds.selector_arch[0]}")
        final.set(title=rounds.label[0], xlabel=BUDGET, ylabel="test accuracy (%), final epoch")
        final.legend()
        for share, curve, epochs in zip(budget, rounds.curve, rounds.curve_epochs):
            curves.plot(epochs, np.array(curve) * 100, label=f"{share:.1f} %")
        curves.set(title="target during training", xlabel="epoch", ylabel=ACCURACY)
        curves.legend(title="budget", loc="upper left", bbox_to_anchor=(1, 1))  # over no curve
        selection.bar([f"{share:.1f} %" for share in budget], rounds.data_selection_macs,
                      color=METHODS[rounds.method[0]].color)
        selection.set(title="spent choosing the labeled set", xlabel=BUDGET, ylabel="MACs")
        footer(fig, rounds, [1], f"Seed {rounds.seed[0]}. Unit: {UNIT}.", shared_legend=False)
    return fig


def show_images(split, indices, title: str = "", columns: int = 8) -> Figure:
    """A grid of ``split``'s images at ``indices`` with their labels (pyplot, for notebooks)."""
    indices = list(map(int, indices))
    rows = max(1, math.ceil(len(indices) / columns))
    # Each row leaves room above its images for their labels, clear of the row before.
    fig = notebook_figure((columns * 0.9, rows * 1.25 + 0.4))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    images = next(split.load([torch.tensor(indices)], False, None)).cpu()  # un-augmented
    for ax, index, image in zip(axes.ravel(), indices, images):
        ax.imshow(image[0] if image.shape[0] == 1 else image.permute(1, 2, 0),
                  cmap="gray_r" if image.shape[0] == 1 else None)
        ax.set_title(str(int(split.labels[index])), fontsize=FONT_SIZE)
    fig.suptitle(title, fontsize=TITLE_SIZE)
    fig.tight_layout(h_pad=1.5)
    return fig


def plot_curves(curves: dict[str, list[float]], title: str = "") -> Figure:
    """Test accuracy per epoch of several trainings, one line each (pyplot, for notebooks)."""
    fig = notebook_figure(PANEL_SIZE)
    with theme():
        ax = fig.subplots()
        for name, curve in curves.items():
            ax.plot(range(1, len(curve) + 1), np.array(curve) * 100, label=name)
        ax.set(title=title, xlabel="epoch", ylabel="test accuracy (%)")
        ax.legend()
        fig.tight_layout()
    return fig
