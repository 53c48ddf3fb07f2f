"""The prepared GPU check: what pf's CUDA path must show, in one command of under 8 minutes.

    make gpu-bundle                            # here, where the package registries answer
    make gpu-check                             # on the GPU machine: install, then every step
    python benchmarks/gpu_check.py --dry-run   # anywhere: the plan, the imports, the bundle
    python benchmarks/gpu_check.py --rehearse  # anywhere: every step, tiny, on the CPU

A GPU machine lent for a few minutes has PyTorch but not all of pf's dependencies, and no
internet: ``make gpu-bundle`` (``--bundle``; ``gpu_bundle.py``) builds the missing ones as
wheels into ``.whl/`` and copies the CIFAR-10 archive into ``.data/``, both to travel
with the working tree. The check itself (``make gpu-check``, or ``python3
benchmarks/gpu_check.py`` where there is no make) installs the wheels into ``.gpu-site/``
and runs the steps of ``STEPS`` with pf from the working tree, each within its time
limit. It writes ``results/gpu/<date>-<device>.json`` and ``.log`` (``--copy-to DIR``
copies both there too) and, when a step fails, says so in one line, then goes on with the
next only under ``--keep-going`` (make gpu-check passes it: a lease is too short to spend
twice). ``--dry-run`` prints the plan, checks the bundle and imports every step's code
in a Python that sees only the GPU machine's packages and the bundle; ``--rehearse``
runs the whole check on the CPU at a tiny size (``REHEARSAL``), so that a lease is not
spent finding a slip in the check itself. The test suite runs both.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpu_bundle import (ROOT, bundle, bundle_problems, import_problems,
                        install_bundle, locked_versions)

OUTPUT = ROOT / "results" / "gpu"
EPOCH_IMAGES = 50_000  # a CIFAR-10 training epoch, the unit the issue asks seconds for
PLAN_LIMIT_S = 8 * 60  # the whole check, every step at its limit


@dataclass(frozen=True)
class Scale:
    """Where and how large the steps run: the GPU check itself, or its rehearsal on a CPU
    (``--rehearse``: every step's code end to end, tiny, in about a minute)."""

    name: str
    device: str
    dataset: str  # what the data step and the packed workers load
    arch: str  # bench_train's and the packed workers' network
    train_images: int  # bench_train's per epoch (2 epochs), and each packed worker's
    packed: int  # packed workers, as pf sweep --per-gpu K runs them side by side
    pool_images: int  # scored by bench_train
    bench_options: tuple[str, ...]  # bench_train's other arguments
    k_centers: tuple[int, int, int, int]  # pool, feature dimensions, labeled, picks
    al_preset: str  # the active-learning step's preset, at al_overrides
    al_overrides: dict

    @property
    def needs_archive(self) -> bool:
        """Whether the steps read the bundled CIFAR-10 archive (the rehearsal does not)."""
        return self.dataset == "cifar10_jpeg"


GPU = Scale("gpu", "cuda", "cifar10_jpeg", "resnet56", 12_800, 4, 50_000,
            ("--workers", "8", "--variants", "default,compile,compile+graphs"),
            (50_000, 64, 1_000, 5_000), "cpu", {"budgets": [1000, 2000]})
REHEARSAL = Scale("rehearsal", "cpu", "synthetic", "resnet8", 256, 2, 512,
                  ("--data", "random", "--test-images", "64", "--batch-size", "32",
                   "--variants", "default", "--rounds", "1"),
                  (2_000, 16, 100, 50), "smoke", {"lr_schedule": [[5, 0.05]]})
SCALES = {scale.name: scale for scale in (GPU, REHEARSAL)}


class StepFailed(Exception):
    """A step's own check did not hold; the text is one line, ``measured`` what the step
    measured before it found out."""

    def __init__(self, message: str, measured: dict | None = None):
        super().__init__(message)
        self.measured = measured or {}


@dataclass(frozen=True)
class Step:
    """One part of the check: its time limit, what it shows, and the code it imports."""

    name: str
    limit_s: int
    shows: str
    imports: tuple[str, ...]
    run: Callable[[Path, Scale], dict]


# ---------------------------------------------------------------------------------------
# The steps (each takes a scratch folder and its Scale, and returns what it measured)
# ---------------------------------------------------------------------------------------


_CHILDREN: list[subprocess.Popen] = []  # processes a step started, ended if it runs too long


def _start(command: list[str], **options) -> subprocess.Popen:
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, **options)
    _CHILDREN.append(child)
    return child


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def run_data(scratch: Path, scale: Scale) -> dict:
    """Decode the CIFAR-10 archive once (pf caches the tensors for every later load)."""
    from pf.data import cifar10_jpeg_path, load_dataset

    if scale.needs_archive and not cifar10_jpeg_path().exists():
        raise StepFailed(f"no CIFAR-10 archive at {cifar10_jpeg_path()}: run make gpu-bundle")
    start = time.perf_counter()
    dataset = load_dataset(scale.dataset)
    return {"train": len(dataset.train), "test": len(dataset.test),
            "load_seconds": time.perf_counter() - start}


