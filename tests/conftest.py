"""Shared fixtures and helpers (fakes of runs and networks: tests/fakes.py). Tests run on CPU
with a private data directory unless stated."""

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from matplotlib.text import Text

from pf.analysis.plotting import theme
from pf.data import cifar10_jpeg_path, load_dataset
from pf.experiments.record import SELECTED_FILE, TIMING_FIELDS, read_record

SHARED_CIFAR10 = cifar10_jpeg_path()  # the real CIFAR-10 (JPEG) beside the project, if any
PROJECT = Path(__file__).resolve().parents[1]  # the checkout: tests/ sits in it
BENCHMARKS = PROJECT / "benchmarks"


def git(folder, *args: str) -> str:
    """Run git in ``folder`` (a scratch repository of a test); its standard output."""
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          check=True).stdout


def load_benchmark(name: str):
    """A script of benchmarks/ (a folder, not a package), imported as its siblings import
    it when run: with the folder on the path."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


# Under pytest-xdist every core already runs a worker: more threads per worker (or per
# pf/kernel subprocess, which inherit OMP_NUM_THREADS) only make them fight over cores.
THREADS = 1 if "PYTEST_XDIST_WORKER" in os.environ else 2


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path_factory, monkeypatch):
    """Point PF_DATA at a per-session folder (tests never touch the user's cache); set threads."""
    monkeypatch.setenv("PF_DATA", str(tmp_path_factory.getbasetemp() / "pf-data"))
    monkeypatch.setenv("OMP_NUM_THREADS", str(THREADS))
    torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def synthetic():
    """The small learnable dataset every trainer test uses."""
    return load_dataset("synthetic")


def text_sizes(figure) -> tuple[set, set]:
    """The font sizes of ``figure``'s panel titles, and of every other text it shows, drawn
    as ``per_dataset`` draws it (in ``theme``; ticks are made when drawn)."""
    with theme():
        figure.canvas.draw()
    shown = [text for text in figure.findobj(Text) if text.get_visible() and text.get_text()]
    titles = {ax.title for ax in figure.axes}
    return ({text.get_fontsize() for text in shown if text in titles},
            {text.get_fontsize() for text in shown if text not in titles})


def assert_same_run(resumed: Path, uninterrupted: Path) -> None:
    """The run folder ``resumed`` holds what ``uninterrupted`` holds: every round but its
    timing (wall-clock and load: the only things that differ between two runs of one config
    on one machine), the networks, the config and the selections."""
    first, second = read_record(resumed), read_record(uninterrupted)
    rounds = [[{**round_, **dict.fromkeys(TIMING_FIELDS)}
               for round_ in record.to_json()["rounds"]] for record in (first, second)]
    assert rounds[0] == rounds[1]
    assert first.networks == second.networks and first.config == second.config
    assert ((resumed / SELECTED_FILE).read_text()
            == (uninterrupted / SELECTED_FILE).read_text())


def freezing(checkpoint: Path, rounds: int) -> dict[str, str]:
    """Environment variables under which the run saving ``checkpoint``, in a child process
    tree, freezes right after saving round ``rounds`` (tests/freeze_after_round): a test
    that polls the checkpoint (``wait_for_rounds``) then stops the run at that round on a
    CPU of any speed and load. A run that continued from a checkpoint does not freeze."""
    path = [str(PROJECT / "tests" / "freeze_after_round"), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(filter(None, path)),
            "PF_TEST_FREEZE_CHECKPOINT": str(checkpoint),
            "PF_TEST_FREEZE_AFTER_ROUND": str(rounds)}


def wait_for_rounds(checkpoint: Path, rounds: int, running) -> int:
    """Poll a run's ``checkpoint`` until it says ``rounds`` rounds are done, or
    ``running()`` turns false, or 4 minutes pass; return how many it says are done."""
    deadline, done = time.monotonic() + 240, 0
    while done < rounds and running() and time.monotonic() < deadline:
        time.sleep(0.02)
        try:
            done = torch.load(checkpoint, weights_only=False)["rounds_done"]
        except (OSError, EOFError, RuntimeError):  # not written yet
            pass
    return done
