"""JupyterLab's saves never dirty `git status` with outputs: the notebook filter and the
Jupyter server's save hook as `make setup` configures them, driven through the server's own
contents manager in a scratch repository."""

import asyncio
import logging
import shutil
import subprocess
from types import SimpleNamespace

import nbformat
import pytest
from jupyter_server.serverapp import ServerApp

from conftest import PROJECT, git
from pf.notebook_saves import refresh_git_index

NOTEBOOK = "notebooks/quickstart.ipynb"


def _configured_filter() -> str:
    clean = subprocess.run(["git", "-C", str(PROJECT), "config", "filter.nbstripout.clean"],
                           capture_output=True, text=True).stdout.strip()
    if not clean:
        pytest.skip("no notebook filter configured in this checkout (make setup configures it)")
    return clean


@pytest.fixture
def checkout(tmp_path):
    """A scratch repository holding the committed quickstart notebook, checked out as a clone
    has it (git's index records the stripped file's size), with this checkout's filter."""
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "filter.nbstripout.clean", _configured_filter())
    git(tmp_path, "config", "filter.nbstripout.smudge", "cat")
    for name in (".gitattributes", ".gitignore"):  # the filter; JupyterLab's checkpoints
        shutil.copy(PROJECT / name, tmp_path)
    (tmp_path / "notebooks").mkdir()
    shutil.copy(PROJECT / NOTEBOOK, tmp_path / NOTEBOOK)
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "notebooks")
    return tmp_path


def _save(contents_manager, change) -> None:
    """What JupyterLab does on save: fetch the model, change it, PUT it back."""
    model = asyncio.run(contents_manager.get(NOTEBOOK))
    change(model["content"])
    asyncio.run(contents_manager.save(model, NOTEBOOK))


def _run_first_cell(notebook) -> None:
    code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    code.execution_count = 1
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="explored\n")]


def _edit_parameters(notebook) -> None:
    cell = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    cell.source += "\nseed = 7"


def test_saved_outputs_leave_git_status_clean_and_edits_still_show(checkout):
    app = ServerApp()
    app.load_config_file()  # the settings file make setup writes into .venv, as the server reads it
    assert app.config.ContentsManager.post_save_hook == "pf.notebook_saves.refresh_git_index"
    contents_manager = app.contents_manager_class(config=app.config, root_dir=str(checkout))

    _save(contents_manager, _run_first_cell)
    assert "explored" in (checkout / NOTEBOOK).read_text()  # the user keeps the outputs
    assert git(checkout, "status", "--porcelain") == ""

    _save(contents_manager, _edit_parameters)
    assert git(checkout, "status", "--porcelain") == f" M {NOTEBOOK}\n"
    git(checkout, "add", NOTEBOOK)
    staged = git(checkout, "show", f":{NOTEBOOK}")
    assert "seed = 7" in staged and "explored" not in staged


def test_the_hook_does_nothing_outside_a_repository(tmp_path, caplog):
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "loose.ipynb")
    manager = SimpleNamespace(log=logging.getLogger("contents"))
    refresh_git_index(os_path=str(tmp_path / "loose.ipynb"), model={"type": "notebook"},
                      contents_manager=manager)
    assert caplog.records == []
