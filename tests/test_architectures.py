"""The extended paper's other networks go through a whole PruneFuse run: pruned at init,
the selector trained and picking, fused into the target, distilled."""

import pytest

from pf.experiments.config import make_config
from pf.experiments.run import run_experiment

NEW_NETWORKS = ["wrn16_4", "mobilenetv2", "vit_tiny_p4", "resnet50"]


@pytest.mark.slow  # trains each network twice
@pytest.mark.parametrize("arch", NEW_NETWORKS)
def test_a_prunefuse_run_trains_and_fuses_each_network(arch):
    config = make_config("smoke", {"arch": arch, "method": "prunefuse", "budgets": [32, 48],
                                   "lr_schedule": [[1, 0.05]], "batch_size": 16})
    record = run_experiment(config, progress=False)
    assert [r.labeled for r in record.rounds] == [32, 48]
    assert record.rounds[-1].target.init == "fused" and record.rounds[-1].target.kd
    selector, target = record.networks["selector"], record.networks["target"]
    assert 0 < selector.forward_macs < target.forward_macs
    assert all(0 <= r.target.test_accuracy <= 1 for r in record.rounds)
