"""Sweeps: a YAML grid of experiments, each run as a papermill execution of a notebook.

``load_sweep`` reads a sweep file (a notebook, a preset, fixed parameters, a grid and
seeds) into validated runs (``RunSpec``); ``run_sweep`` runs every pending or failed one
through an executor (``pf.executors``: a local process pool or Slurm) with ``execute_run``,
each into its own folder ``<results>/<sweep>/<id>/``; ``run_status`` says whether a run is
done, failed or pending.

    pf sweep notebooks/sweeps/demo.yaml --dry-run  # the runs, their state and planned cost

Why it works this way: docs/internals.md, "pf.sweep".
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import yaml
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec

from pf.data import known_sizes
from pf.experiments.config import ConfigError, check_sizes, from_parameters, make_config
from pf.experiments.cost import planned_cost
from pf.paths import portable_path
from pf.provenance import dirty_warning
from pf.storage import write_json
from pf.experiments.reference_cache import reference_path
from pf.executors import NO_GPU, run_local, run_slurm, visible_gpus
from pf.experiments.record import (ERROR_FILE, METRICS_FILE, NOTEBOOK_FILE, PARAMS_FILE,
                                   RecordError, read_record)
from pf.train import resolve_device

__all__ = ["RunSpec", "load_sweep", "run_status", "execute_run", "run_sweep"]

SWEEP_KEYS = {"notebook", "preset", "parameters", "grid", "seeds", "name"}
KERNEL = "python3"  # papermill writes parameters for it; _SweepInterpreterKernel starts it
# The kernel app warns on every start that its local TCP sockets are unencrypted (jupyter's
# default transport); a sweep would print it once per run. Its errors still show.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
SUMMARY_FILE = "sweep.json"  # in the sweep's folder: how its runs ended
REFERENCE_CACHE = "reference-cache"  # inside the sweep's results folder


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: where it goes and what the notebook receives."""

    run_id: str
    run_dir: str  # absolute path of the run's folder
    notebook: str  # absolute path of the source notebook
    explicit: dict  # what the sweep set: preset, fixed parameters, grid values, seed
    parameters: dict  # the notebook's parameters: the resolved config and the output folder


# ---------------------------------------------------------------------------------------
# Reading a sweep file
# ---------------------------------------------------------------------------------------


def _fail(path: Path, message: str):
    raise ConfigError(f"{path.name}: {message}")


def _expand(subgrid: dict, path: Path) -> list[dict]:
    """The cartesian product of one sub-grid: every key maps to a list of values."""
    if not isinstance(subgrid, dict) or not subgrid:
        _fail(path, "each grid entry must be a non-empty mapping of key: [values], "
                    f"got {subgrid!r}")
    for key, values in subgrid.items():
        if not isinstance(values, list) or not values:
            _fail(path, f"grid key {key!r} needs a non-empty list of values, got {values!r}")
    keys = list(subgrid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*subgrid.values())]


def _slug(values: dict) -> str:
    """A readable, filesystem-safe rendering of the grid values, e.g. method=svp,seed=0."""
    text = ",".join(f"{key}={json.dumps(value, separators=(',', ':'))}".replace('"', "")
                    for key, value in values.items())
    return re.sub(r"[^A-Za-z0-9=,._+-]", "_", text)


def load_sweep(path: str | Path, results_dir: str | Path = "results") -> tuple[str, list[RunSpec]]:
    """Read a sweep file and return its name and every run, each config validated.

    Raises ``ConfigError`` (one line naming the file, and the run and parameter when one
    is at fault) before anything runs.
    """
    path = Path(path).resolve()
    try:
        sweep = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path.name}: cannot read sweep file ({type(error).__name__}: "
                          f"{str(error).splitlines()[0]})") from None
    if not isinstance(sweep, dict) or (unknown := set(sweep) - SWEEP_KEYS):
        _fail(path, f"unknown keys {sorted(unknown) if isinstance(sweep, dict) else sweep!r}; "
                    f"a sweep has {', '.join(sorted(SWEEP_KEYS))}")
    name = str(sweep.get("name", path.stem))
    notebook = (path.parent.parent / sweep.get("notebook", "prunefuse.ipynb")).resolve()
    if not notebook.is_file():
        _fail(path, f"notebook {notebook} does not exist")
    fixed = sweep.get("parameters") or {}
    seeds = sweep.get("seeds", [0])
    grid = sweep.get("grid") or [{}]
    if not isinstance(fixed, dict) or not isinstance(grid, list):
        _fail(path, "parameters must be a mapping and grid a list of mappings")
    if not isinstance(seeds, list) or not seeds:
        _fail(path, f"seeds must be a non-empty list, got {seeds!r}")
    combos = []  # (grid values, the seeds they run with)
    for subgrid in grid:
        own_seeds = seeds
        if isinstance(subgrid, dict) and "seed" in subgrid:
            subgrid = dict(subgrid)
            own_seeds = subgrid.pop("seed")
            if not isinstance(own_seeds, list) or not own_seeds:
                _fail(path, f"grid key 'seed' needs a non-empty list of seeds, got {own_seeds!r}")
        combos += [(combo, own_seeds) for combo in (_expand(subgrid, path) if subgrid else [{}])]
    # Seed by seed: a sweep stopped part-way holds every method of its first seeds, so
    # paired comparisons (same seed, same initial set) grow one seed at a time.
    ordered = list(dict.fromkeys([*seeds, *(seed for _, own in combos for seed in own)]))

    preset = sweep.get("preset", "paper")
    sweep_dir = Path(results_dir).resolve() / name
    runs, seen = [], set()
    for seed, (combo, own_seeds) in itertools.product(ordered, combos):
        if seed not in own_seeds:
            continue  # a sub-grid with seeds of its own
        varying = {**combo, "seed": seed}
        explicit = {"preset": preset, **fixed, **varying}
        try:
            config = make_config(preset, {**fixed, **varying})
            sizes = known_sizes(config.dataset)
            if sizes is not None:  # others: when pf run has loaded the dataset
                check_sizes(config, sizes[0])
        except ConfigError as error:
            _fail(path, f"run {_slug(varying)}: {error}")
        run_id = f"{_slug(varying)}-{config.digest()}"
        if run_id in seen:
            continue  # the same run listed by two sub-grids
        run_dir = sweep_dir / run_id
        parameters = {**config.to_dict(), "out_dir": ".", "progress": False}
        if config.needs_reference():  # from the run's own folder, where its notebook works
            cache = Path(config.reference_cache or sweep_dir / REFERENCE_CACHE).resolve()
            parameters["reference_cache"] = os.path.relpath(cache, run_dir)
        seen.add(run_id)
        runs.append(RunSpec(run_id, str(run_dir), str(notebook), explicit, parameters))
    return name, runs


