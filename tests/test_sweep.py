"""Sweeps: grid expansion and ids, resuming, failures, a killed sweep, the Slurm path, the
notebooks' kernel."""

import json
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest
import submitit
from submitit.core.utils import UncompletedJobError
from submitit.local.local import LocalJobEnvironment

from conftest import PROJECT, assert_same_run, freezing, wait_for_rounds
from pf.experiments.config import ConfigError, from_parameters
from pf.experiments.cost import planned_cost
from pf.executors import available_cpus
from pf.experiments.record import CHECKPOINT_FILE, read_record
from pf.sweep import RunSpec, execute_run, load_sweep, run_status, run_sweep

pytestmark = pytest.mark.slow  # runs sweeps of notebooks in kernels

NOTEBOOKS = PROJECT / "notebooks"
PF = str(Path(sys.executable).with_name("pf"))


def _sweep_file(tmp_path, body: str, name="smoke") -> Path:
    """A sweep file in tmp_path/sweeps/ whose notebook is the real prunefuse.ipynb."""
    folder = tmp_path / "sweeps"
    folder.mkdir(exist_ok=True)
    (tmp_path / "prunefuse.ipynb").write_bytes((NOTEBOOKS / "prunefuse.ipynb").read_bytes())
    path = folder / f"{name}.yaml"
    path.write_text("notebook: prunefuse.ipynb\npreset: smoke\n" + body)
    return path


GRID = """
parameters: {lr_schedule: [[1, 0.05]]}
grid:
  - {method: [baseline, svp]}
  - {method: [prunefuse], prune_ratio: [0.5, 0.7]}
  - {method: [baseline]}
seeds: [0, 1]
"""


def test_grid_expands_to_the_union_of_subgrids_with_stable_ids(tmp_path):
    path = _sweep_file(tmp_path, GRID)
    name, runs = load_sweep(path, tmp_path / "results")
    assert name == "smoke" and len(runs) == 8  # (2 + 2 + 1 duplicate) x 2 seeds
    ids = [run.run_id for run in runs]
    assert len(set(ids)) == 8
    assert ids == [run.run_id for run in load_sweep(path, tmp_path / "elsewhere")[1]]
    assert ids[0].startswith("method=baseline,seed=0-")
    prunefuse = next(run for run in runs if run.explicit.get("prune_ratio") == 0.7)
    assert (prunefuse.parameters["prune_ratio"] == 0.7
            and prunefuse.parameters["method"] == "prunefuse")
    assert prunefuse.parameters["dataset"] == "synthetic"  # from the preset
    assert prunefuse.parameters["out_dir"] == "."
    assert Path(prunefuse.run_dir) == (tmp_path / "results" / "smoke" / prunefuse.run_id).resolve()
    json.dumps(prunefuse.parameters)  # papermill passes JSON types only
    # Changing a fixed parameter gives new ids: stale results are never reused.
    changed = _sweep_file(tmp_path, GRID.replace("0.05", "0.1"))
    assert not set(ids) & {run.run_id for run in load_sweep(changed, tmp_path)[1]}


def test_runs_go_seed_by_seed_and_a_subgrid_may_name_its_own_seeds(tmp_path):
    path = _sweep_file(tmp_path, """
grid:
  - {method: [baseline, svp]}
  - {method: [prunefuse], seed: [1, 5]}
seeds: [0, 1]
""")
    runs = load_sweep(path, tmp_path / "results")[1]
    assert [run.run_id.split("-")[0] for run in runs] == [
        "method=baseline,seed=0", "method=svp,seed=0",
        "method=baseline,seed=1", "method=svp,seed=1", "method=prunefuse,seed=1",
        "method=prunefuse,seed=5"]
    bad = _sweep_file(tmp_path, "grid:\n  - {method: [svp], seed: 3}\n")
    with pytest.raises(ConfigError, match="smoke.yaml: grid key 'seed' needs a non-empty list"):
        load_sweep(bad, tmp_path / "results")


