"""pf.provenance: which code and libraries made a run, and the warning before a dirty run."""

import json
import sys
from importlib import metadata
from pathlib import Path

import pytest

from conftest import git
from pf import provenance


def _notebook(code: str, output: str = "") -> str:
    cell = {"cell_type": "code", "source": code, "metadata": {}, "execution_count": None,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": output}]}
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A committed project folder that pf.provenance takes for its own."""
    (tmp_path / "pf").mkdir()
    (tmp_path / "pf" / "step.py").write_text("x = 1\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "run.ipynb").write_text(_notebook("print(1)"))
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    monkeypatch.setattr(provenance, "_project_root", lambda: tmp_path)
    return tmp_path


def test_outputs_do_not_make_a_tree_dirty(project):
    (project / "results").mkdir()
    (project / "results" / "metrics.json").write_text("{}")  # a sweep writing its runs
    (project / "README.md").write_text("notes")
    (project / "notebooks" / "run.ipynb").write_text(_notebook("print(1)", output="1\n"))
    state = provenance.code_state()
    assert state["git_dirty"] is False and state["dirty_files"] == []
    assert len(state["git_commit"]) == 40
    assert provenance.dirty_warning(state) is None


@pytest.mark.parametrize("change", ["edit module", "new module", "edit notebook code"])
def test_code_changes_make_a_tree_dirty(project, change):
    path = {"edit module": "pf/step.py", "new module": "pf/extra.py",
            "edit notebook code": "notebooks/run.ipynb"}[change]
    text = _notebook("print(2)") if path.endswith(".ipynb") else "x = 2\n"
    (project / path).write_text(text)
    state = provenance.code_state()
    assert state["git_dirty"] is True and state["dirty_files"] == [path]
    warning = provenance.dirty_warning(state)
    assert warning.startswith("pf: warning: uncommitted changes in " + path)
    assert "+dirty" in warning and "\n" not in warning


def test_outside_git_nothing_is_claimed(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "_project_root", lambda: tmp_path)
    assert provenance.code_state() == {"git_commit": "unknown", "git_dirty": None,
                                       "dirty_files": []}


def test_lock_state_names_what_differs_from_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "_project_root", lambda: tmp_path)
    assert provenance.lock_state() is None  # no lock: an installed pf
    torch_version = metadata.version("torch")
    lock = tmp_path / provenance.LOCK_FILE
    lock.write_text(f"# comment\ntorch=={torch_version}\n")
    matching = provenance.lock_state()
    assert matching["matches"] and matching["differences"] == 0
    lock.write_text(f"torch=={torch_version}\nPyYAML==0.0.1\nno-such-package==1.0\n")
    state = provenance.lock_state()
    assert not state["matches"] and state["differences"] == 2
    assert state["differs"][0] == f"PyYAML: installed {metadata.version('pyyaml')}, locked 0.0.1"
    assert state["differs"][1] == "no-such-package: installed missing, locked 1.0"
    assert state["sha256"] != matching["sha256"]


@pytest.mark.skipif(Path(sys.prefix).resolve() != Path(provenance.__file__).resolve().parents[1]
                    / ".venv", reason="runs in make's environment (.venv) only")
def test_the_projects_own_lock_matches_this_environment():
    """make installs the lock; its environment is therefore exactly the locked one."""
    state = provenance.lock_state()
    assert state is not None and state["matches"], state["differs"]


def test_pf_run_warns_before_a_dirty_run_and_records_it(tmp_path, monkeypatch, capsys):
    from pf.cli import main

    dirty = {"git_commit": "a" * 40, "git_dirty": True, "dirty_files": ["pf/train.py"]}
    monkeypatch.setattr(provenance, "code_state", lambda: dirty)
    assert main(["run", "--preset", "smoke", "--out", str(tmp_path)]) == 0
    assert "pf: warning: uncommitted changes in pf/train.py" in capsys.readouterr().err
    env = json.loads((tmp_path / "metrics.json").read_text())["environment"]
    assert env["git_commit"] == "a" * 40 + "+dirty" and env["git_dirty"] is True
    assert env["dirty_files"] == ["pf/train.py"] and "matches" in env["lock"]
