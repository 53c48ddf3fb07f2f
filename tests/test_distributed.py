"""Data-parallel runs (pf.distributed) under torchrun with two gloo processes on the CPU:
they train and select what one process does, up to floating-point order."""

import json
import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import PROJECT
from pf.distributed import part

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT)}

# A training whose batches split unevenly (9 = 5 + 4, the last batch 5 = 3 + 2), augmented,
# with BatchNorm: what the processes must add up to one process's training. One epoch: torch's
# own CPU BatchNorm is only about 1e-5 exact (see the next test), and a longer training on
# such small batches magnifies that beyond any tolerance that would still catch a mistake.
TRAINING = textwrap.dedent('''
    import dataclasses
    import sys

    import torch

    from pf.data import load_dataset
    from pf.distributed import finish, is_main, start
    from pf.models import build_model
    from pf.train import Schedule, fit


    def train():
        dataset = dataclasses.replace(load_dataset("synthetic"), augment=True)
        torch.manual_seed(0)
        model = build_model("resnet8", dataset.num_classes, dataset.in_channels)
        result = fit(model, dataset, torch.arange(23), Schedule(((1, 0.05),), batch_size=9),
                     device="cpu", seed=3)
        return {"state": model.state_dict(), "curve": result.curve, "loss": result.train_loss}


    if __name__ == "__main__":
        start(torch.device("cpu"))
        trained = train()
        if is_main():
            torch.save(trained, sys.argv[1])
        finish()
''')


def _torchrun(tmp_path: Path, *args: str) -> None:
    done = subprocess.run([*TORCHRUN, *args], env=ENV, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_train_the_weights_one_process_trains(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAINING)
    _torchrun(tmp_path, str(script), str(tmp_path / "two.pt"))
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    one = runpy.run_path(str(script), run_name="reference")["train"]()
    assert one["state"].keys() == two["state"].keys()
    for name, tensor in one["state"].items():  # BatchNorm's running statistics included
        torch.testing.assert_close(two["state"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert two["curve"] == one["curve"]  # the test split, predicted in two parts and gathered


# Channels of mixed scale and offset, split 5 + 4 over the processes; every process returns
# its rows of the output and of the input's gradient, and the summed parameter gradients.
BATCH_NORM = textwrap.dedent('''
    import sys

    import torch
    from torch import nn

    from pf.distributed import (finish, gather_parts, is_main, part, start, sum_over_processes,
                                synced_batch_norm)


    def inputs():
        torch.manual_seed(0)
        x = torch.randn(9, 6, 5, 5) * torch.rand(1, 6, 1, 1) + 3 * torch.randn(1, 6, 1, 1)
        return x, torch.randn(9, 6, 5, 5)


    if __name__ == "__main__":
        start(torch.device("cpu"))
        x, upstream = inputs()
        layer = nn.BatchNorm2d(6)
        with torch.no_grad():
            layer.weight.uniform_(0.5, 1.5)
            layer.bias.normal_()
        mine = part(x).clone().requires_grad_()
        with synced_batch_norm(layer):
            assert type(layer).__name__ == "SyncedBatchNorm2d"
            out = layer(mine)
            (out * part(upstream)).sum().backward()
        assert type(layer) is nn.BatchNorm2d
        found = {"out": gather_parts(out.detach(), 9), "grad_x": gather_parts(mine.grad, 9),
                 "grad_weight": sum_over_processes(layer.weight.grad),
                 "grad_bias": sum_over_processes(layer.bias.grad),
                 "running_mean": layer.running_mean, "running_var": layer.running_var,
                 "weight": layer.weight.detach(), "bias": layer.bias.detach()}
        if is_main():
            torch.save(found, sys.argv[1])
        finish()
''')


def test_batch_norm_over_two_processes_is_the_whole_batch_s_to_float_precision(tmp_path):
    """Compared with float64 arithmetic on the whole batch (torch's own float32 CPU
    BatchNorm is further from it: its channel means can be 1e-5 off)."""
    script = tmp_path / "batch_norm.py"
    script.write_text(BATCH_NORM)
    _torchrun(tmp_path, str(script), str(tmp_path / "two.pt"))
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    x, upstream = runpy.run_path(str(script), run_name="reference")["inputs"]()
    x = x.double().requires_grad_()
    weight = two["weight"].double().requires_grad_()
    bias = two["bias"].double().requires_grad_()
    running_mean = torch.zeros(6, dtype=torch.float64)
    running_var = torch.ones(6, dtype=torch.float64)
    out = torch.nn.functional.batch_norm(x, running_mean, running_var, weight, bias, True, 0.1)
    (out * upstream.double()).sum().backward()
    for name, expected in [("out", out.detach()), ("grad_x", x.grad), ("grad_weight", weight.grad),
                           ("grad_bias", bias.grad), ("running_mean", running_mean),
                           ("running_var", running_var)]:
        torch.testing.assert_close(two[name].double(), expected, rtol=1e-5, atol=1e-5, msg=name)


def test_two_processes_select_what_one_process_selects(tmp_path):
    settings = ["--preset", "smoke", "--set", "method=prunefuse"]
    _torchrun(tmp_path, "-m", "pf", "run", *settings, "--out", str(tmp_path / "two"))
    subprocess.run([sys.executable, "-m", "pf", "run", *settings, "--out",
                    str(tmp_path / "one")], env=ENV, check=True, capture_output=True)
    selected = [json.loads((tmp_path / run / "selected.json").read_text())
                for run in ("one", "two")]
    assert selected[0] == selected[1]
    rounds = [json.loads((tmp_path / run / "metrics.json").read_text())["rounds"]
              for run in ("one", "two")]
    for one, two in zip(*rounds):
        assert two["target"]["train_loss"] == pytest.approx(one["target"]["train_loss"],
                                                            rel=1e-3)
        # 256 test images: floating-point order may move a near-tie, one image is 0.4 points.
        assert abs(two["target"]["test_accuracy"] - one["target"]["test_accuracy"]) <= 2 / 256
    assert not (tmp_path / "two" / "checkpoint.pt").exists()  # rank 0 wrote, then removed it


def test_a_process_takes_its_contiguous_part_and_all_parts_cover_the_batch(monkeypatch):
    parts = []
    for rank in range(3):
        monkeypatch.setattr("pf.distributed.world_size", lambda: 3)
        monkeypatch.setattr("pf.distributed.rank", lambda rank=rank: rank)
        parts.append(part(torch.arange(10)).tolist())
    assert parts == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


@pytest.mark.parametrize("settings", [["experiment=data_pruning", "score_lr_schedule=[[10,0.1]]"],
                                      ["compile=true"]])
def test_what_torchrun_cannot_run_is_one_clear_line(tmp_path, settings):
    assignments = [text for setting in settings for text in ("--set", setting)]
    done = subprocess.run([*TORCHRUN, "-m", "pf", "run", "--preset", "smoke", *assignments,
                           "--out", str(tmp_path / "run")],
                          env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "pf: error: torchrun: several processes run active learning" in done.stderr
    assert not (tmp_path / "run").exists()
