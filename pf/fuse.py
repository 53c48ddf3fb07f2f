"""Fusion: put a trained pruned network back into the dense one it was cut from.

``fuse(dense_init, trained_pruned, channel_map, rest)`` returns a NEW dense network in
which every parameter and BatchNorm buffer of the trained pruned network sits in the
slot the channel map names. What the pruned network did not cover ("the rest") is
chosen by ``rest``:

- ``"keep"``: dense_init's own initial values (PruneFuse's default: theta's
  initialisation with theta_p* written into it);
- ``"reinit"``: a fresh draw from each layer's initial distribution
  (``pf.models.init_weights``), seeded; the extended paper's ablation ranks it first;
- ``"zero"``: zero weights and biases (BatchNorm statistics stay at their initial 0/1),
  so that the fused network computes exactly what the pruned one does (in eval mode).
  Know what this ablation then measures: a channel fusion did not fill has zero weights
  into it, zero BatchNorm scale and shift, and zero weights out of it (the next layer's
  inputs, the classifier's columns), so training never gives it a gradient: its
  in-weights' gradient passes through its zero BN scale, its out-weights' is scaled by
  its activation (zero), its BN scale's by its normalised input (zero), and its BN
  shift's comes back only through its zero out-weights; weight decay keeps zero at
  zero. The fused "dense" target therefore trains as the pruned network padded with
  zeros, and reaches the pruned architecture's accuracy (trained on from theta_p*, with
  distillation), not the dense one's: a test trains a fused ResNet-8 at p = 0.5 and
  finds all 168 non-fused filters still exactly zero. The extended paper's ranking
  (reinit > keep > zero) fits this reading; it does not say how its "zero" was built.

Neither input is modified.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pf.models import init_weights
from pf.prune import check_channel_map

__all__ = ["REST_MODES", "fuse"]

REST_MODES = ("keep", "reinit", "zero")


def fuse(dense_init: nn.Module, trained_pruned: nn.Module, channel_map: dict,
         rest: str = "keep", seed: int = 0) -> nn.Module:
    """A dense copy of ``dense_init`` with ``trained_pruned`` written into its channels.

    ``seed`` drives ``rest="reinit"`` only. Raises ``ChannelMapError`` if the map does not
    fit the two networks and ValueError for an unknown ``rest``.
    """
    if rest not in REST_MODES:
        raise ValueError(f"rest: unknown mode {rest!r}; choose one of {', '.join(REST_MODES)}")
    check_channel_map(channel_map, dense_init, trained_pruned)
    fused = copy.deepcopy(dense_init)
    if rest == "reinit":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fused.apply(init_weights)
    elif rest == "zero":
        with torch.no_grad():
            for parameter in fused.parameters():
                parameter.zero_()
    fused_state = fused.state_dict()
    with torch.no_grad():
        for name, source in trained_pruned.state_dict().items():
            target = fused_state[name]
            slots = _slots(channel_map["tensors"][name]["indices"], target)
            target[slots] = source.to(device=target.device, dtype=target.dtype)
    return fused


def _slots(indices: list, target: torch.Tensor) -> tuple:
    """An advanced index selecting the cross product of a map entry's kept indices."""
    axes = [torch.arange(n, device=target.device) if kept is None
            else torch.tensor(kept, device=target.device)
            for kept, n in zip(indices, target.shape)]
    return tuple(torch.meshgrid(*axes, indexing="ij")) if axes else ...