# ---------------------------------------------------------------------------------------
# Running one run (the same function under every executor)
# ---------------------------------------------------------------------------------------


def run_status(run: RunSpec) -> str:
    """``done`` (a valid metrics.json), ``failed`` (error.json) or ``pending``."""
    run_dir = Path(run.run_dir)
    if (run_dir / METRICS_FILE).exists():
        try:
            read_record(run_dir)
            return "done"
        except RecordError:
            return "pending"
    return "failed" if (run_dir / ERROR_FILE).exists() else "pending"


class _UndeclaredParameters(logging.Filter):
    """Drops papermill's "Passed unknown parameter" warnings: a run passes its whole
    resolved config, while a notebook's parameters cell declares only the parameters it
    documents (``from_parameters`` reads the rest from the injected cell)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passed unknown parameter")


_UNDECLARED = _UndeclaredParameters()


class _SweepInterpreterKernel(AsyncKernelManager):
    """Starts ipykernel under ``sys.executable``, whatever kernel spec the name resolves to.

    jupyter_client looks a kernel name up on ``JUPYTER_PATH``, then in the user's and the
    system's folders: a ``python3`` spec there (``/usr/local/share/jupyter/kernels``,
    say, pointing at ``/usr/bin/python3``) would run the notebook in another environment,
    with other library versions or without pf at all. The sweep's own interpreter is the
    one whose versions it validated the configs with and records in each run.
    """

    @property
    def kernel_spec(self) -> KernelSpec:
        """The spec every kernel of a sweep starts from: this interpreter's ipykernel."""
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher",
                                "-f", "{connection_file}"],
                          display_name=f"Python ({sys.executable})", language="python")


def execute_run(run: RunSpec) -> dict:
    """Execute ``run``'s notebook with papermill unless it is already done; never raises
    for a failing run (its error goes to ``error.json``). Returns id, status, error."""
    import papermill

    logging.getLogger("papermill").addFilter(_UNDECLARED)  # once: the same filter object
    if run_status(run) == "done":
        return {"run_id": run.run_id, "status": "skipped", "error": None}
    run_dir = Path(run.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    (run_dir / METRICS_FILE).unlink(missing_ok=True)  # an invalid one from an older run
    write_json(run_dir / PARAMS_FILE, {"run_id": run.run_id, "explicit": run.explicit,
                                       "parameters": run.parameters,
                                       "notebook": portable_path(run.notebook)})
    try:
        papermill.execute_notebook(run.notebook, str(run_dir / NOTEBOOK_FILE),
                                   parameters=run.parameters, kernel_name=KERNEL,
                                   kernel_manager_class=_SweepInterpreterKernel,
                                   cwd=str(run_dir), progress_bar=False, log_output=False,
                                   extra_arguments=KERNEL_ARGUMENTS)
        read_record(run_dir)
    except Exception as error:  # noqa: BLE001 -- a failed run is recorded, the sweep goes on
        return _record_failure(run, _one_line(error))
    return {"run_id": run.run_id, "status": "done", "error": None}


def _record_failure(run: RunSpec, message: str) -> dict:
    """Write the run's ``error.json`` (message and the traceback being handled) and return
    its failed record: what a later sweep reads as a run to do again."""
    write_json(Path(run.run_dir) / ERROR_FILE, {"run_id": run.run_id, "error": message,
                                                "traceback": traceback.format_exc()})
    return {"run_id": run.run_id, "status": "failed", "error": message}


def _one_line(error: Exception) -> str:
    """The error a notebook cell raised, as one line (papermill wraps it in a long text)."""
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(error).__name__}: {error}"
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------


