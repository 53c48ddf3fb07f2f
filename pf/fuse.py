"""Fusion: put a trained pruned network back into the dense one it was cut from.

``fuse(dense_init, trained_pruned, channel_map, rest, seed, variant)`` returns a NEW dense
network: a copy of ``dense_init`` whose values are first chosen by ``rest``, then
overwritten by the trained pruned network theta_p* where ``variant`` places it.

Where theta_p* goes (``variant``, one of ``FUSION_VARIANTS``):

- ``"map"`` (the default, and what the paper's text describes): every parameter and
  BatchNorm buffer of theta_p* into the channels the channel map names, i.e. each
  channel back where pruning cut it from.
- ``"leading"``: the authors' code's placement, applied to every tensor: each tensor of
  theta_p* (convolutions, shortcut convolutions, BatchNorm weights, biases and running
  statistics, the classifier's columns) into the leading block ``[:n0, :n1]`` of its
  dense counterpart (``leading_channel_map``), through the same code path as ``"map"``.
- ``"leading_conv"``: the snapshot of the authors' code exactly (``../shared/PAPERS.md``
  section 7): only the weights of the main-path convolutions are written, in their
  leading block; BatchNorm, the classifier and the projection shortcuts (modules named
  ``shortcut``, torchvision's ``downsample``: ``SHORTCUT_NAMES``) are all the rest. With
  ``rest="xavier"`` it is that snapshot's fusion.

What the pruned network did not cover ("the rest") is chosen by ``rest`` (``REST_MODES``):

- ``"keep"``: dense_init's own initial values (PruneFuse's default: theta's
  initialisation with theta_p* written into it);
- ``"reinit"``: a fresh draw from each layer's initial distribution
  (``pf.layers.init_weights``), seeded; the extended paper's ablation ranks it first;
- ``"zero"``: zero weights and biases (BatchNorm statistics stay at dense_init's);
- ``"xavier"``: the authors' fill: the same seeded draw as ``"reinit"``, then every
  convolution weight (shortcuts included) redrawn Xavier-uniform, bound
  sqrt(6 / (fan_in + fan_out)); BatchNorm and the classifier are exactly ``"reinit"``'s.

What ``"zero"`` measures. With ``"map"`` or ``"leading"`` the fused network computes
exactly what the pruned one does (in eval mode): every coupled tensor holds a selector
channel at the same position, and a channel fusion did not fill has zero weights into it,
zero BatchNorm scale and shift, and zero weights out of it (the next layer's inputs, the
classifier's columns). Training never gives such a channel a gradient: its in-weights'
gradient passes through its zero BN scale, its out-weights' is scaled by its activation
(zero), its BN scale's by its normalised input (zero), and its BN shift's comes back only
through its zero out-weights; weight decay keeps zero at zero. The fused "dense" target
therefore trains as the pruned network padded with zeros, and reaches the pruned
architecture's accuracy (trained on from theta_p*, with distillation), not the dense
one's: a test trains a fused ResNet-8 at p = 0.5 and finds all 168 non-fused filters
still exactly zero. The extended paper's ranking (reinit > keep > zero) fits this
reading; it does not say how its "zero" was built. With ``"leading_conv"`` zero is
degenerate: every BatchNorm scale and the classifier are zero, so the logits are zero for
every input and only the classifier's bias ever gets a gradient.

Comparing the placements. Let P be the channel permutation that moves, in every coupled
group, the map's kept channels to the front (in order) and the others behind them;
applied to every tensor of the group at once (a convolution's filters, its BatchNorm, the
next convolution's input columns, the shortcut, the residual stream, the classifier's
columns) it changes no function. ``"leading"`` differs from ``"map"`` only through P and
the rest (tested: P keeps a map-fused network's logits, and with zero rest turns it into
the leading-fused one exactly):

- with ``"zero"`` the two are the same network up to P (the rest's BatchNorm statistics
  aside, which a zero scale and shift make irrelevant), and train alike;
- with ``"reinit"`` or ``"xavier"`` the rest is a fresh draw whose entries are, tensor by
  tensor, i.i.d. or constant, with fans that P does not change; P of such a draw has its
  distribution, so leading-fused and P(map-fused) are equal in distribution over the seed
  (not equal for one seed), and so are the functions and trainings they start;
- with ``"keep"`` they differ. ``"map"`` keeps theta itself around the selector's
  channels: the rest is exactly what pruning removed (with l2 importance the channels
  whose root filters had the smallest norms, so not a sample of the initial
  distribution), and the fused network is theta with its kept channels trained.
  ``"leading"`` surrounds them with theta's values at fixed positions, whatever pruning
  kept: entry by entry a draw from the initial distribution, but a different network
  than the one pruned, which may hold copies of some selector channels' initial values
  (those of the kept channels that sat behind position n).

``"leading_conv"`` is exact under no rest: BatchNorm, the classifier and the shortcuts of
theta_p* are not carried over, so its selector channels are normalised, added and read
with values that theta_p* never trained with.

Neither input is modified.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pf.layers import init_weights
from pf.prune import MAP_FORMAT, MAP_VERSION, check_channel_map

__all__ = ["REST_MODES", "FUSION_VARIANTS", "SHORTCUT_NAMES", "fuse",
           "leading_channel_map"]

REST_MODES = ("keep", "reinit", "zero", "xavier")
FUSION_VARIANTS = ("map", "leading", "leading_conv")
SHORTCUT_NAMES = {"shortcut", "downsample"}  # projection shortcuts: pf's and torchvision's


def fuse(dense_init: nn.Module, trained_pruned: nn.Module, channel_map: dict,
         rest: str = "keep", seed: int = 0, variant: str = "map") -> nn.Module:
    """A dense copy of ``dense_init`` with ``trained_pruned`` written into it.

    ``variant`` says where (see the module docstring); the leading variants read the
    placement from the two networks' shapes, but ``channel_map`` is checked all the same.
    ``seed`` drives ``rest="reinit"`` and ``"xavier"`` only. Raises ``ChannelMapError`` if
    the map does not fit the two networks and ValueError for an unknown ``rest`` or
    ``variant``.
    """
    if rest not in REST_MODES:
        raise ValueError(f"rest: unknown mode {rest!r}; choose one of {', '.join(REST_MODES)}")
    if variant not in FUSION_VARIANTS:
        raise ValueError(f"fusion: unknown variant {variant!r}; "
                         f"choose one of {', '.join(FUSION_VARIANTS)}")
    check_channel_map(channel_map, dense_init, trained_pruned)
    sources = trained_pruned.state_dict()
    if variant != "map":
        channel_map = leading_channel_map(dense_init, trained_pruned)
    if variant == "leading_conv":
        sources = {name: sources[name] for name in _main_path_conv_weights(trained_pruned)}
    fused = copy.deepcopy(dense_init)
    if rest in ("reinit", "xavier"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fused.apply(init_weights)
            if rest == "xavier":
                for module in fused.modules():
                    if isinstance(module, nn.Conv2d):
                        nn.init.xavier_uniform_(module.weight)
    elif rest == "zero":
        with torch.no_grad():
            for parameter in fused.parameters():
                parameter.zero_()
    fused_state = fused.state_dict()
    with torch.no_grad():
        for name, source in sources.items():
            target = fused_state[name]
            slots = _slots(channel_map["tensors"][name]["indices"], target)
            target[slots] = source.to(device=target.device, dtype=target.dtype)
    return fused


def leading_channel_map(dense: nn.Module, pruned: nn.Module) -> dict:
    """A channel map placing every tensor of ``pruned`` in the leading block of ``dense``'s.

    Along every dimension where the two shapes differ the kept indices are ``range(n)``;
    the authors' fusion places channels so. Raises ``ChannelMapError`` if a pruned tensor
    does not fit its dense counterpart.
    """
    pruned_state = pruned.state_dict()
    tensors = {}
    for name, tensor in dense.state_dict().items():
        pruned_shape = pruned_state.get(name, tensor).shape
        tensors[name] = {"dense_shape": list(tensor.shape),
                         "indices": [None if n == dense_n else list(range(n))
                                     for n, dense_n in zip(pruned_shape, tensor.shape)]}
    channel_map = {"format": MAP_FORMAT, "version": MAP_VERSION, "tensors": tensors}
    check_channel_map(channel_map, dense, pruned)
    return channel_map


def _main_path_conv_weights(model: nn.Module) -> list[str]:
    """The weight names of every convolution outside a projection shortcut."""
    return [f"{name}.weight" for name, module in model.named_modules()
            if isinstance(module, nn.Conv2d) and not SHORTCUT_NAMES & set(name.split("."))]


def _slots(indices: list, target: torch.Tensor) -> tuple:
    """An advanced index selecting the cross product of a map entry's kept indices."""
    axes = [torch.arange(n, device=target.device) if kept is None
            else torch.tensor(kept, device=target.device)
            for kept, n in zip(indices, target.shape)]
    return tuple(torch.meshgrid(*axes, indexing="ij")) if axes else ...
