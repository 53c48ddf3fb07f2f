"""The `pf` command: end to end through the console script, as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

# The console script installed beside this interpreter (the venv's bin/).
PF = str(Path(sys.executable).with_name("pf"))


def test_the_console_script_is_installed():
    assert Path(PF).exists(), "pip install -e . did not install the pf script"


def _pf(*args, cwd=None):
    return subprocess.run([PF, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_every_command():
    result = _pf("--help")
    assert result.returncode == 0
    for command in ("run", "config"):
        assert command in result.stdout


def test_smoke_run_writes_the_metrics_contract(tmp_path):
    out = tmp_path / "run"
    result = _pf("run", "--preset", "smoke", "--set", "seed=1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["seed"] == metrics["seed"] == 1
    assert [r["labeled"] for r in metrics["rounds"]] == metrics["config"]["budgets"]
    for round_ in metrics["rounds"]:
        target = round_["target"]
        assert len(target["curve"]) == 2 and target["test_accuracy"] == target["curve"][-1]
        assert set(round_["seconds"]) == {"selection", "target_training"}
        assert round_["macs"]["target_training"] > 0
    assert "MACs" in metrics["macs_unit"]
    env = metrics["environment"]
    assert env["device"] == "cpu" and env["torch"] and env["git_commit"]
    labeled = json.loads((out / "labeled.json").read_text())
    assert len(set(labeled["order"])) == len(labeled["order"]) == metrics["config"]["budgets"][-1]
    assert not list(out.glob(".*tmp"))


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
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    result = _pf("run", "--preset", "smoke", *args, "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1
    assert not out.exists()


def test_config_prints_the_resolved_parameters():
    result = _pf("config", "--preset", "demo", "--set", "seed=7")
    assert result.returncode == 0
    assert json.loads(result.stdout)["seed"] == 7