def gpu_test_files() -> list[str]:
    """The test files holding tests marked ``gpu``."""
    return sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("test_*.py")
                  if "mark.gpu" in path.read_text())


def run_gpu_tests(scratch: Path, scale: Scale) -> dict:
    """pytest -m gpu over the files that hold such tests."""
    tests = _start([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p",
                    "no:cacheprovider", *gpu_test_files()])
    lines = tests.communicate()[0].strip().splitlines()
    log("\n".join(lines[-30:]))
    summary = lines[-1].strip("= ") if lines else "no output"
    if tests.returncode != 0:
        raise StepFailed(f"pytest -m gpu exited {tests.returncode}: {summary}")
    return {"summary": summary, "files": gpu_test_files()}


def run_trainer(scratch: Path, scale: Scale) -> dict:
    """bench_train on ResNet-56 and real CIFAR-10: images/s of the reference and of pf's
    variants, and the seconds a 50,000-image epoch takes at each rate."""
    import bench_train  # beside this script, whose folder Python puts on the path

    result = bench_train.main(["--arch", scale.arch, "--train-images", str(scale.train_images),
                               "--epochs", "2", "--pool-images", str(scale.pool_images),
                               "--device", scale.device, *scale.bench_options])
    if scale.needs_archive and "random" in result["dataset"]:
        raise StepFailed("bench_train found no CIFAR-10 archive: run make gpu-bundle first")
    for row in result["rows"]:
        row["seconds_per_epoch"] = EPOCH_IMAGES / row["images_per_second"]
    best = max((r for r in result["rows"] if r["phase"] == "train"), key=lambda r: r["ratio"])
    return {"rows": result["rows"], "dataset": result["dataset"], "best_train": best}


def run_k_centers(scratch: Path, scale: Scale) -> dict:
    """Greedy k-centers: 5,000 picks from 50,000 x 64 features (1,000 labeled), seconds."""
    import torch

    from pf.select import k_centers

    size, dims, labeled_size, picks = scale.k_centers
    generator = torch.Generator(device=scale.device).manual_seed(0)
    pool = torch.randn(size, dims, device=scale.device, generator=generator)
    labeled = torch.randn(labeled_size, dims, device=scale.device, generator=generator)
    k_centers(pool[:picks], labeled, 10)  # warm-up
    _sync(scale.device)
    start = time.perf_counter()
    picked = k_centers(pool, labeled, picks)
    _sync(scale.device)
    seconds = time.perf_counter() - start
    if len(set(picked.tolist())) != picks:
        raise StepFailed("k-centers picked a point twice")
    return {"pool": size, "dims": dims, "labeled": labeled_size, "picks": picks,
            "pick_seconds": seconds}


def run_packing(scratch: Path, scale: Scale) -> dict:
    """``scale.packed`` processes train ResNet-56 on the one GPU at once, each in the
    environment ``pf sweep --per-gpu`` gives its workers; images/s of them together."""
    from pf.executors import visible_gpus, worker_environments

    cpus = len(os.sched_getaffinity(0))
    environments = (worker_environments(visible_gpus()[:1], cpus, per_gpu=scale.packed)
                    if scale.device == "cuda" else worker_environments([], cpus, jobs=scale.packed))
    workers = [_start([sys.executable, __file__, "--pack-worker", scale.name],
                      env={**os.environ, **env}) for env in environments]
    reports = []
    for worker in workers:
        out, _ = worker.communicate()
        # Its report is its last JSON line (warnings may follow it on the shared stream).
        report = [line for line in out.splitlines() if line.startswith("{")]
        if worker.returncode != 0 or not report:
            raise StepFailed(f"a packed worker exited {worker.returncode} without its report: "
                             f"{(out.strip().splitlines() or ['no output'])[-1]}")
        reports.append(json.loads(report[-1]))
    images = sum(r["images"] for r in reports)
    # From the first start to the last end: the rate of the packed workers as a whole.
    window = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    return {"workers": len(reports), "images": images, "window_seconds": window,
            "images_per_second": images / window,
            "seconds_per_epoch": EPOCH_IMAGES * window / images,
            "per_worker": reports}


