import copy
import dataclasses
import json

import pytest
import torch

from fakes import outside_mask, pretend_trained
from pf.experiments.config import make_config
from pf.fuse import fuse
from pf.models import build_model
from pf.prune import (ChannelMapError, check_channel_map, gather, load_channel_map, prune_at_init,
                      save_channel_map)
from pf.train import fit


def _dense(arch="resnet20", seed=0):
    torch.manual_seed(seed)
    return build_model(arch)


@pytest.mark.parametrize("ratio, widths", [(0.5, (8, 16, 32)), (0.7, (4, 9, 19)),
                                           (0.8, (3, 6, 12))])
def test_widths_round_as_torch_pruning_does(ratio, widths):
    pruned, channel_map = prune_at_init(_dense("resnet56"), ratio)
    assert (pruned.conv1.out_channels, pruned.layer2[0].conv1.out_channels,
            pruned.layer3[-1].conv2.out_channels) == widths  # int(C * (1 - p))
    assert pruned.fc.out_features == 10 and pruned.fc.in_features == widths[2]
    assert channel_map["widths"]["layer3.8.conv2"] == widths[2]
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet56_at_half_width_has_about_0_215m_parameters():
    pruned, _ = prune_at_init(_dense("resnet56"), 0.5)
    assert sum(p.numel() for p in pruned.parameters()) / 1e6 == pytest.approx(0.215, abs=0.001)


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("arch", ["resnet20", "preact20"])
@pytest.mark.parametrize("importance", ["l2", "group_l2", "random"])
def test_every_pruned_tensor_is_the_dense_init_indexed_by_the_map(arch, importance, steps):
    dense = _dense(arch)
    before = copy.deepcopy(dense.state_dict())
    pruned, channel_map = prune_at_init(dense, 0.5, importance=importance, steps=steps)
    dense_state = dense.state_dict()
    for name, tensor in pruned.state_dict().items():
        assert torch.equal(gather(dense_state[name], channel_map["tensors"][name]["indices"]),
                           tensor), name
    for name, tensor in before.items():  # the input network is untouched
        assert torch.equal(dense_state[name], tensor), name


@pytest.mark.parametrize("steps", [1, 5])
def test_l2_keeps_the_largest_filters_of_the_stem(steps):
    dense = _dense("resnet20")
    _, channel_map = prune_at_init(dense, 0.5, importance="l2", steps=steps)
    # conv1 roots the residual stream group; "l2" ranks by its own filter norms, which no
    # step changes (its 3 input channels are never pruned), so every schedule agrees.
    norms = dense.conv1.weight.flatten(1).norm(dim=1)
    kept = channel_map["tensors"]["conv1.weight"]["indices"][0]
    assert sorted(kept) == sorted(norms.argsort(descending=True)[:8].tolist())


def test_five_steps_give_the_same_widths_but_keep_other_block_channels():
    dense = _dense("resnet20")
    pruned_1, map_1 = prune_at_init(dense, 0.5)
    pruned_5, map_5 = prune_at_init(dense, 0.5, steps=5)
    assert map_5["widths"] == map_1["widths"] and map_5["steps"] == 5 and map_1["steps"] == 1
    assert sum(p.numel() for p in pruned_5.parameters()) == 68_786
    # A block's first convolution is ranked by filter norms over its input channels, which
    # the earlier steps have already thinned: the ranking, not the width, changes.
    kept = [set(m["tensors"]["layer1.0.conv1.weight"]["indices"][0]) for m in (map_1, map_5)]
    assert len(kept[0]) == len(kept[1]) == 8 and kept[0] != kept[1]


def test_a_map_without_steps_is_a_one_step_map():
    dense = _dense()
    pruned, channel_map = prune_at_init(dense, 0.5)
    old = {k: v for k, v in channel_map.items() if k != "steps"}  # written before steps
    check_channel_map(old, dense, pruned)
    assert torch.equal(fuse(dense, pruned, old).conv1.weight,
                       fuse(dense, pruned, channel_map).conv1.weight)


def test_random_importance_depends_on_the_seed():
    dense = _dense()
    maps = [prune_at_init(dense, 0.5, importance="random", seed=s)[1] for s in (0, 0, 1)]
    kept = [m["tensors"]["layer1.0.conv1.weight"]["indices"][0] for m in maps]
    assert kept[0] == kept[1] != kept[2]


def test_channel_map_json_round_trip_and_mismatch_errors(tmp_path):
    dense = _dense()
    pruned, channel_map = prune_at_init(dense, 0.5)
    path = save_channel_map(channel_map, tmp_path / "map.json")
    assert load_channel_map(path, dense, pruned) == json.loads(json.dumps(channel_map))
    other, _ = prune_at_init(dense, 0.7)
    with pytest.raises(ChannelMapError, match="channel map: .* maps"):
        load_channel_map(path, dense, other)
    with pytest.raises(ChannelMapError, match="tensors do not match"):
        load_channel_map(path, _dense("resnet8"), pruned)
    broken = dict(channel_map, version=99)
    with pytest.raises(ChannelMapError, match="expected format pf-channel-map version 1"):
        fuse(dense, pruned, broken)


