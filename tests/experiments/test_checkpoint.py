"""Round checkpoints: a run killed after a round continues from it, and ends with the record
and selections of a run that was never interrupted (``pf.experiments.checkpoint``)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pf.experiments.checkpoint import Checkpoint
from pf.experiments.config import make_config
from pf.experiments.record import CHECKPOINT_FILE, read_record
from pf.experiments.run import run_experiment
from conftest import assert_same_run, freezing, wait_for_rounds

PF = str(Path(sys.executable).with_name("pf"))
# Six rounds whose networks carry over: a warm selector, syncs at rounds 2 and 4 (pruned
# from the previous round's trained target) and fusion into that target.
CARRYING = ["method=prunefuse", "budgets=[64,128,192,256,320,384]", "lr_schedule=[[2,0.05]]",
            "sync_every=2", "selector_start=warm", "fuse_into=source"]


def _kill_after_round(command: list[str], checkpoint: Path, rounds: int) -> int:
    """Start ``command`` in a session of its own, frozen once it saved round ``rounds``
    (``conftest.freezing``), and SIGKILL all of it there; return how many rounds the
    checkpoint holds after the kill."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True,
                               env={**os.environ, **freezing(checkpoint, rounds)})
    wait_for_rounds(checkpoint, rounds, lambda: process.poll() is None)
    assert process.poll() is None, f"finished before the kill: {process.stderr.read()[-500:]}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return torch.load(checkpoint, weights_only=False)["rounds_done"]  # saved atomically


def _settings(items: list[str]) -> list[str]:
    return [part for item in items for part in ("--set", item)]


@pytest.mark.slow  # three runs in subprocesses
def test_a_run_killed_after_its_second_round_resumes_and_ends_as_if_never_stopped(tmp_path):
    run = [PF, "run", "--preset", "smoke", *_settings(CARRYING)]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = subprocess.run([*run, "--out", str(whole)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert not (whole / CHECKPOINT_FILE).exists()  # deleted once the run finished

    rounds_done = _kill_after_round([*run, "--out", str(killed)], killed / CHECKPOINT_FILE, 2)
    assert rounds_done == 2 and not (killed / "metrics.json").exists()
    resumed = subprocess.run([*run, "--out", str(killed), "--keep-checkpoint"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(killed, whole)
    assert read_record(killed).resumed_at_rounds == [rounds_done]
    assert read_record(whole).resumed_at_rounds == []
    assert (killed / CHECKPOINT_FILE).exists()  # --keep-checkpoint


class _Stop(Exception):
    """Stands for a process killed in the middle of a round."""


def _stop_in(monkeypatch, module: str, trainings: int) -> None:
    """Make ``module``'s ``fit`` raise ``_Stop`` at its call number ``trainings + 1``."""
    from pf import train

    calls = []

    def fit(*args, **kwargs):
        calls.append(1)
        if len(calls) > trainings:
            raise _Stop
        return train.fit(*args, **kwargs)

    monkeypatch.setattr(f"{module}.fit", fit)


# The settings, and how many trainings run before the stop: the first round's (one for the
# baseline, selector and target for the others), plus the second round's selector for SVP.
@pytest.mark.parametrize("settings, trainings", [
    ({"method": "baseline", "metric": "kcenters"}, 1),
    ({"method": "svp", "selector_start": "warm"}, 3),
    ({"method": "prunefuse", "sync_every": 1}, 2),
])
def test_an_active_learning_run_stopped_in_round_two_ends_with_the_uninterrupted_record(
        tmp_path, monkeypatch, settings, trainings):
    config = make_config("smoke", {"budgets": [64, 96, 128], "lr_schedule": [[1, 0.05]],
                                   **settings})
    run_experiment(config, tmp_path / "whole", progress=False)
    with monkeypatch.context() as patch:
        _stop_in(patch, "pf.experiments.active_learning", trainings)
        with pytest.raises(_Stop):
            run_experiment(config, tmp_path / "stopped", progress=False)
    assert torch.load(tmp_path / "stopped" / CHECKPOINT_FILE,
                      weights_only=False)["rounds_done"] == 1
    run_experiment(config, tmp_path / "stopped", progress=False)
    assert_same_run(tmp_path / "stopped", tmp_path / "whole")
    assert read_record(tmp_path / "stopped").resumed_at_rounds == [1]
    assert not (tmp_path / "stopped" / CHECKPOINT_FILE).exists()


def test_a_data_pruning_run_stopped_after_its_scoring_ends_with_the_uninterrupted_record(
        tmp_path, monkeypatch):
    config = make_config("smoke", {"experiment": "data_pruning", "score": "el2n",
                                   "removed_fractions": [0.3, 0.5], "lr_schedule": [[2, 0.05]]})
    run_experiment(config, tmp_path / "whole", progress=False)
    with monkeypatch.context() as patch:
        _stop_in(patch, "pf.experiments.data_pruning", 2)  # scoring, then one retraining
        with pytest.raises(_Stop):
            run_experiment(config, tmp_path / "stopped", progress=False)
    run_experiment(config, tmp_path / "stopped", progress=False)
    assert_same_run(tmp_path / "stopped", tmp_path / "whole")
    assert read_record(tmp_path / "stopped").resumed_at_rounds == [1]
    scores = [json.loads((tmp_path / run / "scores.json").read_text())
              for run in ("stopped", "whole")]
    assert scores[0] == scores[1]


def test_a_checkpoint_of_another_config_is_ignored_with_a_warning(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    Checkpoint(path, {"seed": 0}).save(1, {"next_round": 1})
    with pytest.warns(UserWarning, match="another configuration .*seed"):
        assert Checkpoint(path, {"seed": 1}).load() is None
    path.write_bytes(b"half a file")
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        assert Checkpoint(path, {"seed": 0}).load() is None


def test_loading_restores_the_global_generator_and_counts_the_seconds(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    saved = Checkpoint(path, {"seed": 0})
    torch.manual_seed(3)
    saved.save(2, {"next_round": 2})
    expected = torch.rand(3)
    torch.manual_seed(99)
    loaded = Checkpoint(path, {"seed": 0})
    assert loaded.load() == {"next_round": 2}
    assert torch.equal(torch.rand(3), expected)
    assert loaded.resumed_at == [2] and loaded.seconds() >= loaded.seconds_before > 0