def pack_worker(scale: Scale) -> None:
    """One packed worker: ResNet-56, 12,800 real CIFAR-10 images x 2 epochs, pf defaults;
    prints its report as one JSON line."""
    import torch

    from pf.data import load_dataset
    from pf.models import build_model
    from pf.train import Schedule, fit

    dataset = load_dataset(scale.dataset).to(scale.device)
    indices = torch.randperm(len(dataset.train), device=scale.device)[:scale.train_images]

    def network():
        return build_model(scale.arch, dataset.num_classes, dataset.in_channels)

    fit(network(), dataset, indices[:len(indices) // 10], Schedule(((1, 0.05),)),
        device=scale.device, progress=False)  # warm-up: kernels, allocator
    _sync(scale.device)
    start = time.time()
    result = fit(network(), dataset, indices, Schedule(((2, 0.05),)), device=scale.device,
                 progress=False)
    _sync(scale.device)
    peak = torch.cuda.max_memory_allocated() if scale.device == "cuda" else 0
    print(json.dumps({"images": result.images_seen, "start": start, "end": time.time(),
                      "peak_gib": peak / 2**30}))


def run_active_learning(scratch: Path, scale: Scale) -> dict:
    """The `cpu` preset on CUDA in two rounds, baseline and PruneFuse p = 0.5, each twice
    with seed 0: the selections must be identical, the accuracy at least twice chance."""
    from pf.experiments.config import make_config
    from pf.experiments.methods import BASELINE, PRUNEFUSE
    from pf.experiments.record import SELECTED_FILE
    from pf.experiments.run import run_experiment

    methods = {BASELINE: {}, PRUNEFUSE: {"prune_ratio": 0.5}}
    report, problems = {}, []
    for method, options in methods.items():
        config = make_config(scale.al_preset, {**scale.al_overrides, "device": scale.device,
                                               "method": method, **options})
        runs = []
        for attempt in (1, 2):
            out = scratch / f"{method}-{attempt}"
            record = run_experiment(config, out, progress=False)
            runs.append((record, json.loads((out / SELECTED_FILE).read_text())))
        (first, picks), (second, repeat) = runs
        accuracy = [r.target.test_accuracy for r in first.rounds]
        report[method] = {"labels": first.rounds[-1].labeled, "test_accuracy": accuracy,
                          "seconds": first.seconds_total,
                          "same_selection": picks == repeat,
                          "same_accuracy": accuracy == [r.target.test_accuracy
                                                        for r in second.rounds]}
        chance = 1 / first.dataset.num_classes
        if picks != repeat:
            problems.append(f"{method}: the same seed selected different samples")
        if accuracy[-1] < 2 * chance:
            problems.append(f"{method}: test accuracy {accuracy[-1]:.3f} is under twice "
                            f"chance ({2 * chance:.2f})")
    if problems:
        raise StepFailed("; ".join(problems), report)
    return report


STEPS = (
    Step("data", 45, "decode the CIFAR-10 archive once; pf caches it for the other steps",
         ("pf.data",), run_data),
    Step("gpu tests", 100, "pytest -m gpu: replays, compile with CUDA graphs, k-centers and "
         "seeded runs on CUDA", ("pytest", "tests/conftest.py", *gpu_test_files()),
         run_gpu_tests),
    Step("trainer", 210, "bench_train: ResNet-56, real CIFAR-10, 12,800 images x 2 epochs, "
         "reference vs default, compile, compile+graphs; pool scoring of 50,000 with and "
         "without graphs",
         ("benchmarks/bench_train.py",), run_trainer),
    Step("k-centers", 15, "greedy k-centers, 5,000 picks from 50,000 x 64 features",
         ("pf.select",), run_k_centers),
    Step("packing", 50, f"{GPU.packed} ResNet-56 trainings at once on the GPU "
         "(pf sweep --per-gpu), images/s together", ("pf.executors", "pf.models", "pf.train"),
         run_packing),
    Step("active learning", 60, "the cpu preset on CUDA, budgets 1,000 and 2,000: baseline "
         "and PruneFuse p=0.5 twice each with seed 0", ("pf.experiments.run",),
         run_active_learning),
)


# ---------------------------------------------------------------------------------------
# Running the steps
# ---------------------------------------------------------------------------------------

_LOG: list[str] = []


def log(text: str) -> None:
    """Print ``text`` and keep it for the log file."""
    print(text, flush=True)
    _LOG.append(text)


def _alarm(signum, frame):
    raise TimeoutError


def run_step(step: Step, scratch: Path, scale: Scale = GPU) -> dict:
    """Run one step within its time limit; what it measured, its seconds and peak GPU
    memory, or the one-line reason it failed."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(step.limit_s)
    try:
        outcome = {"ok": True, **step.run(scratch, scale)}
    except TimeoutError:
        outcome = {"ok": False, "error": f"ran past its {step.limit_s} s"}
    except StepFailed as error:
        outcome = {"ok": False, "error": str(error), **error.measured}
    except Exception as error:  # noqa: BLE001 -- any failure is reported, not raised
        outcome = {"ok": False, "error": f"{type(error).__name__}: {error}".splitlines()[0]}
    finally:
        signal.alarm(0)
        for child in _CHILDREN:
            if child.poll() is None:
                child.kill()
                child.wait()
        _CHILDREN.clear()
    outcome["step_seconds"] = time.perf_counter() - start
    outcome["peak_gpu_gib"] = (torch.cuda.max_memory_allocated() / 2**30
                               if torch.cuda.is_available() else 0.0)
    return outcome


def source_digest() -> str:
    """sha256 of pf's and the benchmarks' Python files: names the code where git cannot
    (the GPU machine gets the working tree without its .git)."""
    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("pf/**/*.py"), *ROOT.glob("benchmarks/*.py")]):
        digest.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def check(keep_going: bool, copy_to: Path | None, scale: Scale = GPU,
          output: Path = OUTPUT) -> int:
    """Install the bundle, run every step at ``scale``, write the JSON and the log into
    ``output``; 0 when all held."""
    import torch

    if scale.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device is visible; on a CPU machine use --dry-run "
              "or --rehearse")
        return 2
    problems = bundle_problems(with_data=scale.needs_archive)
    if problems:
        print(f"gpu-check: the bundle is incomplete ({problems[0]}): run make gpu-bundle "
              "where the package registries answer, and bring .whl/ and .data/ along")
        return 2
    install_bundle()
    from pf.experiments.record import environment

    env = environment(torch.device(scale.device))
    device = env["device_name"]
    report = {"device": device, "scale": scale.name, "source_digest": source_digest(),
              "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "environment": env, "steps": {}}
    log(f"# gpu-check ({scale.name}) on {device}, torch {torch.__version__}, "
        f"code {report['source_digest']}")
    if scale is not GPU:
        log("# a rehearsal: every step on the CPU at a tiny size; the plan below is the GPU's")
    with tempfile.TemporaryDirectory(prefix="pf-gpu-check-") as scratch:
        for step in STEPS:
            log(f"## {step.name} (limit {step.limit_s} s): {step.shows}")
            outcome = report["steps"][step.name] = run_step(step, Path(scratch), scale)
            log(f"{step.name}: {'ok' if outcome['ok'] else 'FAILED: ' + outcome['error']} "
                f"in {outcome['step_seconds']:.0f} s, peak GPU memory "
                f"{outcome['peak_gpu_gib']:.2f} GiB")
            if not outcome["ok"] and not keep_going:
                break
    failed = [name for name, outcome in report["steps"].items() if not outcome["ok"]]
    log(summary(report))
    log(f"gpu-check: FAILED: {', '.join(failed)}" if failed else "gpu-check: every step held")
    stem = f"{report['started'][:10]}-{re.sub(r'[^A-Za-z0-9]+', '-', device).strip('-')}"
    if scale is not GPU:
        stem = f"{scale.name}-{stem}"
    output.mkdir(parents=True, exist_ok=True)
    written = [output / f"{stem}.json", output / f"{stem}.log"]
    written[0].write_text(json.dumps(report, indent=1) + "\n")
    written[1].write_text("\n".join(_LOG) + "\n")
    for path in written:
        if copy_to:
            shutil.copy(path, copy_to)
    print(f"gpu-check: wrote {', '.join(map(str, written))}")
    return 1 if failed else 0


def summary(report: dict) -> str:
    """The measured figures as a short Markdown table (the last lines of the output).
    Reads only what the steps that held returned."""
    rows = ["| step | figure |", "|---|---|"]
    steps = report["steps"]
    for row in steps.get("trainer", {}).get("rows", []):
        rows.append(f"| {row['phase']} {row['variant']} | {row['images_per_second']:,.0f} "
                    f"images/s, {row['ratio']:.2f}x reference, {row['seconds_per_epoch']:.2f} "
                    "s per 50,000 images |")
    if "images_per_second" in steps.get("packing", {}):
        packing = steps["packing"]
        rows.append(f"| train, {packing['workers']} packed workers | "
                    f"{packing['images_per_second']:,.0f} images/s together, "
                    f"{packing['seconds_per_epoch']:.2f} s per 50,000 images |")
    if "pick_seconds" in steps.get("k-centers", {}):
        picked = steps["k-centers"]
        rows.append(f"| k-centers {picked['picks']:,} of {picked['pool']:,} x {picked['dims']} | "
                    f"{picked['pick_seconds']:.2f} s |")
    for method, run in steps.get("active learning", {}).items():
        if isinstance(run, dict) and "test_accuracy" in run:
            rows.append(f"| AL {method}, {run['labels']:,} labels | test accuracy "
                        f"{run['test_accuracy'][-1]:.3f}, same selection twice: "
                        f"{run['same_selection']}, {run['seconds']:.0f} s |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------
# The dry run (on any machine)
# ---------------------------------------------------------------------------------------


def dry_run(with_data: bool = True) -> int:
    """Print the plan; check the bundle (without the data: ``with_data=False``) and every
    step's imports. 0 when all hold."""
    total = sum(step.limit_s for step in STEPS)
    print(f"gpu-check plan: {len(STEPS)} steps, at most {total} s ({total / 60:.1f} min)")
    for step in STEPS:
        print(f"  {step.name:16} {step.limit_s:4d} s  {step.shows}")
    print(f"  bundle: {', '.join(f'{n}=={v}' for n, v in locked_versions().items())} "
          f"(.whl/), cifar10-jpeg.tar.gz (.data/)")
    problems = bundle_problems(with_data)
    if not with_data:
        print("  (the CIFAR-10 archive is not checked: --without-data)")
    if total > PLAN_LIMIT_S:
        problems.append(f"the steps' limits add up to {total} s, over {PLAN_LIMIT_S} s")
    if not problems:
        problems = import_problems(sorted({name for step in STEPS for name in step.imports}))
    for problem in problems:
        print(f"gpu_check: {problem}")
    print("gpu-check dry run: " + ("FAILED" if problems else
                                   "the plan imports as the GPU machine would, bundle complete"))
    return 1 if problems else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="plan, imports and bundle only")
    mode.add_argument("--bundle", action="store_true", help="fetch the wheels and the data")
    mode.add_argument("--rehearse", action="store_true",
                      help="every step on the CPU at a tiny size, to check the check")
    mode.add_argument("--pack-worker", choices=SCALES, help=argparse.SUPPRESS)
    parser.add_argument("--without-data", action="store_true",
                        help="dry run: leave the CIFAR-10 archive out of the bundle check")
    parser.add_argument("--keep-going", action="store_true",
                        help="after a failed step, run the next ones")
    parser.add_argument("--copy-to", type=Path, help="also copy the JSON and the log here")
    parser.add_argument("--output", type=Path, default=OUTPUT,
                        help=f"where the JSON and the log go (default: {OUTPUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if args.pack_worker:
        pack_worker(SCALES[args.pack_worker])
        return 0
    if args.bundle:
        return bundle()
    if args.dry_run:
        return dry_run(not args.without_data)
    return check(args.keep_going, args.copy_to, REHEARSAL if args.rehearse else GPU,
                 args.output)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
