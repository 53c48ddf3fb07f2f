"""Pruning at init: widths as Torch-Pruning rounds them, the pruned <-> dense channel map,
its file, and the errors."""

import copy
import json

import pytest
import torch

from fakes import seeded_network
from pf.fuse import fuse
from pf.prune import (ChannelMapError, check_channel_map, gather, load_channel_map, prune_at_init,
                      save_channel_map)


@pytest.mark.parametrize("ratio, widths", [(0.5, (8, 16, 32)), (0.7, (4, 9, 19)),
                                           (0.8, (3, 6, 12))])
def test_widths_round_as_torch_pruning_does(ratio, widths):
    pruned, channel_map = prune_at_init(seeded_network("resnet56"), ratio)
    assert (pruned.conv1.out_channels, pruned.layer2[0].conv1.out_channels,
            pruned.layer3[-1].conv2.out_channels) == widths  # int(C * (1 - p))
    assert pruned.fc.out_features == 10 and pruned.fc.in_features == widths[2]
    assert channel_map["widths"]["layer3.8.conv2"] == widths[2]
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet56_at_half_width_has_about_0_215m_parameters():
    pruned, _ = prune_at_init(seeded_network("resnet56"), 0.5)
    assert sum(p.numel() for p in pruned.parameters()) / 1e6 == pytest.approx(0.215, abs=0.001)


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("arch", ["resnet20", "preact20"])
@pytest.mark.parametrize("importance", ["l2", "group_l2", "random"])
def test_every_pruned_tensor_is_the_dense_init_indexed_by_the_map(arch, importance, steps):
    dense = seeded_network(arch)
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
    dense = seeded_network("resnet20")
    _, channel_map = prune_at_init(dense, 0.5, importance="l2", steps=steps)
    # conv1 roots the residual stream group; "l2" ranks by its own filter norms, which no
    # step changes (its 3 input channels are never pruned), so every schedule agrees.
    norms = dense.conv1.weight.flatten(1).norm(dim=1)
    kept = channel_map["tensors"]["conv1.weight"]["indices"][0]
    assert sorted(kept) == sorted(norms.argsort(descending=True)[:8].tolist())


def test_five_steps_give_the_same_widths_but_keep_other_block_channels():
    dense = seeded_network("resnet20")
    pruned_1, map_1 = prune_at_init(dense, 0.5)
    pruned_5, map_5 = prune_at_init(dense, 0.5, steps=5)
    assert map_5["widths"] == map_1["widths"] and map_5["steps"] == 5 and map_1["steps"] == 1
    assert sum(p.numel() for p in pruned_5.parameters()) == 68_786
    # A block's first convolution is ranked by filter norms over its input channels, which
    # the earlier steps have already thinned: the ranking, not the width, changes.
    kept = [set(m["tensors"]["layer1.0.conv1.weight"]["indices"][0]) for m in (map_1, map_5)]
    assert len(kept[0]) == len(kept[1]) == 8 and kept[0] != kept[1]


def test_a_map_without_steps_is_a_one_step_map():
    dense = seeded_network()
    pruned, channel_map = prune_at_init(dense, 0.5)
    old = {k: v for k, v in channel_map.items() if k != "steps"}  # written before steps
    check_channel_map(old, dense, pruned)
    assert torch.equal(fuse(dense, pruned, old).conv1.weight,
                       fuse(dense, pruned, channel_map).conv1.weight)


def test_random_importance_depends_on_the_seed():
    dense = seeded_network()
    maps = [prune_at_init(dense, 0.5, importance="random", seed=s)[1] for s in (0, 0, 1)]
    kept = [m["tensors"]["layer1.0.conv1.weight"]["indices"][0] for m in maps]
    assert kept[0] == kept[1] != kept[2]


def test_channel_map_json_round_trip_and_mismatch_errors(tmp_path):
    dense = seeded_network()
    pruned, channel_map = prune_at_init(dense, 0.5)
    path = save_channel_map(channel_map, tmp_path / "map.json")
    assert load_channel_map(path, dense, pruned) == json.loads(json.dumps(channel_map))
    other, _ = prune_at_init(dense, 0.7)
    with pytest.raises(ChannelMapError, match="channel map: .* maps"):
        load_channel_map(path, dense, other)
    with pytest.raises(ChannelMapError, match="tensors do not match"):
        load_channel_map(path, seeded_network("resnet8"), pruned)
    broken = dict(channel_map, version=99)
    with pytest.raises(ChannelMapError, match="expected format pf-channel-map version 1"):
        fuse(dense, pruned, broken)


def test_a_network_without_the_classifier_contract_is_a_one_line_error():
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(),
                                  torch.nn.LazyLinear(10))
    with pytest.raises(ValueError, match="^arch: Sequential has no linear classifier named fc"):
        prune_at_init(network, 0.5)


def test_bad_ratio_and_steps_are_clear_errors():
    with pytest.raises(ValueError, match=r"prune_ratio: must lie in \[0, 1\)"):
        prune_at_init(seeded_network(), 1.0)
    for steps in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=rf"prune_steps: must be an integer >= 1, got {steps}"):
            prune_at_init(seeded_network(), 0.5, steps=steps)
