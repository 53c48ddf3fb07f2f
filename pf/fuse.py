"""Fusion: put a trained pruned network back into the dense one it was cut from.

``fuse(dense_init, trained_pruned, channel_map, rest, seed, variant)`` returns a NEW dense
network: a copy of ``dense_init`` whose values are first chosen by ``rest`` (``REST_MODES``),
then overwritten by the trained pruned network theta_p* where ``variant`` places it
(``FUSION_VARIANTS``): ``"map"`` (the default) into the channels the channel map names,
``"leading"`` each tensor into the leading block of its dense counterpart
(``leading_channel_map``), ``"leading_conv"`` only the main-path convolutions' weights there
(the authors' code). Neither input is modified.

Why it works this way: docs/internals.md, "pf.fuse".
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
