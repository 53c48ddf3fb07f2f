"""JupyterLab's saves and git: a notebook whose outputs are all that changed stays clean.

git strips outputs as it reads a notebook (the nbstripout filter `make setup` configures), so
`git diff` shows nothing after JupyterLab saves outputs. `git status` still lists the notebook
as modified, because git trusts a changed file size without running the filter. `make setup`
registers `refresh_git_index` as the Jupyter server's post-save hook: after each save it asks
git whether the notebook, filtered, is what the index holds, and if so records the new file's
size and time in the index. Edited parameters still show as modified, as they should.
"""

import subprocess
from pathlib import Path

__all__ = ["refresh_git_index"]


def _git(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          check=check)


def refresh_git_index(os_path: str, model: dict, contents_manager, **_) -> None:
    """The post-save hook (`ContentsManager.post_save_hook`): after a tracked notebook is
    saved, mark it unchanged in git's index when it differs from the index only in what the
    notebook filter strips. A failure is logged, never raised: saving must not fail."""
    if model.get("type") != "notebook":
        return
    path = Path(os_path)
    try:
        listed = _git(path.parent, "ls-files", "--stage", "--", path.name, check=False)
        staged = listed.stdout.split()
        if listed.returncode or not staged:
            return  # not in a repository, or not tracked
        if _git(path.parent, "hash-object", "--", path.name).stdout.strip() == staged[1]:
            _git(path.parent, "update-index", "--", path.name)
    except (OSError, subprocess.CalledProcessError) as error:
        contents_manager.log.warning("pf: git's index not refreshed for %s: %s", path, error)
