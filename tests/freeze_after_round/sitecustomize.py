"""Test-only start-up hook: with this folder on ``PYTHONPATH``, every Python process of a
test's child tree imports it, and the run whose checkpoint is ``PF_TEST_FREEZE_CHECKPOINT``
stops itself (SIGSTOP) right after saving the checkpoint of round
``PF_TEST_FREEZE_AFTER_ROUND``, unless it continued from a checkpoint. A test then kills or
signals it at exactly that round; polling alone raced the run, which a fast CPU under load
finished between two polls. Without the variables it does nothing (``conftest.freezing``
sets them)."""

import os

if "PF_TEST_FREEZE_CHECKPOINT" in os.environ:
    import signal
    from pathlib import Path

    from pf.experiments.checkpoint import Checkpoint

    _FROZEN = Path(os.environ["PF_TEST_FREEZE_CHECKPOINT"]).resolve()
    _AFTER_ROUND = int(os.environ["PF_TEST_FREEZE_AFTER_ROUND"])
    _save = Checkpoint.save

    def _save_then_freeze(self, rounds_done: int, state: dict) -> None:
        _save(self, rounds_done, state)
        if (self.path is not None and self.path.resolve() == _FROZEN
                and rounds_done == _AFTER_ROUND and not self.resumed_at):
            os.kill(os.getpid(), signal.SIGSTOP)

    Checkpoint.save = _save_then_freeze
