"""Runs read back as tables: one run's rounds, and the table made from many.

Each run folder's record (``pf.experiments.record``) is read as written, labels
included; a folder without a finished record is not a run.

``run_table`` and ``round_table`` show one run, and ``readable`` any table as a notebook
shows it (%, MACs in a named unit, no float noise); ``collect`` turns a tree of run
directories into one pandas table, a row per (run, round), and ``collect_scores`` the
data-pruning runs into a row per run with their score correlations; ``summarize`` gives
mean, std and seed count per group, and ``mean_std`` the text the tables print ("93.40 ±
0.11 (n=3)").

    table = collect("results")
    summarize(table, ["method", "prune_ratio", "labeled"])
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from pf.experiments.methods import METHODS
from pf.experiments.record import (METRICS_FILE, OVERLOADED, UNDER_LOAD_FILE, RunRecord,
                                   hardware_name, read_record)

__all__ = ["COLUMNS", "SCORE_COLUMNS", "run_table", "round_table", "readable", "collect",
           "collect_scores", "summarize", "mean_std"]


# ---------------------------------------------------------------------------------------
# Reading many runs back
# ---------------------------------------------------------------------------------------

# The phases a round records MACs and seconds for; collect() names its columns after them.
TABLE_PHASES = ("data_selection", "selector_training", "pool_scoring", "target_training")
COLUMNS = [  # collect()'s columns, in order; its docstring says what each holds
    "run_dir", "sweep", "experiment", "method", "label", "dataset", "arch", "selector_arch",
    "selector_params", "target_params", "prune_ratio", "proxy_arch", "metric", "fusion", "kd",
    "rest", "importance", "sync_every", "selector_start",
    "seed", "round", "labeled", "removed_fraction", "selection", "score",
    "train_size", "test_size", "budget_fraction", "target_accuracy", "selector_accuracy",
    "epochs", "curve", "curve_epochs",
    *(f"{phase}_macs" for phase in TABLE_PHASES), *(f"{phase}_seconds" for phase in TABLE_PHASES),
    "cpu_load", "under_load", "device", "git_commit",
]
NAN = float("nan")
# The settings a method reads, shown in their columns (NaN where the run's method does not).
METHOD_SETTINGS = ("prune_ratio", "proxy_arch", "rest", "importance", "sync_every",
                   "selector_start")


def _rows(record: RunRecord, run_dir: str, sweep: str) -> list[dict]:
    """One row per round of one run's record (see ``collect`` for the columns)."""
    config, networks, environment = record.config, record.networks, record.environment
    method = METHODS.get(record.method)  # None for data pruning
    reads = method.reads if method else ()
    train_size = record.dataset.train_size
    rows = []
    for step in record.rounds:
        target, selector = step.target, step.selector
        rows.append({
            "run_dir": run_dir, "sweep": sweep, "experiment": record.experiment,
            "method": record.method or NAN, "label": step.label,
            "dataset": config["dataset"], "arch": config["arch"],
            "selector_arch": networks["selector"].arch,
            "selector_params": networks["selector"].params,
            "target_params": networks["target"].params,
            **{key: config[key] if key in reads else NAN for key in METHOD_SETTINGS},
            # What the target's training did, from the round itself: baseline and SVP targets
            # are never fused nor distilled, whatever their config's (unused) flags say.
            "metric": config["metric"] if method else NAN,
            "fusion": target.init == "fused", "kd": bool(target.kd),
            "seed": record.seed, "round": step.round, "labeled": step.labeled,
            # Data-pruning runs (pf.experiments.data_pruning) keep a fraction by score or at random.
            "removed_fraction": NAN if step.removed_fraction is None else step.removed_fraction,
            "selection": NAN if step.selection is None else step.selection,
            "score": NAN if step.selection is None else record.scores.score,
            "train_size": train_size, "test_size": record.dataset.test_size,
            "budget_fraction": step.labeled / train_size,
            "target_accuracy": target.test_accuracy,
            "selector_accuracy": NAN if selector is None else selector.test_accuracy,
            "epochs": len(target.train_loss), "curve": list(target.curve),
            "curve_epochs": list(target.curve_epochs),
            **{f"{phase}_macs": step.macs[phase] for phase in TABLE_PHASES},
            **{f"{phase}_seconds": step.seconds[phase] for phase in TABLE_PHASES},
            "cpu_load": NAN if step.cpu_load is None else step.cpu_load,
            "device": hardware_name(environment), "git_commit": environment["git_commit"],
        })
    return rows


