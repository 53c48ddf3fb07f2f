"""A plain store of full reference runs, shared by the data-pruning runs that repeat one.

A data-pruning run that scores a subset can also score every sample with a full run, as
ground truth for its extrapolation. That run depends only on what ``reference_identity``
lists (not on the subset, k or the extrapolator), so runs that differ only there, e.g.
a sweep over subset sizes, can share it: with ``reference_cache`` set (``pf sweep`` sets
``<sweep>/reference-cache``), the first run keeps its scores and summary in a file named
by a hash of the identity, and later runs read them back. A file that is unreadable or
whose identity differs (another format, training-set size or device) is ignored and
replaced. Writes are atomic (``pf.storage.save_atomically``): runs on several nodes of a
shared filesystem can share one folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from pf.storage import save_atomically
from pf.experiments.config import DataPruningConfig
from pf.scores import SCORES

__all__ = ["REFERENCE_FORMAT", "reference_identity", "reference_path", "load_reference",
           "save_reference"]

REFERENCE_FORMAT = 1  # version of what a cached reference run holds; a change invalidates old files


def reference_identity(config: DataPruningConfig) -> dict:
    """Everything the full reference run depends on: the dataset, the network and its
    seeded initialisation, the score (TDDS with its span), the scoring schedule and how
    training runs. The subset, k and the extrapolator do not enter: the reference trains
    on every sample."""
    schedule = config.score_schedule()
    # Only TDDS has a span: other scores keep the keys (and cache files) they had before it.
    return {"format": REFERENCE_FORMAT, "dataset": config.dataset, "arch": config.arch,
            "seed": config.seed, "score": config.score,
            **(config.span() if SCORES[config.score].spanned else {}),
            "segments": [list(piece) for piece in schedule.segments],
            "batch_size": schedule.batch_size, "momentum": schedule.momentum,
            "weight_decay": schedule.weight_decay, "precision": config.precision,
            "compile": config.compile}


def reference_path(config: DataPruningConfig, device_type: str) -> Path | None:
    """Where ``config.reference_cache`` keeps the reference run of ``config`` trained on a
    ``device_type`` device (precision "auto" differs by device); None without a cache."""
    if not config.reference_cache:
        return None
    identity = {**reference_identity(config), "device": device_type}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return Path(config.reference_cache) / f"reference-seed{config.seed}-{digest}.pt"


def _stored_identity(config: DataPruningConfig, device_type: str, train_size: int) -> dict:
    return {**reference_identity(config), "device": device_type, "train_size": train_size}


def load_reference(config: DataPruningConfig, device_type: str,
                   train_size: int) -> tuple[torch.Tensor, dict] | None:
    """The cached reference run of ``config``: its (N,) scores on the CPU and its summary
    (test accuracy, images trained, seconds); None when there is no cache, no file, or
    the file is unreadable or holds another run."""
    path = reference_path(config, device_type)
    if path is None or not path.exists():
        return None
    try:
        cached = torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 -- an unreadable file is recomputed and replaced
        return None
    if cached.get("identity") != _stored_identity(config, device_type, train_size):
        return None
    return cached["scores"], cached["run"]


def save_reference(config: DataPruningConfig, device_type: str, train_size: int,
                   scores: torch.Tensor, run: dict) -> Path | None:
    """Keep a reference run's scores and summary in ``config.reference_cache`` (nothing
    without a cache); returns the file."""
    path = reference_path(config, device_type)
    if path is not None:
        save_atomically({"identity": _stored_identity(config, device_type, train_size),
                         "scores": scores.cpu(), "run": run}, path)
    return path