@pytest.mark.parametrize("body, message", [
    ("grid:\n  - {method: [lasso]}\n",
     "smoke.yaml: run method=lasso,seed=0: method: 'lasso' is not"),
    ("grid:\n  - {method: baseline}\n", "smoke.yaml: grid key 'method' needs a non-empty list"),
    ("grids: []\n", "smoke.yaml: unknown keys ['grids']"),
    ("seeds: []\n", "smoke.yaml: seeds must be a non-empty list"),
    ("grid:\n  - {budgets: [64, 600]}\n", "smoke.yaml: run budgets=64,seed=0: budgets: expected"),
    ("notebook: missing.ipynb\n", "smoke.yaml: notebook"),
    # Sizes are checked against the dataset before any work (synthetic: 512 training images).
    ("parameters: {budgets: [64, 600]}\n",
     "smoke.yaml: run seed=0: budgets: 600 exceeds the 512 training samples"),
    ("parameters: {experiment: data_pruning, score_source: subset, score_subset: 0.01,"
     " score_lr_schedule: [[10, 0.1]]}\n",
     "smoke.yaml: run seed=0: knn_k: 10 exceeds the 5 scored samples"),
])
def test_a_bad_sweep_fails_before_anything_runs(tmp_path, body, message):
    path = _sweep_file(tmp_path, body)  # a second notebook: key overrides the first
    with pytest.raises(ConfigError) as error:
        run_sweep(path, tmp_path / "results", echo=lambda *_: None)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert not (tmp_path / "results").exists()