def run_table(record: RunRecord | str | Path) -> pd.DataFrame:
    """One run's rows of the ``collect`` table (same columns; ``run_dir`` is ".").

    ``record`` is what ``run_experiment`` returns, or a run folder holding metrics.json.
    """
    if not isinstance(record, RunRecord):
        record = read_record(record)
    return _mark_load(pd.DataFrame(_rows(record, ".", ""), columns=COLUMNS), set())


def round_table(record: RunRecord | str | Path) -> pd.DataFrame:
    """One run's rounds, indexed by round: budget, selector and target accuracy (final
    epoch, fraction in [0, 1]) and the data-selection cost that chose each labeled set;
    ``record`` as for ``run_table``."""
    columns = ["round", "labeled", "budget_fraction", "selector_accuracy", "target_accuracy",
               "data_selection_macs", "data_selection_seconds", "target_training_seconds"]
    return run_table(record)[columns].set_index("round")


# MAC prefixes a readable table may use, smallest first.
MAC_UNITS = ((1, "MACs"), (1e3, "kMACs"), (1e6, "MMACs"), (1e9, "GMACs"), (1e12, "TMACs"),
             (1e15, "PMACs"))


def _mac_unit(values: pd.DataFrame | pd.Series) -> tuple[float, str]:
    """The largest unit in which the smallest non-zero value is still at least 1."""
    nonzero = values.abs().where(values.abs() > 0).stack() if isinstance(
        values, pd.DataFrame) else values.abs()[values.abs() > 0]
    smallest = nonzero.min() if len(nonzero) else 1
    return [(scale, unit) for scale, unit in MAC_UNITS if scale <= smallest][-1]


def _shown(column: pd.Series | pd.DataFrame, kind: str) -> tuple:
    """``column`` as ``kind`` reads (accuracy | fraction | macs | seconds | other) and the
    suffix its header gets."""
    if kind in ("accuracy", "fraction"):
        return (100 * column).round(2), " (%)"
    if kind == "macs":
        scale, unit = _mac_unit(column)
        return (column / scale).round(2), f" ({unit})"
    if kind == "seconds":
        return column.round(1), " (s)"
    return column.round(4), ""


def _kind(name: str, values: pd.Series) -> str | None:
    """What a column holds, told by its name's ending; None for a column left as it is."""
    if not pd.api.types.is_float_dtype(values) and not name.endswith("_macs"):
        return None
    for ending, kind in (("_accuracy", "accuracy"), ("_fraction", "fraction"),
                         ("_macs", "macs"), ("_seconds", "seconds")):
        if name.endswith(ending):
            return kind
    return "other"


def readable(table: pd.DataFrame, kind: str | None = None) -> pd.DataFrame:
    """A copy of ``table`` as a reader meets it in a notebook: accuracies and fractions of
    the training set in % (two decimals), MACs in one unit named in the header (MACs,
    kMACs, ... PMACs: 1 multiply-add = 1, FLOPs = 2 x MACs), seconds to a tenth, other
    floats to four decimals (no float32 noise such as 0.98333335), underscores in headers
    as spaces, and no column that holds nothing.

    A column's kind is told by its name's ending (``_accuracy``, ``_fraction``, ``_macs``,
    ``_seconds``); ``kind`` gives the whole table one kind, for a pivot whose columns are
    labels (the unit of MACs then is the table's, and the columns' title says it, as
    "label: accuracy (%)" or "selector: TMACs").
    """
    shown = table.dropna(axis="columns", how="all")
    if kind is not None:
        values, suffix = _shown(shown, kind)
        what = f"{kind}{suffix}" if kind != "macs" else suffix.strip(" ()")
        name = shown.columns.name
        return values.rename_axis(columns=f"{name}: {what}" if name else what)
    columns = {}
    for name in shown.columns:
        kind_of = _kind(str(name), shown[name])
        if kind_of is None:
            columns[str(name).replace("_", " ")] = shown[name]
            continue
        # "selector_accuracy" stays whole; "_fraction", "_macs", "_seconds" become the unit
        stem = str(name) if kind_of in ("accuracy", "other") else str(name).removesuffix(
            f"_{kind_of}")
        values, suffix = _shown(shown[name], kind_of)
        columns[f"{stem.replace('_', ' ')}{suffix}"] = values
    return pd.DataFrame(columns, index=shown.index)


