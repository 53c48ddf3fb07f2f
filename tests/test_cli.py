"""The `pf` command: end to end through the console script, as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT
from pf.experiments.record import cpu_identity
from pf.prune import load_channel_map

pytestmark = pytest.mark.slow  # runs pf in subprocesses

# The console script installed beside this interpreter (the venv's bin/).
PF = str(Path(sys.executable).with_name("pf"))


def test_the_console_script_is_installed():
    assert Path(PF).exists(), "pip install -e . did not install the pf script"


def _pf(*args, cwd=None):
    return subprocess.run([PF, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_every_command():
    result = _pf("--help")
    assert result.returncode == 0
    for command in ("run", "config", "flops"):
        assert command in result.stdout


PHASES = {"selector_training", "selector_sync", "target_training", "pool_scoring",
          "data_selection"}


@pytest.mark.parametrize("method", ["baseline", "svp", "prunefuse"])
def test_smoke_run_of_each_method_writes_the_metrics_contract(tmp_path, method):
    out = tmp_path / "run"
    result = _pf("run", "--preset", "smoke", "--set", "seed=1", "--set", f"method={method}",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["seed"] == metrics["seed"] == 1 and metrics["method"] == method
    budgets = metrics["config"]["budgets"]
    assert [r["labeled"] for r in metrics["rounds"]] == budgets
    for round_ in metrics["rounds"]:
        target = round_["target"]
        assert len(target["curve"]) == 2 and target["test_accuracy"] == target["curve"][-1]
        assert set(round_["seconds"]) == PHASES | {"evaluation"}
        assert set(round_["macs"]) == PHASES | {"evaluation", "distillation"}
        assert round_["macs"]["target_training"] > 0
    assert metrics["rounds"][0]["selector"]["test_accuracy"] >= 0
    assert "MACs" in metrics["macs_unit"]
    assert metrics["networks"]["target"]["forward_macs"] > 0
    env = metrics["environment"]
    assert env["device"] == "cpu" and env["torch"] and env["git_commit"]
    assert env["cpu"] == cpu_identity() and env["device_name"] == env["cpu"]["name"]
    selected = json.loads((out / metrics["selected_file"]).read_text())
    labeled = [i for added in selected["added"] for i in added]
    assert selected["budgets"] == budgets and len(set(labeled)) == len(labeled) == budgets[-1]
    has_map = (out / "channel_map.json").exists()
    assert has_map == (method == "prunefuse") == (metrics["channel_map_file"] is not None)
    if has_map:
        assert load_channel_map(out / "channel_map.json")["widths"] == metrics["pruned_widths"]
    assert not list(out.glob(".*tmp"))


def test_flops_prints_params_and_macs_with_the_unit():
    result = _pf("flops", "--arch", "resnet20", "--prune", "0.5")
    assert result.returncode == 0, result.stderr
    assert "MACs" in result.stdout.splitlines()[0]
    dense, pruned = result.stdout.splitlines()[2:4]
    # 3x3 convs 40,550,400 + fc 640 + the two 1x1 projection shortcuts 2 x 131,072.
    assert dense.split()[:3] == ["resnet20", "272,474", "40,813,184"]
    assert pruned.startswith("resnet20 p=0.5")


@pytest.mark.parametrize("args, message", [
    (["--set", "arch=resnet7"], "pf: error: arch: unknown model 'resnet7'"),
    (["--set", "budgets=[128,64]"], "pf: error: budgets: must be strictly increasing"),
    (["--set", "budgets=[64,100000]"], "pf: error: budgets: 100000 exceeds the 512 training"),
    (["--set", "nonsense=1"], "pf: error: nonsense: unknown parameter"),
    (["--set", "batch_size=big"], "pf: error: batch_size: expected int"),
    (["--set", "dataset=imagefolder:/nowhere"], "pf: error: imagefolder: nothing at /nowhere"),
    (["--set", "noequals"], "pf: error: --set: expected key=value"),
    (["--preset", "huge"], "pf: error: preset: unknown preset 'huge'"),
    (["--bogus"], "pf: error: unrecognized arguments: --bogus"),
    (["--set", "method=al"], "pf: error: method: 'al' is not one of baseline, svp, prunefuse"),
    (["--set", "prune_ratio=1.0"], "pf: error: prune_ratio: must lie in [0, 1)"),
    (["--set", "metric=coreset"], "pf: error: metric: 'coreset' is not one of random"),
    (["--set", "selector_lr_schedule=[[0,1]]"], "pf: error: selector_lr_schedule: expected"),
    (["--set", "experiment=data_pruning"],
     "pf: error: score_lr_schedule: du needs a scoring run of at least 10 epochs"),
    (["--set", "experiment=data_pruning", "--set", "removed_fractions=[0.5,1]"],
     "pf: error: removed_fractions:"),
    (["--set", "method=prune_data"],  # the older name still reads
     "pf: error: score_lr_schedule: du needs a scoring run of at least 10 epochs"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    result = _pf("run", "--preset", "smoke", *args, "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1
    assert not out.exists()


def test_smoke_data_pruning_run_writes_metrics_kept_sets_and_scores(tmp_path):
    out = tmp_path / "run"
    result = _pf("run", "--preset", "smoke", "--set", "experiment=data_pruning",
                 "--set", "score=el2n", "--set", "removed_fractions=[0.5]", "--out", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert [(r["selection"], r["labeled"]) for r in metrics["rounds"]] == [("score", 256),
                                                                          ("random", 256)]
    assert metrics["scores"]["score"] == "el2n" and metrics["channel_map_file"] is None
    assert len(json.loads((out / "scores.json").read_text())["scores"]) == 512
    kept = json.loads((out / "selected.json").read_text())["kept"]
    assert [len(set(k)) for k in kept] == [256, 256]


def test_config_prints_the_resolved_parameters():
    result = _pf("config", "--preset", "demo", "--set", "seed=7")
    assert result.returncode == 0
    assert json.loads(result.stdout)["seed"] == 7


def test_figures_prints_every_sweeps_tables_and_what_it_drew(tmp_path):
    from fakes import fake_pruning_record, write_run

    for seed in (0, 1):
        write_run(tmp_path / "al", f"baseline_s{seed}", method="baseline", seed=seed)
        fake_pruning_record(seed, source="full").write(tmp_path / "pruning" / f"full_s{seed}")
    result = _pf("figures", str(tmp_path), "--out", str(tmp_path / "figures"))
    assert result.returncode == 0, result.stderr
    assert "al: Target test accuracy" in result.stdout
    assert "pruning: Test accuracy (%, test split, final epoch) of the target" in result.stdout
    drawn = tmp_path / "figures" / "pruning" / "accuracy_vs_prune_rate.png"
    assert f"pruning/accuracy_vs_prune_rate: {drawn}" in result.stdout
    assert "al/score_correlation: score_correlation not drawn: no runs found" in result.stdout


def test_figures_of_a_missing_folder_is_a_one_line_error(tmp_path):
    result = _pf("figures", str(tmp_path / "nothing"))
    assert result.returncode == 2
    assert result.stderr == (f"pf: error: results: no folder {tmp_path / 'nothing'}; "
                             "run pf sweep or pf run first\n")


def _smoke_sweep(tmp_path) -> Path:
    """A one-run sweep file over the real prunefuse notebook."""
    notebooks = PROJECT / "notebooks"
    (tmp_path / "prunefuse.ipynb").write_bytes((notebooks / "prunefuse.ipynb").read_bytes())
    (tmp_path / "sweeps").mkdir()
    path = tmp_path / "sweeps" / "smoke.yaml"
    path.write_text("notebook: prunefuse.ipynb\npreset: smoke\n")
    return path


def test_sweep_passes_memory_and_cpus_per_task_to_slurm(tmp_path, monkeypatch):
    import submitit

    from pf.cli import main

    # submitit's Slurm executor only needs to find srun to be built; nothing is submitted.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    slurm = {}

    def map_array(executor, function, runs):
        slurm.update(executor._executor.parameters)  # what submitit turns into #SBATCH lines
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    status = main(["sweep", str(_smoke_sweep(tmp_path)), "--results", str(tmp_path / "results"),
                   "--executor", "slurm", "--mem-gb", "48", "--cpus-per-task", "6", "--gpus", "2",
                   "--partition", "gpu"])
    assert status == 0
    assert {key: slurm.get(key) for key in ("mem", "cpus_per_task", "gpus_per_node",
                                            "partition")} == {
        "mem": "48GB", "cpus_per_task": 6, "gpus_per_node": 2, "partition": "gpu"}


@pytest.mark.parametrize("option, message", [
    (["--mem-gb", "0"], "pf: error: mem-gb: must be a positive number of GB, got 0.0"),
    (["--cpus-per-task", "0"], "pf: error: cpus-per-task: must be a positive integer, got 0"),
    (["--gpus", "-1"], "pf: error: gpus: must be 0 or more, got -1"),
])
def test_bad_slurm_resources_are_one_line_exit_2(tmp_path, capsys, option, message):
    from pf.cli import main

    status = main(["sweep", str(_smoke_sweep(tmp_path)), "--results", str(tmp_path / "results"),
                   "--executor", "slurm", *option])
    assert status == 2 and capsys.readouterr().err == message + "\n"
    assert not (tmp_path / "results").exists()
