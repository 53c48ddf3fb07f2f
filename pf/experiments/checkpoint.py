"""Round checkpoints: a run interrupted after a finished round continues from there.

After every finished round, a run that has a folder saves what its next round needs in
``checkpoint.pt`` there (``pf.experiments.record.CHECKPOINT_FILE``), atomically
(``pf.storage.save_atomically``): the experiment's carried state (the labeled set, the
networks it carries over, the record so far), the state of torch's global random
generators, the resolved config it belongs to and the seconds spent so far. Started again
with the same config and folder (``pf run``, a ``pf sweep`` that finds the run unfinished,
a Slurm task requeued after a timeout or pre-emption), the run reads it back and
continues with the next round; since every round seeds its own generators and the global
ones are restored, it ends with the record an uninterrupted run writes on the same
machine (same selections, accuracies, curves and MACs; only seconds differ). A
checkpoint of another config is ignored with a warning, and the run starts from round 0.
``run_experiment`` deletes the file once ``metrics.json`` is written, unless asked to
keep it.

    checkpoint = Checkpoint(run_dir / CHECKPOINT_FILE, config.to_dict())
    state = checkpoint.load()          # None: start from round 0
    ...
    checkpoint.save(rounds_done, state)   # after each finished round
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from pf.distributed import is_main
from pf.storage import save_atomically

__all__ = ["Checkpoint"]


class Checkpoint:
    """The round checkpoint of one run: ``path`` (None: a run without a folder, which
    saves nothing) and the resolved ``config`` (a dict) it belongs to.

    ``seconds()`` is the run's wall-clock so far, the time before the checkpoint it
    continued from included; ``resumed_at`` lists how many rounds were done each time the
    run continued from a checkpoint (empty for a run that never stopped; 0 for a
    data-pruning run that stopped after its scoring run).
    """

    def __init__(self, path: str | Path | None, config: dict):
        self.path = None if path is None else Path(path)
        self.config = config
        self.started = time.perf_counter()
        self.seconds_before = 0.0
        self.resumed_at: list[int] = []

    def seconds(self) -> float:
        """Wall-clock seconds of the run so far, across the processes that ran it."""
        return self.seconds_before + time.perf_counter() - self.started

    def load(self) -> dict | None:
        """The state saved after the last finished round, with torch's global generators
        restored as they were then; None when there is no checkpoint, or it belongs to
        another config (a warning says so) or cannot be read (a warning too)."""
        if self.path is None or not self.path.exists():
            return None
        try:
            # Where they were saved from (the run's device), or the CPU on a machine without CUDA.
            where = None if torch.cuda.is_available() else "cpu"
            saved = torch.load(self.path, map_location=where, weights_only=False)
        except Exception as error:  # noqa: BLE001 -- a damaged checkpoint costs its rounds only
            warnings.warn(f"{self.path}: unreadable checkpoint ({type(error).__name__}); "
                          f"starting from round 0", stacklevel=2)
            return None
        if saved["config"] != self.config:
            changed = sorted(key for key in {*saved["config"], *self.config}
                             if saved["config"].get(key) != self.config.get(key))
            warnings.warn(f"{self.path}: written for another configuration (differs in "
                          f"{', '.join(changed)}); starting from round 0", stacklevel=2)
            return None
        torch.set_rng_state(saved["rng"]["cpu"])
        if saved["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
        self.seconds_before = saved["seconds"]
        self.started = time.perf_counter()
        self.resumed_at = [*saved["resumed_at"], saved["rounds_done"]]
        return saved["state"]

    def save(self, rounds_done: int, state: dict) -> None:
        """Save ``state``, what the rounds after the first ``rounds_done`` need (nothing
        without a path, or under torchrun but in rank 0): tensors, networks and plain
        values, on any device."""
        if self.path is None or not is_main():
            return
        rng = {"cpu": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None}
        save_atomically({"config": self.config, "rounds_done": rounds_done, "state": state,
                         "rng": rng, "seconds": self.seconds(), "resumed_at": self.resumed_at},
                        self.path)

    def remove(self) -> None:
        """Delete the checkpoint file (the run has finished), if there is one."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