def collect(results_dir: str | Path) -> pd.DataFrame:
    """Every finished run under ``results_dir`` as a table with one row per (run, round).

    Walks ``results_dir`` for ``metrics.json`` files, skipping hidden folders (e.g.
    ``.ipynb_checkpoints``) and hidden temp files; a file that ``read_record`` rejects or
    whose rounds lack a field is skipped with a warning. Columns (``COLUMNS``, in order):

    - ``run_dir``: the run folder relative to ``results_dir`` ("." for ``results_dir``
      itself); ``sweep``: its first path component, "" when the run sits directly there;
    - ``experiment`` (active_learning | data_pruning), ``method`` (baseline | svp |
      prunefuse; NaN for data pruning), ``label`` (the round's, stored when the run was
      written), ``dataset`` (the name the run was configured with, e.g. cifar10_jpeg,
      not where it was read from), ``arch`` (the target), ``selector_arch``,
      ``selector_params``, ``target_params``;
    - ``prune_ratio``, ``rest``, ``importance``, ``sync_every`` (T_sync): NaN unless
      PruneFuse; ``proxy_arch``: NaN unless SVP; ``selector_start``: NaN for the baseline
      (each method's ``reads`` say which); ``metric`` (NaN for data pruning);
      ``fusion``/``kd``: whether the target was fused/distilled;
    - ``seed``, ``round``, ``labeled`` (TOTAL labeled count), ``removed_fraction``,
      ``selection`` (score | moderate | ccs | random) and ``score`` (du | tdds | el2n |
      forgetting): data-pruning runs only, else NaN; ``train_size``, ``test_size`` (the
      images each accuracy is measured on), ``budget_fraction`` (= labeled / train_size);
      a data-pruning round's ``label`` says how it kept its set, or "random";
    - ``target_accuracy``, ``selector_accuracy`` (NaN in rounds without a selector),
      test split, final epoch, fraction in [0, 1]; ``epochs`` (the target's training
      epochs), ``curve`` (its test accuracy after the epochs ``curve_epochs`` lists,
      counted from 1: every epoch, or every ``eval_every``-th and the last);
    - ``{data_selection,selector_training,pool_scoring,target_training}_macs`` (MACs,
      1 multiply-add = 1) and the matching ``*_seconds``;
    - ``cpu_load`` (the round's, ``pf.experiments.record.cpu_load``; NaN in older records)
      and ``under_load``: whether any round of the run was timed with the machine above
      ``OVERLOADED``, or its sweep's ``under_load.json`` names it (its seconds are then
      inflated; its MACs are not);
    - ``device`` (the hardware, as ``hardware_name`` names it) and ``git_commit``.
    """
    table = pd.DataFrame(_walk(results_dir, _rows), columns=COLUMNS)
    return _mark_load(table, _listed_under_load(Path(results_dir), table.sweep.unique()))


def _listed_under_load(root: Path, sweeps) -> set[str]:
    """The ``run_dir``s (relative to ``root``) that their sweep's ``UNDER_LOAD_FILE`` names."""
    listed = set()
    for sweep in sweeps:
        path = root / sweep / UNDER_LOAD_FILE
        if path.is_file():
            runs = json.loads(path.read_text())["runs"]
            listed |= {f"{sweep}/{run}" if sweep else run for run in runs}
    return listed


def _mark_load(table: pd.DataFrame, listed: set[str]) -> pd.DataFrame:
    """``table`` with ``under_load`` filled in per run (see ``collect``)."""
    loaded = table.cpu_load.gt(OVERLOADED).groupby(table.run_dir).transform("any")
    return table.assign(under_load=loaded.astype(bool) | table.run_dir.isin(listed))


