"""Every network pf builds: its forward pass, features and gradients, and the extended
paper's other networks through a whole PruneFuse run (pruned at init, the selector
trained and picking, fused into the target, distilled)."""

import pytest
import torch

from pf.experiments.config import make_config
from pf.experiments.run import run_experiment
from pf.models import MODELS, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_shape_features_and_gradients(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, in_channels=3)
    x = torch.randn(4, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (4, 7)
    features = model.features(x)
    assert features.shape == (4, model.fc.in_features)
    torch.testing.assert_close(model.fc(features), logits)
    logits.logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("name, millions", [
    ("resnet8", 0.078), ("resnet20", 0.272), ("resnet56", 0.856), ("resnet110", 1.731),
    ("preact164", 1.703), ("resnet18", 11.174),  # resnet18: the 11.2M of the CIFAR ResNet-18
    ("wrn16_4", 2.749), ("wrn28_10", 36.479),  # the wide ResNets' 2.7M and 36.5M
    ("mobilenetv2", 2.237), ("resnet50", 23.528),  # resnet50 at 10 classes (25.557 at 1,000)
    ("vit_tiny_p4", 1.807),
])
def test_parameter_counts(name, millions):
    count = sum(p.numel() for p in build_model(name).parameters())
    assert count / 1e6 == pytest.approx(millions, abs=0.001)


def test_small_grayscale_inputs_work():
    model = build_model("resnet20", num_classes=10, in_channels=1)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_projection_shortcuts_only_where_the_shape_changes():
    model = build_model("resnet56")
    projections = [n for n, m in model.named_modules()
                   if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)]
    assert projections == ["layer2.0.shortcut.0", "layer3.0.shortcut.0"]


def test_kaiming_init_and_seeded_construction():
    torch.manual_seed(1)
    a = build_model("resnet20")
    torch.manual_seed(1)
    b = build_model("resnet20")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    weight = a.layer3[0].conv2.weight  # fan_out = 64 * 9
    assert weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="arch: unknown model 'resnet7'"):
        build_model("resnet7")


def test_dropout_before_the_classifier_is_an_identity_at_rate_0():
    torch.manual_seed(0)
    plain = build_model("resnet8")
    torch.manual_seed(0)
    with_rate = build_model("resnet8", dropout=0.5)
    x = torch.randn(4, 3, 32, 32)
    plain.train(), with_rate.train()
    state = torch.get_rng_state()
    out = plain(x)
    assert torch.equal(torch.get_rng_state(), state)  # rate 0 draws no random numbers
    with torch.no_grad():
        features = with_rate.features(x)
        torch.manual_seed(1)
        dropped = with_rate(x)
        torch.manual_seed(1)
        mask = torch.nn.functional.dropout(torch.ones_like(features), 0.5)  # 0 or 2
    assert set(mask.unique().tolist()) <= {0.0, 2.0}
    assert torch.allclose(dropped, with_rate.fc(features * mask), atol=1e-6)
    with_rate.eval()
    assert torch.allclose(with_rate(x), with_rate.fc(with_rate.features(x)))
    assert out.shape == dropped.shape


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
