"""Recording runs: metrics.json written atomically, with the environment that produced it.

A run directory is complete exactly when its ``metrics.json`` exists: the file is
written to a temporary name and renamed into place at the end of the run, so a killed
run never leaves a half-written one behind.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch

import pf

__all__ = ["METRICS_FILE", "write_json", "read_metrics", "environment"]

METRICS_FILE = "metrics.json"
REQUIRED_KEYS = ("schema", "config", "rounds", "environment")


def write_json(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as JSON to ``path`` atomically (temp file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                     suffix=".tmp", delete=False) as handle:
        json.dump(payload, handle, indent=1)
        handle.write("\n")
    os.replace(handle.name, path)
    return path


def read_metrics(run_dir: str | Path) -> dict:
    """Load a run's metrics.json; raises ValueError if it is missing keys or unreadable."""
    path = Path(run_dir) / METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable metrics file ({error})") from None
    missing = [k for k in REQUIRED_KEYS if k not in metrics]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    return metrics


def _git_commit() -> str:
    """The commit of the pf source tree, with '+dirty' for uncommitted changes."""
    source = Path(pf.__file__).resolve().parent
    try:
        run = lambda *args: subprocess.run(["git", "-C", str(source), *args], check=True,
                                           capture_output=True, text=True).stdout.strip()
        return run("rev-parse", "HEAD") + ("+dirty" if run("status", "--porcelain") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    """Versions, code commit and hardware, stored with every run."""
    import torchvision

    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {
        "pf": pf.__version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
        "device_name": hardware,
        "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
