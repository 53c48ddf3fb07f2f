"""The prepared GPU check (benchmarks/gpu_check.py, gpu_bundle.py): its dry run, its
rehearsal, its bundle check and how it runs and reports steps, on a machine without a
GPU."""

import json
import subprocess
import sys
import time

import pytest
import torch
from conftest import PROJECT, load_benchmark

from pf.data import cifar10_jpeg_path

SCRIPT = PROJECT / "benchmarks" / "gpu_check.py"


gpu_check = load_benchmark("gpu_check")
gpu_bundle = load_benchmark("gpu_bundle")
needs_bundle = pytest.mark.skipif(not any(gpu_bundle.WHEELS.glob("*.whl")),
                                  reason="no bundle: make gpu-bundle (make test builds it)")


@pytest.mark.slow
@needs_bundle
def test_the_dry_run_passes_with_the_bundle_make_test_builds():
    """What CI checks: the plan fits 8 minutes, the bundled wheels are the locked ones, and
    every step's code imports in a Python that sees only the GPU machine's packages."""
    has_data = (gpu_bundle.DATA / "cifar10-jpeg.tar.gz").exists() or cifar10_jpeg_path().exists()
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run",
                           *([] if has_data else ["--without-data"])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bundle complete" in done.stdout
    assert f"{len(gpu_check.STEPS)} steps" in done.stdout


def test_the_bundle_check_names_missing_duplicate_and_stale_wheels(tmp_path, monkeypatch):
    versions = gpu_bundle.locked_versions()
    monkeypatch.setattr(gpu_bundle, "WHEELS", tmp_path)
    monkeypatch.setattr(gpu_bundle, "DATA", tmp_path)
    for name, version in versions.items():
        (tmp_path / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").touch()
    (tmp_path / "cifar10-jpeg.tar.gz").touch()
    assert gpu_bundle.bundle_problems() == []
    (tmp_path / "yacs-0.0.1-py3-none-any.whl").touch()  # a second version stops pip there
    (tmp_path / f"termcolor-{versions['termcolor']}-py3-none-any.whl").unlink()
    (tmp_path / "cifar10-jpeg.tar.gz").unlink()
    problems = gpu_bundle.bundle_problems()
    assert [p.split(":")[0] for p in problems] == [
        f"yacs=={versions['yacs']}", f"termcolor=={versions['termcolor']}", "cifar10-jpeg.tar.gz"]
    assert len(gpu_bundle.bundle_problems(with_data=False)) == 2


def test_the_plan_fits_its_eight_minutes_and_each_step_runs_something():
    assert sum(step.limit_s for step in gpu_check.STEPS) <= gpu_check.PLAN_LIMIT_S
    assert all(step.imports and callable(step.run) for step in gpu_check.STEPS)
    assert "tests/test_graphs.py" in gpu_check.gpu_test_files()


def _step(run, limit_s=5):
    return gpu_check.Step("fake", limit_s, "a fake step", ("pf",), run)


def test_a_step_reports_what_it_measured_or_why_it_failed_in_one_line(tmp_path):
    held = gpu_check.run_step(_step(lambda scratch, scale: {"images": 3}), tmp_path)
    assert held["ok"] and held["images"] == 3 and held["step_seconds"] >= 0

    def check_fails(scratch, scale):
        raise gpu_check.StepFailed("the same seed selected different samples", {"runs": 2})

    failed = gpu_check.run_step(_step(check_fails), tmp_path)
    assert failed == {**failed, "ok": False, "runs": 2,
                      "error": "the same seed selected different samples"}

    def breaks(scratch, scale):
        raise RuntimeError("CUDA error: an illegal memory access\nmore lines")

    broken = gpu_check.run_step(_step(breaks), tmp_path)
    assert broken["error"] == "RuntimeError: CUDA error: an illegal memory access"


def test_a_step_past_its_limit_is_stopped_with_its_processes(tmp_path):
    started = []

    def hangs(scratch, scale):
        started.append(gpu_check._start([sys.executable, "-c", "import time; time.sleep(60)"]))
        started[0].wait()

    begin = time.perf_counter()
    outcome = gpu_check.run_step(_step(hangs, limit_s=1), tmp_path)
    assert outcome["ok"] is False and outcome["error"] == "ran past its 1 s"
    assert time.perf_counter() - begin < 30
    assert started[0].poll() is not None  # killed, not left running on the GPU


def test_the_summary_reads_what_each_step_returned():
    report = {"steps": {
        "trainer": {"ok": True, "rows": [
            {"phase": "train", "variant": "pf compile+graphs", "images_per_second": 40_000.0,
             "ratio": 6.1, "seconds_per_epoch": 1.25}]},
        "packing": {"ok": True, "workers": 4, "images_per_second": 80_000.0,
                    "seconds_per_epoch": 0.625},
        "k-centers": {"ok": True, "pool": 50_000, "dims": 64, "picks": 5_000,
                      "pick_seconds": 0.8},
        "active learning": {"ok": False, "error": "x", "step_seconds": 9.0,
                            "baseline": {"labels": 2000, "test_accuracy": [0.3, 0.41],
                                         "seconds": 12.0, "same_selection": True}},
    }}
    lines = gpu_check.summary(report).splitlines()
    assert lines[2] == ("| train pf compile+graphs | 40,000 images/s, 6.10x reference, 1.25 s "
                        "per 50,000 images |")
    assert "80,000 images/s together, 0.62 s per 50,000 images" in lines[3]
    assert lines[4] == "| k-centers 5,000 of 50,000 x 64 | 0.80 s |"
    assert lines[5] == ("| AL baseline, 2,000 labels | test accuracy 0.410, same selection "
                        "twice: True, 12 s |")


@pytest.mark.slow
@needs_bundle
def test_the_rehearsal_runs_every_step_end_to_end_on_the_cpu(tmp_path):
    """The whole check at a tiny size: installing the bundle, every step's own code, the
    packed workers, the report and the log."""
    done = subprocess.run([sys.executable, str(SCRIPT), "--rehearse", "--keep-going",
                           "--output", str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.splitlines()[-2] == "gpu-check: every step held"
    (report,) = tmp_path.glob("rehearsal-*.json")
    steps = json.loads(report.read_text())["steps"]
    assert list(steps) == [step.name for step in gpu_check.STEPS]
    assert all(outcome["ok"] for outcome in steps.values())
    assert steps["packing"]["workers"] == gpu_check.REHEARSAL.packed
    for method in ("baseline", "prunefuse"):
        assert steps["active learning"][method]["same_selection"]
    assert len(list(tmp_path.glob("rehearsal-*.log"))) == 1


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_without_a_gpu_the_check_says_so_in_one_line():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stdout == ("gpu-check: no CUDA device is visible; on a CPU machine use "
                           "--dry-run or --rehearse\n")
