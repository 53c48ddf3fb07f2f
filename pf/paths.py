"""Where a notebook's paths point: the project root, as JupyterLab users expect.

JupyterLab (and VS Code, Jupyter Notebook) start a notebook's kernel in the notebook's own
folder, ``<project>/notebooks``, while the README's commands, ``pf`` and papermill run
from the project root. So that ``results_dir = "results"`` names the committed results
either way, the notebooks pass every path parameter through ``project_path``:

- an absolute path, or one starting with ``~``, is taken as given;
- a relative path resolves against the project root when the working folder is the
  project's notebooks folder (a folder named ``notebooks`` whose parent holds a
  ``pyproject.toml``): the interactive case;
- anywhere else it resolves against the working folder, as a command-line user expects:
  ``pf sweep`` runs each notebook in its own run folder with ``out_dir="."``, and
  ``papermill`` run from the project root already sees the root.

The project is found from the working folder, not from where pf is installed, so this
holds for a non-editable install too; a notebook copied out of a checkout resolves its
paths against its own folder.

    project_path("results")      # <project>/results from <project>/notebooks, else ./results

Records go the other way (``portable_path``): a path they store is relative to the project
that holds it, so that a committed record names no folder of the machine that made it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["NOTEBOOKS_FOLDER", "PROJECT_MARKER", "project_path", "portable_path"]

NOTEBOOKS_FOLDER = "notebooks"  # the project's folder of notebooks, where Jupyter kernels start
PROJECT_MARKER = "pyproject.toml"  # the file that marks the project root


def project_path(path: str | Path) -> Path:
    """``path`` as an absolute path: relative ones against the project root when the
    working folder is the project's ``notebooks/`` folder, else against the working
    folder (see the module docstring); ``~`` is expanded."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    here = Path.cwd()
    in_notebooks = here.name == NOTEBOOKS_FOLDER and (here.parent / PROJECT_MARKER).is_file()
    return (here.parent if in_notebooks else here) / path


def portable_path(path: str | Path) -> str:
    """``path`` as a record stores it: relative to the nearest folder above it that holds
    ``PROJECT_MARKER`` (the project it belongs to), or absolute when no project holds it."""
    path = Path(path).expanduser().resolve()
    for folder in path.parents:
        if (folder / PROJECT_MARKER).is_file():
            return str(path.relative_to(folder))
    return str(path)
