"""Several runs per GPU: which GPU and how many CPU threads each local worker gets, how
runs are packed into Slurm tasks, that a worker really runs in its environment, and a
notebook's thread count. No GPU is needed: the GPU ids are given."""

import os
import subprocess
import sys
from collections import Counter

import pytest
import torch

from pf.executors import (NO_GPU, SlurmTask, available_cpus, packs, run_local,
                          use_cpu_threads, worker_environments)


def test_per_gpu_workers_are_dealt_to_every_gpu_with_the_threads_split():
    environments = worker_environments(["0", "1"], cpus=16, per_gpu=3)
    assert len(environments) == 6
    assert Counter(e["CUDA_VISIBLE_DEVICES"] for e in environments) == {"0": 3, "1": 3}
    # consecutive workers go to different GPUs, so a short sweep still uses them all
    assert [e["CUDA_VISIBLE_DEVICES"] for e in environments[:2]] == ["0", "1"]
    assert {e["OMP_NUM_THREADS"] for e in environments} == {"2"}  # 16 cores / 6, rounded down


def test_one_worker_per_gpu_by_default_and_jobs_overrides_the_count():
    assert [e["CUDA_VISIBLE_DEVICES"] for e in worker_environments(["3", "5"], cpus=8)] == \
        ["3", "5"]
    jobs = worker_environments(["3", "5"], cpus=8, jobs=3, per_gpu=4)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in jobs] == ["3", "5", "3"]
    assert {e["OMP_NUM_THREADS"] for e in jobs} == {"2"}


def test_cpu_workers_see_no_gpu_and_share_the_cores():
    assert worker_environments([], cpus=2) == [{"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2"}]
    environments = worker_environments([], cpus=2, jobs=4)
    assert len(environments) == 4
    assert {e["OMP_NUM_THREADS"] for e in environments} == {"1"}  # never 0 threads
    assert {e["CUDA_VISIBLE_DEVICES"] for e in environments} == {""}


def test_packing_without_a_gpu_or_below_one_is_refused():
    with pytest.raises(ValueError, match=NO_GPU):
        worker_environments([], cpus=4, per_gpu=2)
    with pytest.raises(ValueError, match="per-gpu: must be a positive integer, got 0"):
        worker_environments(["0"], cpus=4, per_gpu=0)


def test_slurm_tasks_get_consecutive_packs_of_runs():
    assert packs(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert packs(list(range(4)), 1) == [[0], [1], [2], [3]]
    assert packs([], 4) == []


def _environment_of_worker(run):
    """What one run sees: its GPU and its threads (module-level: pickled to the worker)."""
    return {"run": run, "gpu": os.environ["CUDA_VISIBLE_DEVICES"],
            "threads": os.environ["OMP_NUM_THREADS"], "pid": os.getpid()}


def test_each_local_worker_runs_in_its_own_environment(monkeypatch):
    # Two fake GPUs, two workers each: every run sees one of them and a quarter of the cores.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7,9")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    seen = list(run_local(_environment_of_worker, list(range(8)), per_gpu=2))
    assert [s["run"] for s in seen] == list(range(8))  # results in the runs' order
    assert {s["gpu"] for s in seen} <= {"7", "9"}
    assert {s["threads"] for s in seen} == {"2"}
    assert all(s["pid"] != os.getpid() for s in seen)


def test_a_lone_slurm_run_gets_all_of_its_tasks_cpus_as_threads(monkeypatch):
    # OMP_NUM_THREADS=1 from the submitting shell would leave 5 of the task's 6 CPUs idle.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    [seen] = SlurmTask(_environment_of_worker)(["run"])
    assert seen["threads"] == "6" and seen["pid"] == os.getpid()  # in the task's process


def test_a_slurm_task_checkpoints_as_itself_with_the_same_runs_and_stops_its_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    task = SlurmTask(_environment_of_worker, per_gpu=2)
    delayed = task.checkpoint(["a", "b"])
    assert child.wait(timeout=10) == -9  # killed, as Slurm kills a requeued job's processes
    assert delayed.function is task and delayed.args == (["a", "b"],)


def test_the_sweep_command_refuses_packing_without_a_gpu(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("notebook: x.ipynb\npreset: smoke\n")
    result = subprocess.run([sys.executable, "-m", "pf", "sweep", str(sweep), "--per-gpu", "2"],
                            capture_output=True, text=True, env={**os.environ,
                                                                 "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2 and result.stderr == f"pf: error: {NO_GPU}\n"


def test_a_notebooks_threads_are_its_own_else_the_workers_share_else_every_core(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what a sweep's worker has
        assert use_cpu_threads(0) == 1 == torch.get_num_threads()
        assert use_cpu_threads(2) == 2 == torch.get_num_threads()
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert use_cpu_threads(0) == available_cpus() == torch.get_num_threads()
        with pytest.raises(ValueError, match="threads: must be 0 .automatic. or a positive"):
            use_cpu_threads(-1)
    finally:
        torch.set_num_threads(before)
