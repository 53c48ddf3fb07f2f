"""Files others read: written whole, and readable as any new file of the user's would be."""

import json
import os
import stat

import torch

from pf.storage import save_atomically, write_json


def test_atomic_files_keep_the_usual_permissions_and_leave_no_temporary(tmp_path):
    # mkstemp-style temporaries are owner-only; renamed into place they would hide a
    # run's record or a shared cache from the other users of a results folder.
    umask = os.umask(0o022)
    try:
        json_file = write_json(tmp_path / "metrics.json", {"a": [1, 2]})
        tensor_file = save_atomically({"x": torch.arange(3)}, tmp_path / "cache.pt")
    finally:
        os.umask(umask)
    for path in (json_file, tensor_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert json.loads(json_file.read_text()) == {"a": [1, 2]}
    assert torch.load(tensor_file, weights_only=True)["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.pt", "metrics.json"]
