"""MAC counting: the published ResNet-56 figure, fvcore vs PyTorch, phase costs."""

import pytest

from pf.experiments.cost import protocol_selection_costs, selection_macs
from pf.flops import flop_counter_macs, forward_macs, fvcore_default_macs, training_macs
from pf.models import build_model
from pf.prune import prune_at_init


def test_resnet56_conv_and_linear_macs_match_the_published_count():
    assert forward_macs(build_model("resnet56"), (3, 32, 32)) == pytest.approx(125.75e6, rel=1e-3)


@pytest.mark.parametrize("name, shape", [("resnet20", (3, 32, 32)), ("preact20", (1, 8, 8)),
                                         ("preact164", (3, 8, 8)), ("wrn16_4", (3, 16, 16)),
                                         ("mobilenetv2", (3, 16, 16))])
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.7])
def test_fvcore_macs_are_half_of_pytorchs_flops_dense_and_pruned(name, shape, ratio):
    model = build_model(name, in_channels=shape[0])
    if ratio:
        model, _ = prune_at_init(model, ratio, input_shape=shape)
    assert forward_macs(model, shape) == flop_counter_macs(model, shape)


@pytest.mark.parametrize("name", ["resnet20", "wrn16_4", "mobilenetv2"])
@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_fvcore_macs_agree_with_torch_pruning_layer_by_layer(name, ratio):
    """Torch-Pruning's own counter, summed over convolutions and linear layers, counts
    the same MACs plus one per classifier output for its bias."""
    import torch
    import torch_pruning as tp

    model = build_model(name)
    if ratio:
        model, _ = prune_at_init(model, ratio)
    _, _, per_layer, _ = tp.utils.count_ops_and_params(model, torch.zeros(1, 3, 32, 32),
                                                       layer_wise=True)
    layers = sum(count for layer, count in per_layer.items()
                 if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)) and count)
    assert forward_macs(model, (3, 32, 32)) == layers - model.fc.out_features


@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_attention_products_count_beside_the_layers(ratio):
    """A ViT's q k^T and attention-times-v, per block and head 65 x 65 x (d + d) MACs (65
    tokens; d = 64 dense, 32 at p = 0.5), beside its layers, which PyTorch's counter
    counts (it leaves the CPU attention kernel out)."""
    model = build_model("vit_tiny_p4")
    if ratio:
        model, _ = prune_at_init(model, ratio)
    head_width = int(64 * (1 - ratio))
    attention = 6 * 3 * 65 * 65 * 2 * head_width
    assert forward_macs(model, (3, 32, 32)) == flop_counter_macs(model, (3, 32, 32)) + attention


@pytest.mark.parametrize("ratio", [0.5, 0.8])
def test_pruned_resnet56_costs_about_the_square_of_the_kept_width(ratio):
    dense = build_model("resnet56")
    pruned, _ = prune_at_init(dense, ratio)
    share = forward_macs(pruned, (3, 32, 32)) / forward_macs(dense, (3, 32, 32))
    # Widths are rounded down to whole channels, so the share sits a little below (1-p)^2.
    assert 0.75 * (1 - ratio) ** 2 < share <= (1 - ratio) ** 2 + 1e-3


def test_fvcores_default_also_counts_batchnorm():
    model = build_model("resnet20")
    assert fvcore_default_macs(model, (3, 32, 32)) > forward_macs(model, (3, 32, 32))


def test_phase_costs_follow_the_protocol():
    assert training_macs(10, 7) == 210  # forward + two backward products per image
    # Budgets 100, 300, 500 of 1000, 2 epochs: round 0 trains 200 images and scores 900,
    # round 1 trains 600 and scores 700; the first set is free.
    assert selection_macs(10, [100, 300, 500], 1000, 2) == [0, 10 * (600 + 900),
                                                           10 * (600 + 900 + 1800 + 700)]


def test_protocol_costs_compare_prunefuse_with_the_baseline_without_training():
    records = protocol_selection_costs("resnet20", [0.5], [100, 300], 1000, 2, (3, 8, 8))
    baseline, prunefuse = records[:2], records[2:]
    dense_forward = forward_macs(build_model("resnet20"), (3, 8, 8))
    assert [r["data_selection_macs"] for r in baseline] == selection_macs(dense_forward, [100, 300],
                                                                          1000, 2)
    assert prunefuse[0]["data_selection_macs"] == 0 and prunefuse[1]["prune_ratio"] == 0.5
    share = prunefuse[1]["data_selection_macs"] / baseline[1]["data_selection_macs"]
    assert share == prunefuse[1]["selector_forward_macs"] / dense_forward
    # about (1-p)^2: the input and classifier are not pruned
    assert share == pytest.approx(0.25, abs=0.01)
