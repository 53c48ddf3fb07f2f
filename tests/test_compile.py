"""fit with compile=True (torch.compile; the setting that meets the CPU speed target)."""

import pytest
import torch

from pf.models import build_model
from pf.train import Schedule, fit

pytestmark = pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile missing")


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