def _plan(runs: list[RunSpec], states: dict, echo) -> None:
    """List every run with its state and planned cost (``pf.experiments.cost``), then the total of
    the runs still to do: what a dry run shows before a GPU budget is spent. A reference
    run already cached, or computed by an earlier run of the list, is not counted again."""
    total, trained, unknown = 0, 0, 0
    references = set()
    for run in runs:
        config = from_parameters(run.parameters)
        reused = False
        if config.needs_reference():  # the cache's path is relative to the run's folder
            relative = reference_path(config, resolve_device(config.device).type)
            path = (Path(run.run_dir) / relative).resolve()
            reused = path in references or path.exists()
            if states[run.run_id] != "done":  # a finished run may predate the cache
                references.add(path)
        try:
            cost = planned_cost(config, reference_reused=reused)
        except ConfigError:  # an image folder's size is unknown before loading it
            cost = None
        planned = ("cost unknown until the dataset is loaded" if cost is None else
                   f"{cost['total_macs']:.2e} MACs, {cost['training_images']:,} training images"
                   + (", reference run reused" if reused else ""))
        echo(f"  {states[run.run_id]:>8}  {run.run_id}  ({planned})")
        if states[run.run_id] != "done":
            unknown += cost is None
            total += 0 if cost is None else cost["total_macs"]
            trained += 0 if cost is None else cost["training_images"]
    echo(f"planned for the runs to do: {total:.3e} MACs (FLOPs = 2 x MACs), {trained:,} "
         f"training images" + (f"; {unknown} runs of unknown size not counted" if unknown else ""))


def run_sweep(path: str | Path, results_dir: str | Path = "results", executor: str = "local",
              jobs: int | None = None, dry_run: bool = False, cluster: str | None = None,
              slurm: dict | None = None, echo=print, per_gpu: int = 1,
              keep_checkpoints: bool = False) -> list[dict]:
    """Run every pending or failed run of the sweep at ``path``; return one record per run.

    ``executor`` is ``local`` (``jobs`` workers, default ``per_gpu`` per visible GPU,
    else 1) or ``slurm`` (submitit; ``cluster="local"`` runs the array as local processes
    and ``slurm`` holds submitit parameters such as ``timeout_min``, ``mem_gb``,
    ``cpus_per_task`` or ``slurm_partition``; a job Slurm stopped is a failed run; with
    ``per_gpu`` > 1 each task runs a pack of that many runs on its GPU). See
    ``pf.executors``.
    ``dry_run`` lists the runs and their state without running anything. A run under way
    saves a checkpoint after every round and, run again, continues from it
    (``pf.experiments.checkpoint``); ``keep_checkpoints`` keeps the files once runs
    finish. The summary is also written to ``<results>/<sweep>/sweep.json``.
    """
    if executor not in ("local", "slurm"):
        raise ConfigError(f"executor: {executor!r} is not one of local, slurm")
    if per_gpu < 1:
        raise ConfigError(f"per-gpu: must be a positive integer, got {per_gpu}")
    if executor == "local" and per_gpu > 1 and not visible_gpus():
        raise ConfigError(NO_GPU)
    name, runs = load_sweep(path, results_dir)
    states = {run.run_id: run_status(run) for run in runs}
    todo = [run for run in runs if states[run.run_id] != "done"]
    if keep_checkpoints:
        todo = [dataclasses.replace(run, parameters={**run.parameters, "keep_checkpoint": True})
                for run in todo]
    echo(f"sweep {name}: {len(runs)} runs, {len(runs) - len(todo)} done, {len(todo)} to run "
         f"-> {Path(results_dir) / name}")
    if dry_run:
        _plan(runs, states, echo)
        return [{"run_id": run.run_id, "status": states[run.run_id], "error": None} for run in runs]
    warning = dirty_warning()
    if warning and todo:
        print(warning, file=sys.stderr)  # once for the sweep; each run's record says it too

    sweep_dir = Path(results_dir).resolve() / name
    records = {run.run_id: {"run_id": run.run_id, "status": "skipped", "error": None}
               for run in runs if states[run.run_id] == "done"}
    if not todo:
        outcomes = []
    elif executor == "slurm":
        outcomes = run_slurm(execute_run, todo, sweep_dir, cluster, slurm or {},
                             _record_failure, per_gpu)
    else:
        outcomes = run_local(execute_run, todo, jobs, per_gpu)
    try:
        for outcome in outcomes:
            records[outcome["run_id"]] = outcome
            echo(f"  {outcome['status']:>8}  {outcome['run_id']}"
                 + (f"  ({outcome['error']})" if outcome["error"] else ""))
    finally:
        ordered = [records.get(run.run_id, {"run_id": run.run_id, "status": "pending",
                                            "error": None}) | {"explicit": run.explicit}
                   for run in runs]
        write_json(sweep_dir / SUMMARY_FILE, {"sweep": name, "source": portable_path(path),
                                              "runs": ordered})
    return ordered
