"""Recording runs and reading them back: metrics.json, and the table made from many.

A run directory is complete exactly when its ``metrics.json`` exists: the file is
written to a temporary name and renamed into place at the end of the run, so a killed
run never leaves a half-written one behind.

``run_table`` and ``round_table`` show one run; ``collect`` turns a tree of run
directories into one pandas table, a row per (run, round), and ``collect_scores`` the
data-pruning runs into a row per run with their score correlations; ``summarize`` gives
mean, std and seed count per group, and ``mean_std`` the text the tables print ("93.40 ±
0.11 (n=3)").

    table = collect("results")
    summarize(table, ["method", "prune_ratio", "labeled"])
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import torch

import pf
from pf.config import Config
from pf import provenance

__all__ = ["METRICS_FILE", "COLUMNS", "SCORE_COLUMNS", "SCORE_NAMES", "write_json", "read_metrics",
           "environment", "run_label", "scoring_label", "run_table", "round_table", "collect",
           "collect_scores", "summarize", "mean_std"]

METRICS_FILE = "metrics.json"
REQUIRED_KEYS = ("schema", "config", "rounds", "environment")


def write_json(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as JSON to ``path`` atomically (temp file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                     suffix=".tmp", delete=False) as handle:
        json.dump(payload, handle, indent=1)
        handle.write("\n")
    os.replace(handle.name, path)
    return path


def read_metrics(run_dir: str | Path) -> dict:
    """Load a run's metrics.json; raises ValueError if it is missing keys or unreadable."""
    path = Path(run_dir) / METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable metrics file ({error})") from None
    missing = [k for k in REQUIRED_KEYS if k not in metrics]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    return metrics


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    """Versions, code commit and hardware, stored with every run.

    ``git_commit`` ends in "+dirty" when the files that compute results differ from the
    commit (``pf.provenance``), which ``git_dirty`` and ``dirty_files`` say too; ``lock``
    is the environment lock's identity and whether the installed packages match it.
    """
    import torchvision

    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    code = provenance.code_state()
    return {
        "pf": pf.__version__,
        "git_commit": code["git_commit"] + ("+dirty" if code["git_dirty"] else ""),
        "git_dirty": code["git_dirty"],
        "dirty_files": code["dirty_files"],
        "lock": provenance.lock_state(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
        "device_name": hardware,
        "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------------------------------
# Reading many runs back
# ---------------------------------------------------------------------------------------

# The phases a round records MACs and seconds for; collect() names its columns after them.
PHASES = ("data_selection", "selector_training", "pool_scoring", "target_training")
COLUMNS = [  # collect()'s columns, in order; its docstring says what each holds
    "run_dir", "sweep", "method", "label", "dataset", "arch", "selector_arch",
    "selector_params", "target_params", "prune_ratio", "proxy_arch", "metric", "fusion", "kd",
    "rest", "importance", "sync_every", "selector_start",
    "seed", "round", "labeled", "prune_rate", "selection", "score",
    "train_size", "budget_fraction", "target_accuracy", "selector_accuracy", "epochs", "curve",
    "curve_epochs",
    *(f"{phase}_macs" for phase in PHASES), *(f"{phase}_seconds" for phase in PHASES),
    "device", "git_commit",
]
_DEFAULTS = Config()
NAN = float("nan")
SCORE_NAMES = {"du": "DU", "tdds": "TDDS", "el2n": "EL2N", "forgetting": "forgetting"}


# The settings a run's label names when they differ from the default: PruneFuse's recipe,
# and the selector's start, the one SVP shares (pf.methods).
RECIPE = ("rest", "importance", "prune_steps", "fusion_variant", "sync_every", "selector_start",
          "fuse_into")
RECIPE_NAMES = {"sync_every": "T_sync"}  # the extended paper's name


def run_label(method: str, prune_ratio: float = NAN, proxy_arch: str = "", fusion: bool = True,
              kd: bool = True, **recipe) -> str:
    """The name a run goes by in legends and tables: "AL baseline", "SVP resnet20",
    "PruneFuse p=0.5", with departures from the default recipe (``RECIPE``: ``recipe``'s
    values unlike ``Config``'s defaults) in brackets, e.g. "PruneFuse p=0.5 (no fusion,
    no KD)", "PruneFuse p=0.5 (T_sync=1)", "SVP resnet8 (selector_start=warm)"."""
    if method == "baseline":
        return "AL baseline"
    changes = [] if method == "svp" else [text for text, changed in (
        ("no fusion", not fusion), ("no KD", not kd)) if changed]
    named = {key: value for key, value in recipe.items()
             if method != "svp" or key == "selector_start"}  # a proxy is never pruned nor fused
    changes += [f"{RECIPE_NAMES.get(key, key)}={value}" for key, value in named.items()
                if value != getattr(_DEFAULTS, key)]
    name = f"SVP {proxy_arch}" if method == "svp" else f"PruneFuse p={prune_ratio:g}"
    return name + (f" ({', '.join(changes)})" if changes else "")


def scoring_label(scores: dict) -> str:
    """How a data-pruning run scored its samples, from its metrics' ``scores`` block:
    "DU, full run", "DU, kNN k=10 from 20 %", "TDDS, GNN k=20 from 10 %"; kNN with
    exp(-distance) weights reads "kNN-exp". TDDS names its span ("TDDS (last 10
    epochs)"), so that runs scoring other epochs are never averaged together; runs from
    before the span existed scored every epoch and read plain "TDDS"."""
    name = SCORE_NAMES[scores["score"]]
    if scores.get("tdds_span"):
        name = f"{name} ({scores['tdds_span']} {scores['tdds_span_epochs']} epochs)"
    if scores["source"] == "full":
        return f"{name}, full run"
    how = {"knn": "kNN-exp" if scores["knn_weighting"] == "exp" else "kNN",
           "gnn": "GNN"}[scores["extrapolation"]]
    share = 100 * scores["scored"] / scores["train_size"]
    return f"{name}, {how} k={scores['knn_k']} from {share:.3g} %"


def _rows(metrics: dict, run_dir: str, sweep: str) -> list[dict]:
    """One row per round of one run's metrics (see ``collect`` for the columns)."""
    config, networks, environment_ = metrics["config"], metrics["networks"], metrics["environment"]
    method = metrics["method"]
    pruned = method == "prunefuse"
    train_size = metrics["dataset"]["train_size"]
    rows = []
    for record in metrics["rounds"]:
        target, selector = record["target"], record["selector"]
        # What the target's training did, from the round itself: baseline and SVP targets
        # are never fused nor distilled, whatever their config's (unused) flags say.
        fusion, kd = target["init"] == "fused", bool(target["kd"])
        if "selection" in record:  # a data-pruning round (pf.prune_data): by score or random
            label = scoring_label(metrics["scores"]) if record["selection"] == "score" else "random"
        else:
            label = run_label(method, config["prune_ratio"], config["proxy_arch"], fusion, kd,
                              **{key: config.get(key, getattr(_DEFAULTS, key)) for key in RECIPE})
        rows.append({
            "run_dir": run_dir, "sweep": sweep, "method": method,
            "label": label,
            "dataset": config["dataset"], "arch": config["arch"],
            "selector_arch": networks["selector"]["arch"],
            "selector_params": networks["selector"]["params"],
            "target_params": networks["target"]["params"],
            "prune_ratio": config["prune_ratio"] if pruned else NAN,
            "proxy_arch": config["proxy_arch"] if method == "svp" else NAN,
            "metric": config["metric"], "fusion": fusion, "kd": kd,
            "rest": config["rest"] if pruned else NAN,
            "importance": config["importance"] if pruned else NAN,
            "sync_every": config.get("sync_every", _DEFAULTS.sync_every) if pruned else NAN,
            "selector_start": (NAN if method == "baseline"
                               else config.get("selector_start", _DEFAULTS.selector_start)),
            "seed": metrics["seed"], "round": record["round"], "labeled": record["labeled"],
            # Data-pruning runs (pf.prune_data) keep a fraction by score or at random.
            "prune_rate": record.get("prune_rate", NAN), "selection": record.get("selection", NAN),
            "score": metrics["scores"]["score"] if "selection" in record else NAN,
            "train_size": train_size, "budget_fraction": record["labeled"] / train_size,
            "target_accuracy": target["test_accuracy"],
            "selector_accuracy": NAN if selector is None else selector["test_accuracy"],
            "epochs": len(target["train_loss"]), "curve": list(target["curve"]),
            # Older records evaluated after every epoch and did not list the epochs.
            "curve_epochs": list(target.get("curve_epochs",
                                            range(1, len(target["curve"]) + 1))),
            **{f"{phase}_macs": record["macs"][phase] for phase in PHASES},
            **{f"{phase}_seconds": record["seconds"][phase] for phase in PHASES},
            "device": environment_["device_name"], "git_commit": environment_["git_commit"],
        })
    return rows


def run_table(metrics: dict | str | Path) -> pd.DataFrame:
    """One run's rows of the ``collect`` table (same columns; ``run_dir`` is ".").

    ``metrics`` is what ``run_experiment`` returns, or a run folder holding metrics.json.
    """
    if not isinstance(metrics, dict):
        metrics = read_metrics(metrics)
    return pd.DataFrame(_rows(metrics, ".", ""), columns=COLUMNS)


def round_table(metrics: dict | str | Path) -> pd.DataFrame:
    """One run's rounds, indexed by round: budget, selector and target accuracy (final
    epoch, fraction in [0, 1]) and the data-selection cost that chose each labeled set;
    ``metrics`` as for ``run_table``."""
    columns = ["round", "labeled", "budget_fraction", "selector_accuracy", "target_accuracy",
               "data_selection_macs", "data_selection_seconds", "target_training_seconds"]
    return run_table(metrics)[columns].set_index("round")


def collect(results_dir: str | Path) -> pd.DataFrame:
    """Every finished run under ``results_dir`` as a table with one row per (run, round).

    Walks ``results_dir`` for ``metrics.json`` files, skipping hidden folders (e.g.
    ``.ipynb_checkpoints``) and hidden temp files; a file that ``read_metrics`` rejects or
    whose rounds lack a field is skipped with a warning. Columns (``COLUMNS``, in order):

    - ``run_dir``: the run folder relative to ``results_dir`` ("." for ``results_dir``
      itself); ``sweep``: its first path component, "" when the run sits directly there;
    - ``method`` (baseline | svp | prunefuse), ``label`` (``run_label``), ``dataset`` (the
      name the run was configured with, e.g. cifar10_jpeg, not where it was read from),
      ``arch`` (the target), ``selector_arch``, ``selector_params``, ``target_params``;
    - ``prune_ratio``, ``rest``, ``importance``, ``sync_every`` (T_sync): NaN unless
      PruneFuse; ``proxy_arch``: NaN unless SVP; ``selector_start``: NaN for the baseline;
      ``metric``; ``fusion``/``kd``: whether the target was fused/distilled;
    - ``seed``, ``round``, ``labeled`` (TOTAL labeled count), ``prune_rate``,
      ``selection`` (score | random) and ``score`` (du | tdds | el2n | forgetting):
      data-pruning runs only, else NaN; ``train_size``, ``budget_fraction`` (= labeled /
      train_size); a data-pruning round's ``label`` is ``scoring_label`` or "random";
    - ``target_accuracy``, ``selector_accuracy`` (NaN in rounds without a selector),
      test split, final epoch, fraction in [0, 1]; ``epochs`` (the target's training
      epochs), ``curve`` (its test accuracy after the epochs ``curve_epochs`` lists,
      counted from 1: every epoch, or every ``eval_every``-th and the last);
    - ``{data_selection,selector_training,pool_scoring,target_training}_macs`` (MACs,
      1 multiply-add = 1) and the matching ``*_seconds``;
    - ``device`` (the hardware's name) and ``git_commit``.
    """
    return pd.DataFrame(_walk(results_dir, _rows), columns=COLUMNS)


def _walk(results_dir: str | Path, rows_of) -> list[dict]:
    """``rows_of(metrics, run_dir, sweep)`` for every run under ``results_dir``, joined.

    Hidden folders (e.g. ``.ipynb_checkpoints``) are skipped; a metrics file that
    ``read_metrics`` rejects, or whose ``rows_of`` misses a field, is skipped with a warning.
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
            rows += rows_of(read_metrics(path.parent), relative.as_posix(),
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


def _score_rows(metrics: dict, run_dir: str, sweep: str) -> list[dict]:
    """The one row of a data-pruning run for ``collect_scores``; none for other runs."""
    if "scores" not in metrics:
        return []
    scores, environment_ = metrics["scores"], metrics["environment"]
    return [{
        "run_dir": run_dir, "sweep": sweep, "dataset": metrics["config"]["dataset"],
        "arch": metrics["config"]["arch"], "seed": metrics["seed"],
        "label": scoring_label(scores), "subset_fraction": scores["scored"] / scores["train_size"],
        **{key: scores[key] for key in (
            "score", "source", "extrapolation", "knn_k", "knn_weighting", "scored", "train_size",
            "pearson", "spearman", "pearson_scored", "spearman_scored", "scoring_test_accuracy",
            "reference_test_accuracy")},
        "device": environment_["device_name"], "git_commit": environment_["git_commit"],
    }]


def collect_scores(results_dir: str | Path) -> pd.DataFrame:
    """Every finished data-pruning run under ``results_dir``, one row per run.

    Columns (``SCORE_COLUMNS``): where the run sits (as in ``collect``), ``dataset``,
    ``arch``, ``seed``; how it scored: ``score``, ``source`` (full | subset), ``label``
    (``scoring_label``), ``extrapolation``, ``knn_k`` and ``knn_weighting`` (None for a
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
