"""Fusion: the trained pruned network written into the dense one through the channel map
(``rest`` zero, keep, reinit), and the authors' variants beside it (leading-block placement,
the Xavier rest, conv-only)."""

import copy
import dataclasses
import functools
import math

import pytest
import torch
from torch import nn

from fakes import outside_mask, pretend_trained, seeded_network
from pf.experiments.config import make_config
from pf.fuse import FUSION_VARIANTS, SHORTCUT_NAMES, fuse, leading_channel_map
from pf.layers import init_weights
from pf.models import build_model
from pf.prune import ChannelMapError, gather, prune_at_init
from pf.train import fit

# ---------------------------------------------------------------------------------------
# pf's fusion through the channel map
# ---------------------------------------------------------------------------------------


EXACT_FUSION = [("resnet20", 32), ("resnet56", 32), ("preact164", 32), ("wrn16_4", 32),
                ("mobilenetv2", 32), ("resnet50", 64), ("vit_tiny_p4", 32), ("vit_tiny_p4", 16)]


@pytest.mark.parametrize("arch, size", EXACT_FUSION)
def test_zero_rest_fusion_computes_exactly_the_trained_pruned_network(arch, size):
    dense = seeded_network(arch)
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
    dense = seeded_network()
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
    dense = seeded_network()
    pruned, channel_map = prune_at_init(dense, 0.5)
    a = fuse(dense, pruned, channel_map, rest="reinit", seed=5).layer1[0].conv1.weight
    b = fuse(dense, pruned, channel_map, rest="reinit", seed=5).layer1[0].conv1.weight
    c = fuse(dense, pruned, channel_map, rest="reinit", seed=6).layer1[0].conv1.weight
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, dense.layer1[0].conv1.weight)
    kept = channel_map["tensors"]["layer1.0.conv1.weight"]["indices"]
    assert torch.equal(gather(a, kept), pruned.layer1[0].conv1.weight)


def test_an_unknown_rest_is_a_clear_error():
    pruned, channel_map = prune_at_init(seeded_network(), 0.5)
    with pytest.raises(ValueError, match="rest: unknown mode 'ones'"):
        fuse(seeded_network(), pruned, channel_map, rest="ones")


# ---------------------------------------------------------------------------------------
# The authors' variants beside it
# ---------------------------------------------------------------------------------------


X = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@functools.cache
def _pruned_once(arch, ratio):
    torch.manual_seed(0)
    dense = build_model(arch)
    return (dense, *prune_at_init(dense, ratio))


def _setup(arch, ratio=0.5):
    """A fresh dense network, its pruned network 'trained' (weights and BN statistics), the map."""
    dense, pruned, channel_map = copy.deepcopy(_pruned_once(arch, ratio))
    return dense, pretend_trained(pruned), channel_map


def _logits(model):
    model.eval()
    with torch.no_grad():
        return model(X)


def _fill(dense, rest, seed):
    """What each rest mode puts everywhere fusion writes nothing (as the docstring defines)."""
    fill = copy.deepcopy(dense)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        if rest == "reinit":
            fill.apply(init_weights)
        for parameter in fill.parameters() if rest == "zero" else ():
            parameter.zero_()
    return fill.state_dict()


def _main_path_conv(name, tensor):
    return tensor.dim() == 4 and not SHORTCUT_NAMES & set(name.split("."))


def _permute_kept_first(state, channel_map):
    """Move, along every mapped dimension, the map's kept channels to the front."""
    permuted = {}
    for name, tensor in state.items():
        for dim, kept in enumerate(channel_map["tensors"][name]["indices"]):
            if kept is not None:
                order = kept + sorted(set(range(tensor.shape[dim])) - set(kept))
                tensor = tensor.index_select(dim, torch.tensor(order))
        permuted[name] = tensor
    return permuted


@pytest.mark.parametrize("variant", ["map", "leading"])
@pytest.mark.parametrize("ratio", [0.5, 0.7])
@pytest.mark.parametrize("arch", ["resnet8", "resnet20", "preact20"])
def test_zero_rest_fusion_reproduces_the_pruned_networks_eval_logits(arch, ratio, variant):
    dense, pruned, channel_map = _setup(arch, ratio)
    fused = fuse(dense, pruned, channel_map, rest="zero", variant=variant)
    torch.testing.assert_close(_logits(fused), _logits(pruned), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ["resnet20", "preact20"])
def test_leading_places_every_tensor_in_its_leading_block(arch):
    dense, pruned, channel_map = _setup(arch)
    fused = fuse(dense, pruned, channel_map, variant="leading").state_dict()
    placement = leading_channel_map(dense, pruned)["tensors"]
    for name, tensor in pruned.state_dict().items():
        indices = placement[name]["indices"]
        assert all(k is None or k == list(range(len(k))) for k in indices), name
        assert torch.equal(gather(fused[name], indices), tensor), name
        outside = outside_mask(indices, fused[name].shape)  # rest="keep": theta's own values
        assert torch.equal(fused[name][outside], dense.state_dict()[name][outside]), name


