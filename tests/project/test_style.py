"""The code follows the ruff rules in pyproject.toml (pycodestyle and pyflakes, 100 columns)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT

RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_finds_nothing():
    checked = subprocess.run([RUFF, "check", "pf", "benchmarks", "tests"], cwd=PROJECT,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
