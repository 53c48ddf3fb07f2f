"""Where a sweep's runs execute: a local process pool, or a Slurm job array through submitit.

One run is one process (a papermill kernel) on one device. Locally, each worker of the
pool takes an environment for life (``worker_environments``): with GPUs, ``per_gpu``
workers share each visible GPU (``CUDA_VISIBLE_DEVICES`` names it), since one small
ResNet at batch 128 leaves most of a large GPU idle; without, ``jobs`` workers share the
CPU. Either way the CPU threads are split evenly (``OMP_NUM_THREADS``, which the run's
kernel inherits), so that the workers do not oversubscribe the cores. On Slurm, each
array task runs one run, or with ``per_gpu`` > 1 a pack of ``per_gpu`` runs side by side
on the task's GPU (``packs``), through the same local pool, with the task's CPUs as its
threads. A task that Slurm times out or pre-empts is requeued (``SlurmTask.checkpoint``,
submitit's checkpointing) and its runs continue after their last finished round
(``pf.experiments.checkpoint``).

    run_local(execute_run, runs, per_gpu=4)   # 4 runs at a time on each visible GPU
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pf.experiments.record import available_cpus

__all__ = ["NO_GPU", "visible_gpus", "available_cpus", "use_cpu_threads", "worker_environments",
           "packs",
           "run_local", "SlurmTask", "run_slurm"]

NO_GPU = "per-gpu: no GPU is visible; --jobs sets the number of CPU workers"


def visible_gpus() -> list[str]:
    """The GPU ids this process may use, as CUDA_VISIBLE_DEVICES would name them."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu for gpu in listed.split(",") if gpu.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 -- no usable CUDA means CPU workers
        return []


def use_cpu_threads(threads: int = 0) -> int:
    """Make this process compute on ``threads`` CPU threads and return the count; 0 means
    ``OMP_NUM_THREADS`` where set (a sweep's worker has its share there), else every core
    this process may use. A notebook calls it with its ``threads`` parameter: runs that
    share cores should split them, since two runs at 2 threads each on 2 cores ran 3.7x
    slower than at 1 thread each."""
    if threads < 0:
        raise ValueError(f"threads: must be 0 (automatic) or a positive integer, got {threads}")
    import torch

    chosen = threads or int(os.environ.get("OMP_NUM_THREADS") or available_cpus())
    torch.set_num_threads(chosen)
    return chosen


def worker_environments(gpus: list[str], cpus: int, jobs: int | None = None,
                        per_gpu: int = 1) -> list[dict[str, str]]:
    """The environment variables of each local worker, one dict per worker.

    With ``gpus``: ``jobs`` workers (default ``per_gpu`` per GPU), dealt to the GPUs in
    turn, each seeing only its GPU. Without: ``jobs`` workers (default 1) that see no
    GPU. The ``cpus`` threads are split evenly among the workers, at least one each.
    Raises ValueError for ``per_gpu`` > 1 without a GPU (``jobs`` sets CPU workers).
    """
    if per_gpu < 1:
        raise ValueError(f"per-gpu: must be a positive integer, got {per_gpu}")
    if per_gpu > 1 and not gpus:
        raise ValueError(NO_GPU)
    workers = jobs or (len(gpus) * per_gpu if gpus else 1)
    threads = str(max(1, cpus // workers))
    return [{"CUDA_VISIBLE_DEVICES": gpus[worker % len(gpus)] if gpus else "",
             "OMP_NUM_THREADS": threads} for worker in range(workers)]


def _claim_environment(slots) -> None:
    """Pool-worker initializer: take one worker's environment for life."""
    os.environ.update(slots.get())


def run_local(execute: Callable[[object], dict], runs: list, jobs: int | None = None,
              per_gpu: int = 1) -> Iterator[dict]:
    """``execute(run)`` for every run, in a pool of workers (``worker_environments``),
    yielding the records in the runs' order. A single worker on at most one GPU runs in
    this process, in its environment as it is, so that Ctrl-C stops it at once."""
    gpus = visible_gpus()
    environments = worker_environments(gpus, available_cpus(), jobs, per_gpu)
    if len(environments) == 1 and len(gpus) <= 1:
        yield from map(execute, runs)
        return
    context = multiprocessing.get_context("spawn")
    slots = context.Queue()
    for environment in environments:
        slots.put(environment)
    with ProcessPoolExecutor(len(environments), mp_context=context,
                             initializer=_claim_environment, initargs=(slots,)) as pool:
        try:
            yield from pool.map(execute, runs)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def packs(runs: list, size: int) -> list[list]:
    """``runs`` in consecutive packs of ``size`` (the last may be smaller)."""
    return [runs[start:start + size] for start in range(0, len(runs), size)]


class SlurmTask:
    """One task of a sweep's Slurm array: ``execute`` for its runs (one, or a pack of
    ``per_gpu`` side by side on its GPU) through ``run_local``. A lone run gets all the
    task's CPUs as threads (``OMP_NUM_THREADS``, whatever the submitting shell had), as a
    pack splits them among its runs.

    Checkpointable the way submitit expects: when Slurm times the task out or pre-empts
    it, submitit calls ``checkpoint`` and requeues the task, which then runs again; each
    run finds its round checkpoint and continues after its last finished round.
    """

    def __init__(self, execute: Callable[[object], dict], per_gpu: int = 1):
        self.execute, self.per_gpu = execute, per_gpu

    def __call__(self, runs: list) -> list[dict]:
        """The records of ``runs``, in order."""
        os.environ["OMP_NUM_THREADS"] = str(available_cpus())  # a pack's workers split it
        return list(run_local(self.execute, runs, per_gpu=self.per_gpu))

    def checkpoint(self, runs: list):
        """Stop the runs under way (their kernels and pool workers: Slurm would, a local
        cluster does not) and hand submitit the same task to requeue."""
        import psutil
        from submitit.helpers import DelayedSubmission

        for child in psutil.Process().children(recursive=True):
            child.kill()
        return DelayedSubmission(self, runs)


def run_slurm(execute: Callable[[object], dict], runs: list, folder: Path, cluster: str | None,
              slurm: dict, failure: Callable[[object, str], dict],
              per_gpu: int = 1) -> Iterator[dict]:
    """``execute(run)`` for every run as a submitit job array (``slurm``: submitit's
    parameters) of ``SlurmTask``s, one run per task, or a pack of ``per_gpu`` runs per
    task sharing its GPU. A task Slurm stopped without a result (and not requeued) gives
    ``failure(run, one line)`` for each of its runs, and the others are still collected."""
    import submitit

    executor = submitit.AutoExecutor(folder=folder / "submitit", cluster=cluster)
    executor.update_parameters(**slurm)
    groups = packs(runs, per_gpu)
    jobs = executor.map_array(SlurmTask(execute, per_gpu), groups)
    for group, job in zip(groups, jobs):
        try:
            yield from job.result()
        except Exception as error:  # noqa: BLE001 -- one lost job must not lose the others
            yield from (failure(run, _job_error(error)) for run in group)


def _job_error(error: Exception) -> str:
    """A job's error as one line: submitit's opening sentence, which names the job and,
    for a job stopped without a result (UncompletedJobError), Slurm's state (TIMEOUT,
    PREEMPTED, OUT_OF_MEMORY, ...); the logs it appends stay in error.json's traceback."""
    opening = " ".join(str(error).splitlines()[:2])
    return f"{type(error).__name__}: {' '.join(opening.split()).rstrip(' -')}"
