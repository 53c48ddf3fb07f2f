"""Files that several processes share: prepared under a lock, written atomically.

Workers of a sweep (local or on Slurm nodes over a shared filesystem) prepare the same
dataset cache and the same reference runs, and write run records that others read.
``exclusive_lock`` lets one prepare a file while the others wait; ``save_atomically``
(tensors) and ``write_json`` write a file so that no reader ever sees half of it, no two
writers share a temporary file, and its permissions are the usual ones.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["exclusive_lock", "save_atomically", "write_json"]


@contextmanager
def exclusive_lock(path: Path):
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if missing) for the block.

    The kernel releases the lock when its holder exits or is killed, so a crashed worker
    never leaves a stale lock (the empty lock file stays; it is harmless). Across nodes the
    lock is only as good as the filesystem's: NFSv4 (and NFSv3 with lockd) arbitrate it on
    the server, since Linux maps flock to POSIX locks there; Lustre mounted with
    ``localflock`` locks per node only. Where locking is missing (no fcntl, or a mount
    that refuses it) the block runs unlocked with a warning: files written with
    ``save_atomically`` are still whole, but workers may then prepare one side by side.
    """
    with open(path, "a") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        except (ImportError, OSError) as error:
            warnings.warn(f"{path}: cannot lock ({error}); going on unlocked",
                          stacklevel=3)
        yield


def _write_atomically(path: str | Path, write: Callable, mode: str) -> Path:
    """Call ``write(file)`` on a new file opened in ``mode`` under a unique name beside
    ``path``, then rename it to ``path``: a concurrent reader never sees half a file, and
    writers on other nodes of a shared filesystem (where process ids repeat) never write
    into each other's file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Host and pid say who wrote it, the random part keeps two writers apart when both
    # repeat; "x" creates the file exclusively, with the usual permissions (not mkstemp's
    # owner-only ones, which would lock other users of a shared folder out).
    writer = f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}"
    partial = path.with_name(f".{path.name}.{writer}.partial")
    file = open(partial, mode)  # before the try: a name that exists is not ours to delete
    try:
        with file:
            write(file)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def save_atomically(payload: dict, path: str | Path) -> Path:
    """``torch.save`` ``payload`` to ``path`` atomically (``_write_atomically``)."""
    return _write_atomically(path, lambda file: torch.save(payload, file), "xb")


def write_json(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON to ``path`` atomically (``_write_atomically``)."""
    def dump(file) -> None:
        json.dump(payload, file, indent=1)
        file.write("\n")

    return _write_atomically(path, dump, "x")