def test_sweep_runs_records_failures_and_resumes(tmp_path):
    path = _sweep_file(tmp_path, """
parameters: {lr_schedule: [[1, 0.05]]}
grid:
  - {method: [prunefuse, baseline]}
  - {dataset: ["imagefolder:/nowhere"]}
""")
    results = tmp_path / "results"
    records = run_sweep(path, results, jobs=2, echo=lambda *_: None)  # the process-pool path
    assert [r["status"] for r in records] == ["done", "done", "failed"]
    assert records[2]["error"].startswith("DatasetNotFound: imagefolder: nothing at /nowhere")
    _, runs = load_sweep(path, results)
    for run in runs[:2]:
        run_dir = Path(run.run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["config"] == {k: v for k, v in run.parameters.items()
                                     if k not in ("out_dir", "progress")}
        assert (run_dir / "notebook.ipynb").exists() and (run_dir / "selected.json").exists()
    assert json.loads((Path(runs[2].run_dir) / "error.json").read_text())["traceback"]
    summary = json.loads((results / "smoke" / "sweep.json").read_text())
    assert [r["status"] for r in summary["runs"]] == ["done", "done", "failed"]

    stamps = [(Path(run.run_dir) / "metrics.json").stat().st_mtime_ns for run in runs[:2]]
    again = run_sweep(path, results, echo=lambda *_: None)
    assert [r["status"] for r in again] == ["skipped", "skipped", "failed"]
    assert stamps == [(Path(run.run_dir) / "metrics.json").stat().st_mtime_ns for run in runs[:2]]


def _kill_with_descendants(pid: int) -> None:
    """SIGKILL a process and every process under it at once, as a crash of the machine
    would. Its process group is not enough: jupyter_client starts each kernel in a session
    of its own, and a kernel whose parent died lives on until its parent poller notices
    (up to a second), long enough to finish a smoke run's last rounds."""
    process = psutil.Process(pid)
    for each in [*process.children(recursive=True), process]:
        each.send_signal(signal.SIGKILL)


def test_a_killed_sweep_restarts_and_finishes_every_run_exactly_once(tmp_path):
    path = _sweep_file(tmp_path, """
parameters: {lr_schedule: [[1, 0.05]]}
grid:
  - {method: [baseline, prunefuse]}
""")
    results = tmp_path / "results"
    _, runs = load_sweep(path, results)
    first = Path(runs[0].run_dir) / "metrics.json"
    sweep = subprocess.Popen([PF, "sweep", str(path), "--results", str(results)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 240
    while not first.exists() and time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.2)
    _kill_with_descendants(sweep.pid)  # the sweep and the kernel of the run under way
    sweep.wait()
    assert first.exists() and run_status(runs[0]) == "done"
    assert run_status(runs[-1]) != "done"

    finished = subprocess.run([PF, "sweep", str(path), "--results", str(results)],
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "2 of 2 runs finished, 0 failed" in finished.stdout
    assert "without encryption" not in finished.stderr  # the kernel's start-up warning, per run
    assert all(run_status(run) == "done" for run in runs)
    run_dirs = sorted(p.parent.name for p in (results / "smoke").rglob("metrics.json"))
    assert run_dirs == sorted(run.run_id for run in runs)


# One run whose networks carry over from round to round (a warm selector, a sync every
# second round, fusion into the synced selector's source). The tests that stop it midway
# freeze it after its second round (conftest.freezing): on a fast CPU under load, polling
# alone saw the whole run end between two polls.
CARRYING_RUN = """
parameters: {method: prunefuse, budgets: [64, 128, 192, 256], lr_schedule: [[2, 0.05]],
             sync_every: 2, selector_start: warm, fuse_into: source}
"""


def _uninterrupted(path, tmp_path, threads: int | None = None) -> Path:
    """The sweep's one run, run through `pf run` without a stop (with ``threads``, else the
    test's): its folder."""
    [run] = load_sweep(path, tmp_path / "unused")[1]
    out = tmp_path / "uninterrupted"
    settings = [part for key, value in run.parameters.items()
                if key not in ("out_dir", "progress")
                for part in ("--set", f"{key}={json.dumps(value)}")]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    done = subprocess.run([PF, "run", "--preset", "smoke", *settings, "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    return out


def test_a_sweep_killed_in_a_run_resumes_it_after_its_last_round(tmp_path):
    path = _sweep_file(tmp_path, CARRYING_RUN)
    results = tmp_path / "results"
    [run] = load_sweep(path, results)[1]
    run_dir = Path(run.run_dir)
    log = tmp_path / "sweep.log"
    with log.open("w") as output:
        sweep = subprocess.Popen([PF, "sweep", str(path), "--results", str(results)],
                                 stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, **freezing(run_dir / CHECKPOINT_FILE, 2)})
    done = wait_for_rounds(run_dir / CHECKPOINT_FILE, 2, lambda: sweep.poll() is None)
    if sweep.poll() is not None:  # it ended before the kill: say how
        pytest.fail(f"the sweep ended (status {sweep.returncode}) after {done} rounds: "
                    f"{log.read_text()[-2000:]}")
    _kill_with_descendants(sweep.pid)
    sweep.wait()
    assert done == 2 and run_status(run) == "pending"

    finished = subprocess.run([PF, "sweep", str(path), "--results", str(results)],
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert read_record(run_dir).resumed_at_rounds == [2]
    assert_same_run(run_dir, _uninterrupted(path, tmp_path))
    assert not (run_dir / CHECKPOINT_FILE).exists()


def _command_line(process: psutil.Process) -> list[str]:
    """A child's command line; none for one that has ended meanwhile (a zombie another
    test of this worker left, or one gone before it was read)."""
    try:
        return process.cmdline()
    except (psutil.ZombieProcess, psutil.NoSuchProcess):
        return []


def test_a_preempted_slurm_task_is_requeued_and_its_run_resumes(tmp_path, monkeypatch):
    # Slurm warns a job it pre-empts (or times out) with a signal; submitit then calls the
    # task's checkpoint and requeues it. Here the signal goes to the task of submitit's
    # local cluster once the run has finished two rounds.
    path = _sweep_file(tmp_path, CARRYING_RUN)
    results = tmp_path / "results"
    [run] = load_sweep(path, results)[1]
    checkpoint = Path(run.run_dir) / CHECKPOINT_FILE
    for name, value in freezing(checkpoint, 2).items():  # submitit's tasks inherit them
        monkeypatch.setenv(name, value)
    records = []
    sweep = threading.Thread(target=lambda: records.extend(run_sweep(
        path, results, executor="slurm", cluster="local", slurm={"timeout_min": 10},
        echo=lambda *_: None)))
    sweep.start()
    done = wait_for_rounds(checkpoint, 2, sweep.is_alive)
    [task] = [process for process in psutil.Process().children(recursive=True)
              if "submitit.core._submit" in " ".join(_command_line(process))]
    task.send_signal(LocalJobEnvironment._usr_sig())
    sweep.join(timeout=300)
    assert done == 2 and [r["status"] for r in records] == ["done"]
    record = read_record(run.run_dir)
    assert record.resumed_at_rounds == [2]
    # A lone run of a Slurm task runs with all of the task's CPUs as threads.
    assert record.environment["cpu_threads"] == available_cpus()
    assert_same_run(Path(run.run_dir), _uninterrupted(path, tmp_path, available_cpus()))
    assert "Caught signal SIGUSR2" in "".join(p.read_text() for p in
                                              (results / "smoke" / "submitit").glob("*_log.err"))


def test_slurm_executor_runs_the_array_through_submitit(tmp_path):
    path = _sweep_file(tmp_path, """
parameters: {lr_schedule: [[1, 0.05]], budgets: [64, 96]}
seeds: [0, 1]
""")
    results = tmp_path / "results"
    records = run_sweep(path, results, executor="slurm", cluster="local",
                        slurm={"timeout_min": 10}, echo=lambda *_: None)
    assert [r["status"] for r in records] == ["done", "done"]
    assert (results / "smoke" / "submitit").is_dir()
    assert run_sweep(path, results, executor="slurm", cluster="local",
                     echo=lambda *_: None)[0]["status"] == "skipped"


def test_slurm_tasks_each_run_a_pack_of_runs_on_their_gpu(tmp_path, monkeypatch):
    # Each task of the array asks for one GPU (here a fake id that submitit's local cluster
    # hands out; the runs fall back to the CPU) and runs its pack of per_gpu runs side by
    # side on it: 3 runs in 2 tasks.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    path = _sweep_file(tmp_path, """
parameters: {lr_schedule: [[1, 0.05]], budgets: [64, 96]}
seeds: [0, 1, 2]
""")
    results = tmp_path / "results"
    records = run_sweep(path, results, executor="slurm", cluster="local", per_gpu=2,
                        slurm={"timeout_min": 10, "gpus_per_node": 1}, echo=lambda *_: None)
    assert [r["status"] for r in records] == ["done", "done", "done"]
    assert len(list((results / "smoke" / "submitit").glob("*_result.pkl"))) == 2


# What submitit raises for a job Slurm stopped: its opening sentence, then the job's log.
TIMED_OUT = ("Job 7_0 (task: 0) with path /scratch/submitit/7_0_0_result.pkl\n"
             "has not produced any output (state: TIMEOUT)\nError stream produced:\n"
             + "-" * 40 + "\nslurmstepd: error: *** JOB 7 CANCELLED DUE TO TIME LIMIT ***")


class _StoppedJob:
    """A submitit job that Slurm stopped before it wrote a result."""

    def result(self):
        raise UncompletedJobError(TIMED_OUT)


class _FinishedJob:
    """A submitit job that returned its run's record."""

    def __init__(self, run):
        self.run = run

    def result(self):
        return [{"run_id": self.run.run_id, "status": "done", "error": None}]


def test_a_slurm_job_stopped_without_a_result_is_a_failed_run_and_the_others_are_collected(
        tmp_path, monkeypatch):
    path = _sweep_file(tmp_path, "seeds: [0, 1, 2]\n")
    results = tmp_path / "results"
    submitted = []

    def map_array(executor, task, groups):
        runs = [run for group in groups for run in group]
        submitted.append([run.run_id for run in runs])
        return [_StoppedJob(), *map(_FinishedJob, runs[1:])]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    records = run_sweep(path, results, executor="slurm", cluster="local", echo=lambda *_: None)
    assert [r["status"] for r in records] == ["failed", "done", "done"]
    assert records[0]["error"] == ("UncompletedJobError: Job 7_0 (task: 0) with path /scratch/"
                                   "submitit/7_0_0_result.pkl has not produced any output "
                                   "(state: TIMEOUT)")
    _, runs = load_sweep(path, results)
    error = json.loads((Path(runs[0].run_dir) / "error.json").read_text())
    assert error["error"] == records[0]["error"] and "DUE TO TIME LIMIT" in error["traceback"]
    summary = json.loads((results / "smoke" / "sweep.json").read_text())
    assert [r["status"] for r in summary["runs"]] == ["failed", "done", "done"]
    assert run_status(runs[0]) == "failed"
    run_sweep(path, results, executor="slurm", cluster="local", echo=lambda *_: None)
    assert runs[0].run_id in submitted[1]  # resubmitted


def test_notebooks_run_on_the_sweeps_interpreter_not_a_python3_kernel_spec_on_jupyter_path(
        tmp_path, monkeypatch):
    # Another environment that can run ipykernel (it reads this one's packages) ...
    other = tmp_path / "other-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(other)], check=True)
    site_packages = next(other.glob("lib/python*/site-packages"))
    (site_packages / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # ... and a kernel spec named python3 that starts it, first on JUPYTER_PATH.
    decoy = tmp_path / "jupyter" / "kernels" / "python3"
    decoy.mkdir(parents=True)
    (decoy / "kernel.json").write_text(json.dumps({
        "argv": [str(other / "bin" / "python"), "-m", "ipykernel_launcher",
                 "-f", "{connection_file}"],
        "display_name": "Python 3 (another environment)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))

    parameters = nbformat.v4.new_code_cell("out_dir = '.'", metadata={"tags": ["parameters"]})
    probe = nbformat.v4.new_code_cell("import pathlib, sys\n"
                                      "pathlib.Path('kernel.txt').write_text(sys.executable)")
    notebook = nbformat.v4.new_notebook(cells=[parameters, probe], metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(notebook, tmp_path / "probe.ipynb")
    run = RunSpec("probe", str(tmp_path / "run"), str(tmp_path / "probe.ipynb"), {},
                  {"out_dir": "."})
    execute_run(run)  # failed (the probe writes no metrics.json): only where it ran matters
    assert (tmp_path / "run" / "kernel.txt").read_text() == sys.executable


def test_dry_run_lists_runs_and_runs_nothing(tmp_path):
    path = _sweep_file(tmp_path, GRID)
    lines = []
    records = run_sweep(path, tmp_path / "results", dry_run=True, echo=lines.append)
    assert len(records) == 8 and {r["status"] for r in records} == {"pending"}
    assert lines[0].startswith("sweep smoke: 8 runs, 0 done, 8 to run")
    assert not (tmp_path / "results").exists()
    # Every run with its planned cost, and the total of the runs to do.
    costs = [planned_cost(from_parameters(run.parameters)) for run in load_sweep(path)[1]]
    assert all(f"({c['total_macs']:.2e} MACs, " in line for c, line in zip(costs, lines[1:9]))
    assert lines[-1].startswith(f"planned for the runs to do: "
                                f"{sum(c['total_macs'] for c in costs):.3e} MACs")


def test_a_sweeps_reference_runs_share_one_cache_and_are_planned_once_per_seed(tmp_path):
    body = """
parameters: {method: prune_data, score_source: subset, prune_rates: [], lr_schedule: [[1, 0.05]],
             score_lr_schedule: [[10, 0.05]]}
grid:
  - {score_reference: [true], knn_k: [3, 5]}
  - {score_reference: [false], knn_k: [3]}
seeds: [0, 1]
"""
    path = _sweep_file(tmp_path, body)
    runs = load_sweep(path, tmp_path / "results")[1]
    # From each run's folder, where its notebook works: no path of this machine is stored.
    assert ([run.parameters["reference_cache"] for run in runs]  # seed by seed
            == ["../reference-cache"] * 2 + [""] + ["../reference-cache"] * 2 + [""])
    cache = (tmp_path / "results" / "smoke" / "reference-cache").resolve()
    assert (Path(runs[0].run_dir) / "../reference-cache").resolve() == cache

    lines = []
    run_sweep(path, tmp_path / "results", dry_run=True, echo=lines.append)
    reused = [line.endswith(", reference run reused)") for line in lines[1:7]]
    assert reused == [False, True, False] * 2  # knn_k=5 reuses knn_k=3's, per seed
    config = from_parameters(runs[0].parameters)
    full, reused = planned_cost(config), planned_cost(config, reference_reused=True)
    assert reused["macs"]["reference_scoring"] == 0 < full["macs"]["reference_scoring"]
    saved = 2 * (full["total_macs"] - reused["total_macs"])  # its training and its test pass
    total = sum(planned_cost(from_parameters(run.parameters))["total_macs"] for run in runs)
    assert lines[-1].startswith(f"planned for the runs to do: {total - saved:.3e} MACs")