@pytest.mark.parametrize("arch", ["resnet20", "preact20"])
def test_leading_is_map_with_the_kept_channels_moved_to_the_front(arch):
    dense, pruned, channel_map = _setup(arch)
    assert channel_map["tensors"]["conv1.weight"]["indices"][0] != list(range(8))  # l2 order
    mapped = fuse(dense, pruned, channel_map, rest="zero").state_dict()
    leading = fuse(dense, pruned, channel_map, rest="zero", variant="leading").state_dict()
    permuted = _permute_kept_first(mapped, channel_map)
    for name, tensor in leading.items():  # zero rest: the same network up to the permutation
        assert torch.equal(permuted[name], tensor), name
    # The permutation changes no function, whatever the weights (BN statistics included).
    trained = pretend_trained(fuse(dense, pruned, channel_map, rest="keep"))
    moved = copy.deepcopy(trained)
    moved.load_state_dict(_permute_kept_first(trained.state_dict(), channel_map))
    torch.testing.assert_close(_logits(moved), _logits(trained), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rest", ["keep", "zero", "reinit"])
@pytest.mark.parametrize("arch", ["resnet20", "preact20", "resnet50"])
def test_leading_conv_writes_only_the_main_path_convolutions_leading_blocks(arch, rest):
    dense, pruned, channel_map = _setup(arch)
    fused = fuse(dense, pruned, channel_map, rest=rest, seed=3, variant="leading_conv")
    fused, fill = fused.state_dict(), _fill(dense, rest, seed=3)
    pruned_state = pruned.state_dict()
    written = 0
    for name, tensor in fused.items():
        if _main_path_conv(name, tensor):
            written += 1
            block = tuple(slice(n) for n in pruned_state[name].shape)
            assert torch.equal(tensor[block], pruned_state[name]), name
            outside = torch.ones_like(tensor, dtype=torch.bool)
            outside[block] = False
            assert torch.equal(tensor[outside], fill[name][outside]), name
        else:  # BN, classifier, shortcuts: all the rest
            assert torch.equal(tensor, fill[name]), name
    convs = [m for m in dense.modules() if isinstance(m, nn.Conv2d)]
    shortcuts = 4 if arch == "resnet50" else 2  # torchvision's "downsample", pf's "shortcut"
    assert written == len(convs) - shortcuts  # the projection shortcuts keep the rest's values


@pytest.mark.parametrize("arch", ["resnet20", "preact20"])
def test_leading_conv_with_zero_rest_is_degenerate(arch):
    dense, pruned, channel_map = _setup(arch)
    fused = fuse(dense, pruned, channel_map, rest="zero", variant="leading_conv")
    assert not _logits(fused).any()
    fused.train()
    nn.functional.cross_entropy(fused(X), torch.arange(8) % 10).backward()
    learning = [name for name, p in fused.named_parameters() if p.grad is not None and p.grad.any()]
    assert learning == ["fc.bias"]


def test_xavier_rest_is_reinit_with_every_convolution_redrawn_xavier_uniform():
    dense, pruned, channel_map = _setup("preact20")
    xavier, again, other, reinit = (
        fuse(dense, pruned, channel_map, rest=rest, seed=seed).state_dict()
        for rest, seed in (("xavier", 3), ("xavier", 3), ("xavier", 4), ("reinit", 3)))
    convs = 0
    for name, tensor in xavier.items():
        assert torch.equal(tensor, again[name]), name  # seeded
        outside = outside_mask(channel_map["tensors"][name]["indices"], tensor.shape)
        if tensor.dim() == 4:  # shortcuts included
            convs += 1
            fan_in, fan_out = tensor[0].numel(), len(tensor) * tensor[0, 0].numel()
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert tensor[outside].abs().max() <= bound, name
            assert not torch.equal(tensor[outside], reinit[name][outside]), name
            assert not torch.equal(tensor[outside], other[name][outside]), name
        else:
            assert torch.equal(tensor, reinit[name]), name
    assert convs == 21  # 19 main-path convolutions and 2 projection shortcuts


def test_unknown_variant_and_misfit_networks_are_clear_errors():
    dense, pruned, channel_map = _setup("resnet8")
    with pytest.raises(ValueError, match="fusion: unknown variant 'authors'; choose one of "
                                         + ", ".join(FUSION_VARIANTS)):
        fuse(dense, pruned, channel_map, variant="authors")
    with pytest.raises(ChannelMapError, match="channel map: conv1.weight maps"):
        leading_channel_map(pruned, dense)
