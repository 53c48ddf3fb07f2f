"""Which code and which libraries made a run: the git state of pf and the environment lock.

A result can be trusted to regenerate only from committed code and the same libraries.
``code_state()`` gives pf's commit and whether the files that compute results differ from
it; ``lock_state()`` checks the installed packages against ``requirements.lock`` (the
exact environment ``make`` installs). Both are stored in every run's metrics.json, and
``dirty_warning()`` is the line ``pf run`` and ``pf sweep`` print before an uncommitted run.

"Dirty" counts only what computes a result: the ``pf`` package, the notebooks' code
cells (JupyterLab saving outputs into a notebook changes no result), ``pyproject.toml``
and the lock. New runs under ``results/``, an edited README or a figure are outputs, not
inputs, so they do not mark the runs of a sweep that is writing them.

    code_state()   # {"git_commit": "1f23f7d...", "git_dirty": False, "dirty_files": []}
    lock_state()   # {"file": "requirements.lock", "sha256": "...", "matches": True, ...}
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pf

__all__ = ["LOCK_FILE", "COMPUTING_PATHS", "code_state", "normal_name", "lock_state",
           "dirty_warning"]

LOCK_FILE = "requirements.lock"  # in the project root; `make lock` writes it
# What computes a result, relative to the project root (the folder above the package).
COMPUTING_PATHS = ("pf", "notebooks", "pyproject.toml", LOCK_FILE)
SHOWN_DIFFERENCES = 5  # lock mismatches named in a record; the count says how many in all


def _project_root() -> Path:
    return Path(pf.__file__).resolve().parent.parent


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(_project_root()), *args], check=True,
                          capture_output=True, text=True).stdout


def _code_cells(text: str) -> list[str]:
    """The sources of a notebook's code cells (outputs and counts left out)."""
    try:
        cells = json.loads(text).get("cells", [])
    except json.JSONDecodeError:
        return [text]
    return ["".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code"]


def _changed(path: str) -> bool:
    """Whether a file git reports as changed differs in what it computes."""
    if not path.endswith(".ipynb"):
        return True
    try:
        committed = _git("show", f"HEAD:{path}")
    except subprocess.CalledProcessError:
        return True  # a notebook git does not know yet
    current = (_project_root() / path)
    return not current.exists() or _code_cells(committed) != _code_cells(current.read_text())


def code_state() -> dict:
    """pf's git commit, whether the computing files differ from it, and which do.

    ``git_commit`` is "unknown" outside a git checkout (an installed pf), with
    ``git_dirty`` null: nothing can be said then.
    """
    try:
        commit = _git("rev-parse", "HEAD").strip()
        status = _git("status", "--porcelain", "--untracked-files=all", "--",
                      *COMPUTING_PATHS)
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": None, "dirty_files": []}
    paths = [line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines()]
    dirty = sorted(p for p in paths if "__pycache__" not in p and _changed(p))
    return {"git_commit": commit, "git_dirty": bool(dirty), "dirty_files": dirty}


def normal_name(name: str) -> str:
    """A distribution's name (or version) as pip compares it: lower case, runs of -_. as -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_state() -> dict | None:
    """The lock file's hash and whether the installed packages are exactly the locked ones.

    None when pf runs without its project folder (installed from a wheel). ``differs``
    names up to ``SHOWN_DIFFERENCES`` packages whose installed version is not the locked
    one ("name: installed X, locked Y"); ``differences`` counts them all.
    """
    path = _project_root() / LOCK_FILE
    if not path.exists():
        return None
    text = path.read_text()
    differs = []
    for line in text.splitlines():
        name, sep, locked = line.split("#")[0].strip().partition("==")
        if not sep:
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if normal_name(installed) != normal_name(locked.strip()):
            differs.append(f"{name}: installed {installed}, locked {locked.strip()}")
    return {"file": LOCK_FILE, "sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
            "matches": not differs, "differences": len(differs),
            "differs": differs[:SHOWN_DIFFERENCES]}


def dirty_warning(state: dict | None = None) -> str | None:
    """The one line to print before a run from uncommitted code, or None when clean."""
    state = state or code_state()
    if not state["git_dirty"]:
        return None
    files = state["dirty_files"]
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    return (f"pf: warning: uncommitted changes in {shown}; this run is recorded as "
            f"{state['git_commit'][:10]}+dirty and will not regenerate from any commit")
