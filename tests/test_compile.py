"""fit with compile=True (torch.compile; the setting that meets the CPU speed target)."""

import pytest
import torch

from pf.models import build_model
from pf.train import Schedule, fit

pytestmark = [pytest.mark.slow,  # compiles networks
              pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile missing")]


def test_compiled_training_matches_eager_training(synthetic):
    schedule = Schedule(((2, 0.05),), batch_size=64)
    indices = torch.arange(256)
    trained = {}
    for compile in (False, True):
        torch.manual_seed(0)
        model = build_model("resnet8", synthetic.num_classes, synthetic.in_channels)
        result = fit(model, synthetic, indices, schedule, device="cpu", seed=0,
                     compile=compile, progress=False)
        trained[compile] = model.state_dict(), result
    (eager_weights, eager), (compiled_weights, compiled) = trained[False], trained[True]
    # Fused kernels round differently, so equal up to float error, not bit for bit.
    assert compiled.train_loss == pytest.approx(eager.train_loss, rel=1e-3)
    assert compiled.test_accuracy == pytest.approx(eager.test_accuracy, abs=0.02)
    for name, weight in eager_weights.items():
        torch.testing.assert_close(compiled_weights[name], weight, rtol=1e-3, atol=1e-3,
                                   msg=lambda text, name=name: f"{name}: {text}")


def test_runs_in_one_process_stay_compiled(monkeypatch, caplog):
    """Five compiled runs of different networks (a notebook session) never hit dynamo's
    recompile limit, after which training would silently run eager; every run compiles
    its own graphs. The eager backend keeps this fast: guards and recompiles are dynamo's."""
    import functools

    from torch._dynamo.utils import counters

    from pf.experiments.config import make_config
    from pf.experiments.run import run_experiment

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    runs = [{"method": "prunefuse", "prune_ratio": 0.5},
            {"method": "prunefuse", "prune_ratio": 0.7},
            {"method": "baseline", "arch": "resnet14"},
            {"method": "svp", "arch": "resnet14", "proxy_arch": "resnet8"},
            {"method": "prunefuse", "arch": "preact8"}]
    graphs = []
    with caplog.at_level("WARNING", logger="torch._dynamo"):
        for overrides in runs:
            before = counters["stats"]["unique_graphs"]
            run_experiment(make_config("smoke", {**overrides, "compile": True}), progress=False)
            graphs.append(counters["stats"]["unique_graphs"] - before)
    assert not [r for r in caplog.records if "recompile_limit" in r.getMessage()]
    assert all(count > 0 for count in graphs), graphs