EXACT_FUSION = [("resnet20", 32), ("resnet56", 32), ("preact164", 32), ("wrn16_4", 32),
                ("mobilenetv2", 32), ("resnet50", 64), ("vit_tiny_p4", 32), ("vit_tiny_p4", 16)]


@pytest.mark.parametrize("arch, size", EXACT_FUSION)
def test_zero_rest_fusion_computes_exactly_the_trained_pruned_network(arch, size):
    dense = _dense(arch)
    pruned, channel_map = prune_at_init(dense, 0.5, input_shape=(3, size, size))
    pretend_trained(pruned)
    fused = fuse(dense, pruned, channel_map, rest="zero")
    x = torch.randn(4, 3, size, size)
    pruned.eval(), fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), pruned(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rest", ["zero", "keep"])
def test_zero_rest_channels_get_no_gradient_so_the_target_trains_as_the_pruned_net(synthetic,
                                                                                  rest):
    torch.manual_seed(0)
    dense = build_model("resnet8", synthetic.num_classes, synthetic.in_channels)
    pruned, channel_map = prune_at_init(dense, 0.5, input_shape=(3, 16, 16))
    fused = fuse(dense, pruned, channel_map, rest=rest)
    before = copy.deepcopy(fused.state_dict())
    # Without weight decay a weight moves only if it gets a gradient, so "moved" means
    # "learned"; zero stays zero under weight decay anyway.
    schedule = dataclasses.replace(make_config("smoke").schedule(), weight_decay=0.0)
    fit(fused, synthetic, torch.arange(len(synthetic.train)), schedule, device="cpu",
        teacher=pruned, record_curve=False, progress=False)  # as PruneFuse trains it
    after = fused.state_dict()
    filters = moved = 0
    for name, parameter in fused.named_parameters():
        indices = channel_map["tensors"][name]["indices"]
        if rest == "zero":  # every weight fusion zeroed, filters, BN and classifier alike
            assert not after[name][outside_mask(indices, parameter.shape)].any(), name
        if parameter.dim() == 4:  # convolution filters fusion did not fill
            kept = set(range(len(parameter)) if indices[0] is None else indices[0])
            for row in sorted(set(range(len(parameter))) - kept):
                filters += 1
                moved += not torch.equal(after[name][row], before[name][row])
    assert filters == 168
    assert moved == (0 if rest == "zero" else filters)


def test_keep_rest_fusion_keeps_dense_init_outside_the_map_and_mutates_nothing():
    dense = _dense()
    pruned, channel_map = prune_at_init(dense, 0.5)
    pretend_trained(pruned)
    dense_before = copy.deepcopy(dense.state_dict())
    pruned_before = copy.deepcopy(pruned.state_dict())
    fused = fuse(dense, pruned, channel_map, rest="keep").state_dict()
    for name, tensor in dense_before.items():
        indices = channel_map["tensors"][name]["indices"]
        assert torch.equal(gather(fused[name], indices), pruned_before[name]), name
        outside = outside_mask(indices, tensor.shape)
        assert torch.equal(fused[name][outside], tensor[outside]), name
    for before, module in ((dense_before, dense), (pruned_before, pruned)):
        for name, tensor in module.state_dict().items():
            assert torch.equal(tensor, before[name]), name


def test_reinit_rest_redraws_the_rest_reproducibly():
    dense = _dense()
    pruned, channel_map = prune_at_init(dense, 0.5)
    a = fuse(dense, pruned, channel_map, rest="reinit", seed=5).layer1[0].conv1.weight
    b = fuse(dense, pruned, channel_map, rest="reinit", seed=5).layer1[0].conv1.weight
    c = fuse(dense, pruned, channel_map, rest="reinit", seed=6).layer1[0].conv1.weight
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, dense.layer1[0].conv1.weight)
    kept = channel_map["tensors"]["layer1.0.conv1.weight"]["indices"]
    assert torch.equal(gather(a, kept), pruned.layer1[0].conv1.weight)


def test_a_network_without_the_classifier_contract_is_a_one_line_error():
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(),
                                  torch.nn.LazyLinear(10))
    with pytest.raises(ValueError, match="^arch: Sequential has no linear classifier named fc"):
        prune_at_init(network, 0.5)


def test_bad_ratio_and_rest_are_clear_errors():
    with pytest.raises(ValueError, match=r"prune_ratio: must lie in \[0, 1\)"):
        prune_at_init(_dense(), 1.0)
    for steps in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=rf"prune_steps: must be an integer >= 1, got {steps}"):
            prune_at_init(_dense(), 0.5, steps=steps)
    pruned, channel_map = prune_at_init(_dense(), 0.5)
    with pytest.raises(ValueError, match="rest: unknown mode 'ones'"):
        fuse(_dense(), pruned, channel_map, rest="ones")