def _walk(results_dir: str | Path, rows_of) -> list[dict]:
    """``rows_of(record, run_dir, sweep)`` for every run under ``results_dir``, joined.

    Hidden folders (e.g. ``.ipynb_checkpoints``) are skipped; a metrics file that
    ``read_record`` rejects, or whose ``rows_of`` misses a field, is skipped with a warning.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such results folder")
    rows = []
    for path in sorted(root.rglob(METRICS_FILE)):
        relative = path.parent.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        try:
            rows += rows_of(read_record(path.parent), relative.as_posix(),
                            relative.parts[0] if len(relative.parts) > 1 else "")
        except (ValueError, KeyError, TypeError) as error:
            warnings.warn(f"skipping {path}: {error!r}", stacklevel=3)
    return rows


SCORE_COLUMNS = [  # collect_scores()'s columns, in order
    "run_dir", "sweep", "dataset", "arch", "seed", "score", "source", "label", "extrapolation",
    "knn_k", "knn_weighting", "scored", "train_size", "subset_fraction", "pearson", "spearman",
    "pearson_scored", "spearman_scored", "scoring_test_accuracy", "reference_test_accuracy",
    "device", "git_commit",
]


def _score_rows(record: RunRecord, run_dir: str, sweep: str) -> list[dict]:
    """The one row of a data-pruning run for ``collect_scores``; none for other runs."""
    if record.scores is None:
        return []
    scores, environment = record.scores, record.environment
    return [{
        "run_dir": run_dir, "sweep": sweep, "dataset": record.config["dataset"],
        "arch": record.config["arch"], "seed": record.seed,
        "label": scores.label, "subset_fraction": scores.scored / scores.train_size,
        **{key: getattr(scores, key) for key in (
            "score", "source", "extrapolation", "knn_k", "knn_weighting", "scored", "train_size",
            "pearson", "spearman", "pearson_scored", "spearman_scored", "scoring_test_accuracy",
            "reference_test_accuracy")},
        "device": hardware_name(environment), "git_commit": environment["git_commit"],
    }]


def collect_scores(results_dir: str | Path) -> pd.DataFrame:
    """Every finished data-pruning run under ``results_dir``, one row per run.

    Columns (``SCORE_COLUMNS``): where the run sits (as in ``collect``), ``dataset``,
    ``arch``, ``seed``; how it scored: ``score``, ``source`` (full | subset), ``label``
    (as written with the run), ``extrapolation``, ``knn_k`` and ``knn_weighting`` (None for a
    full run), ``scored`` of ``train_size`` samples and their ``subset_fraction``; how
    well: ``pearson`` and ``spearman`` of extrapolated vs full-run scores on the samples
    the subset did not see, ``*_scored`` of the subset run's own scores on those it did
    (None without ``score_reference``), and the test accuracy of the scoring and
    reference runs; ``device`` and ``git_commit``. Correlations that are None in
    metrics.json are NaN here.
    """
    table = pd.DataFrame(_walk(results_dir, _score_rows), columns=SCORE_COLUMNS)
    correlations = ["pearson", "spearman", "pearson_scored", "spearman_scored"]
    table[correlations] = table[correlations].astype(float)
    return table


def summarize(table: pd.DataFrame, by: str | list[str],
              value: str = "target_accuracy") -> pd.DataFrame:
    """Mean, std (over seeds, ddof=1; NaN when n == 1) and n of ``value`` per group of ``by``.

    Returns the ``by`` columns followed by ``mean``, ``std`` and ``n`` (non-missing
    values), one row per group, sorted; NaN keys (e.g. ``prune_ratio`` of a baseline)
    form groups of their own. Every row is one sample, so ``by`` should name everything
    that distinguishes runs except the seed.
    """
    by = [by] if isinstance(by, str) else list(by)
    stats = table.groupby(by, dropna=False)[value].agg(["mean", "std", "count"])
    return stats.rename(columns={"count": "n"}).reset_index()


def mean_std(mean: float, std: float, n: int, scale: float = 100, digits: int = 2) -> str:
    """Format a summary as "93.40 ± 0.11 (n=3)", or "93.40 (n=1)" when there is no std;
    ``scale`` turns fractions into percent."""
    if n < 2 or pd.isna(std):
        return f"{mean * scale:.{digits}f} (n={n})"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f} (n={n})"
