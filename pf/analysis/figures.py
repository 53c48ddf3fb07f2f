"""Every figure and table, regenerated from stored runs.

    make_figures("results/demo", "results/demo/figures")

reads every run under the results folder (``pf.analysis.results.collect`` and
``collect_scores``) and writes the paper's figures and main table
(``pf.analysis.budget_figures``: accuracy against budget and the main table;
``pf.analysis.paired_figures``: paired differences to the AL baseline and to random
selection, their table and the pairwise win/tie/loss matrix; ``pf.analysis.claims``: the
paper's four claims, each test with its verdict;
``pf.analysis.prunefuse_figures``: Figs. 3 to 5, the T_sync figure) and the companion
methods' (``pf.analysis.companion_figures``: accuracy per
selection metric, score-extrapolation correlations, accuracy against the data-pruning
rate), each figure as PNG and PDF, each sweep's apart when the folder holds several.
Each returns the files it wrote or the one-line reason it wrote none. Figures of a
single run, for the notebooks, are in ``pf.analysis.notebook_figures``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pf.analysis.budget_figures import accuracy_vs_budget, main_table
from pf.analysis.claims import claims_table
from pf.analysis.companion_figures import (accuracy_vs_prune_rate, correlation_table, pruning_table,
                                           score_correlation, selection_metrics_vs_budget)
from pf.analysis.prunefuse_figures import (fig3_selection_flops, fig4_fused_vs_scratch,
                                           fig5_prunefuse_vs_svp, tsync_accuracy_and_cost)
from pf.analysis.paired_figures import paired_differences_figure, paired_table, win_tie_loss
from pf.analysis.results import collect, collect_scores

__all__ = ["FigureKind", "FIGURES", "make_figures"]


def make_figures(results_dir: str | Path, out_dir: str | Path, fig4_budget: int | None = None,
                 only: Iterable[str] | None = None) -> dict[str, list[Path] | str]:
    """Collect the runs under ``results_dir`` and write every figure and table to
    ``out_dir``, the PruneFuse ones and the companion methods' (``pf.analysis.companion_figures``);
    returns, per name, the files written or the one-line reason for none. ``only`` names
    the figures and tables to make (default: all of them); an unknown name is a
    ValueError listing the known ones.

    Runs of different sweeps (the first folder level under ``results_dir``) are
    different experiments, with their own budgets and schedules, and are never averaged
    together: when there are several, each sweep's figures go to ``out_dir/<sweep>/``
    under the names "<sweep>/<figure>" (runs sitting directly in ``results_dir`` form
    one more group, drawn into ``out_dir`` itself).
    """
    table, scores = collect(results_dir), collect_scores(results_dir)
    only = [only] if isinstance(only, str) else None if only is None else list(only)
    sweeps = sorted(table.sweep.unique())
    if len(sweeps) <= 1:
        return _experiment_figures(table, scores, Path(out_dir), fig4_budget, only)
    made = {}
    for sweep in sweeps:
        drawn = _experiment_figures(table[table.sweep == sweep], scores[scores.sweep == sweep],
                                    Path(out_dir) / sweep, fig4_budget, only)
        made.update({f"{sweep}/{name}" if sweep else name: files for name, files in drawn.items()})
    return made


@dataclass(frozen=True)
class FigureKind:
    """One figure or table of ``pf figures``: its name (the files' stem), the runs it
    draws from ("learning": active-learning rounds, "pruning": data-pruning rounds,
    "scores": the runs' score summaries) and ``draw(rows, out_dir, **options)``, which
    returns the files it wrote or the one-line reason it wrote none; ``options`` names
    the ``make_figures`` options it takes (``fig4_budget`` as ``budget``)."""

    name: str
    rows: str
    draw: Callable[..., list[Path] | str]
    options: tuple[str, ...] = ()


FIGURES: dict[str, FigureKind] = {kind.name: kind for kind in (
    FigureKind("accuracy_vs_budget", "learning", accuracy_vs_budget),
    FigureKind("main_table", "learning", main_table),
    FigureKind("paired_differences", "learning", paired_differences_figure),
    FigureKind("paired_table", "learning", paired_table),
    FigureKind("win_tie_loss", "learning", win_tie_loss),
    FigureKind("claims", "learning", claims_table),
    FigureKind("fig3_selection_flops", "learning", fig3_selection_flops),
    FigureKind("fig4_fused_vs_scratch", "learning", fig4_fused_vs_scratch, ("budget",)),
    FigureKind("fig5_prunefuse_vs_svp", "learning", fig5_prunefuse_vs_svp),
    FigureKind("tsync_accuracy_and_cost", "learning", tsync_accuracy_and_cost),
    FigureKind("selection_metrics_vs_budget", "learning", selection_metrics_vs_budget),
    FigureKind("score_correlation", "scores", score_correlation),
    FigureKind("score_correlation_table", "scores", correlation_table),
    FigureKind("accuracy_vs_prune_rate", "pruning", accuracy_vs_prune_rate),
    FigureKind("pruning_table", "pruning", pruning_table),
)}


def _experiment_figures(table: pd.DataFrame, scores: pd.DataFrame, out_dir: Path,
                        fig4_budget: int | None,
                        only: list[str] | None) -> dict[str, list[Path] | str]:
    """The figures and tables named in ``only`` (None: all of ``FIGURES``) of one
    experiment's runs (``make_figures``)."""
    pruning = table.selection.notna()  # data pruning: its rounds are rates, not AL budgets
    rows = {"learning": table[~pruning], "pruning": table[pruning], "scores": scores}
    options = {"budget": fig4_budget}
    unknown = [name for name in only or () if name not in FIGURES]
    if unknown:
        raise ValueError(f"only: unknown figure {unknown[0]!r}; known: {', '.join(FIGURES)}")
    return {name: kind.draw(rows[kind.rows], out_dir, **{key: options[key] for key in kind.options})
            for name, kind in FIGURES.items() if only is None or name in only}
