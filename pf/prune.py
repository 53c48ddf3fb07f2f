"""Structured pruning at initialization, and the channel map that fusion needs.

``prune_at_init(model, p)`` removes the fraction ``p`` of channels from every prunable
layer of an untrained network in one Torch-Pruning step, or in ``steps`` steps back to
back as the authors' code does (DepGraph couples the residual stream, BatchNorm and
shortcuts so that they lose the same channels; the classifier keeps its outputs).
Torch-Pruning keeps ``int(C * (1 - p))`` of a layer's C channels, so ResNet-56 at p = 0.5
has widths 8/16/32 and 0.215 M parameters, whatever the number of steps.

The **channel map** says, for every parameter and buffer of the pruned network, which
indices along each dimension it occupies in the dense one. Torch-Pruning's history names
only the root layer of each coupled group, so the map is read off replays: a float64
copy of the dense network whose every entry holds its own index along one dimension is
pruned with the same history (every step's, in order), and what survives names its
origin; one replay per dimension, so any tensor of any network Torch-Pruning can prune
decodes. The map is plain JSON, versioned, and validated against both networks on use; it
records the ratio, importance and steps it was made with (a map without ``steps`` was
made in one step).

    pruned, channel_map = prune_at_init(build_model("resnet56"), 0.5)
    save_channel_map(channel_map, "run/channel_map.json")
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch
import torch_pruning as tp
from torch import nn

__all__ = [
    "IMPORTANCES",
    "MAP_FORMAT",
    "MAP_VERSION",
    "ChannelMapError",
    "prune_at_init",
    "gather",
    "check_channel_map",
    "save_channel_map",
    "load_channel_map",
]

IMPORTANCES = ("l2", "group_l2", "random")
MAP_FORMAT, MAP_VERSION = "pf-channel-map", 1


class ChannelMapError(ValueError):
    """A channel map does not fit the networks it is used with."""


def _importance(name: str):
    """Torch-Pruning's importance for our names.

    ``l2``: the L2 norm of each filter of the group's root layer (``group_reduction="first"``,
    no normalisation), i.e. classic per-filter magnitude pruning. ``group_l2``: Torch-
    Pruning's default, squared weights summed over every layer of the coupled group, mean-
    normalised. ``random``: uniform random ranking (an ablation), drawn from torch's
    global generator, which ``prune_at_init`` seeds.
    """
    if name == "l2":
        return tp.importance.MagnitudeImportance(p=2, group_reduction="first", normalizer=None)
    if name == "group_l2":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "random":
        return tp.importance.RandomImportance()
    raise ValueError(f"importance: unknown importance {name!r}; "
                     f"choose one of {', '.join(IMPORTANCES)}")


def prune_at_init(model: nn.Module, ratio: float, importance: str = "l2",
                  input_shape: tuple[int, ...] = (3, 32, 32), seed: int = 0, steps: int = 1,
                  ) -> tuple[nn.Module, dict]:
    """Prune a copy of ``model`` (left untouched) at channel ratio ``ratio``.

    Returns the pruned network and its channel map (see ``save_channel_map``). ``ratio``
    is the fraction of channels removed in every prunable layer, 0 <= ratio < 1;
    ``input_shape`` is one example's (C, H, W), used only to trace the graph; ``seed``
    drives ``importance="random"``.

    ``steps`` is Torch-Pruning's ``iterative_steps``: step k of n removes channels until
    a layer keeps ``int(C * (1 - k * ratio / n))``, ranking them again on what is left,
    and all steps run back to back with no training between. The authors' code uses 5
    steps; pf's default is one. On untrained CIFAR ResNets (preact56, resnet56, resnet20;
    p = 0.5 to 0.8; ``l2`` and ``group_l2``) 5 steps give the same widths, parameters
    and MACs as one, but KEEP OTHER CHANNELS: a filter's L2 norm runs over its input
    channels, which earlier steps have thinned, so the ranking changes. 1 and 5 steps
    share 53-83 % of the kept channels with ``l2`` (46-87 % with ``group_l2``), less as p
    grows. Only a group whose root layer's inputs are never pruned always keeps the same
    channels: under ``l2`` the residual stream of stage 1 in post-activation nets (root:
    the stem), not in pre-activation ones (root: the stage's last convolution). Five
    steps take about twice as long (preact56: 0.86 s against 0.37 s on a 2-core Xeon).
    ``benchmarks/bench_prune_steps.py`` measures all this.
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"prune_ratio: must lie in [0, 1), got {ratio}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"prune_steps: must be an integer >= 1, got {steps!r}")
    if not isinstance(getattr(model, "fc", None), nn.Linear):
        raise ValueError(f"arch: {type(model).__name__} has no linear classifier named fc, "
                         "which pruning leaves whole (pf.models' contract)")
    dense = copy.deepcopy(model).cpu().float()
    pruned = copy.deepcopy(dense)
    example = torch.zeros(1, *input_shape)
    with torch.random.fork_rng(), warnings.catch_warnings():
        # A transformer's class token and position embedding are parameters outside any
        # layer; Torch-Pruning prunes their last dimension, as the map then records.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        torch.manual_seed(seed)
        pruner = tp.pruner.BasePruner(pruned, example, importance=_importance(importance),
                                      pruning_ratio=ratio, iterative_steps=steps,
                                      ignored_layers=[pruned.fc], num_heads=_heads(pruned))
        for _ in range(steps):
            pruner.step()
        tensors = _replay(dense, pruner.pruning_history(), example)
    channel_map = {
        "format": MAP_FORMAT,
        "version": MAP_VERSION,
        "prune_ratio": ratio,
        "importance": importance,
        "steps": steps,
        "widths": _widths(pruned),
        "tensors": tensors,
    }
    check_channel_map(channel_map, dense, pruned)
    return pruned, channel_map


def _heads(model: nn.Module) -> dict[nn.Module, int]:
    """Every attention's ``qkv`` projection and its head count, for Torch-Pruning to prune
    each head alike: read from modules with ``qkv`` and ``num_heads`` (timm's names, and
    ``pf.vit``'s)."""
    return {module.qkv: module.num_heads for module in model.modules()
            if isinstance(getattr(module, "qkv", None), nn.Linear)
            and isinstance(getattr(module, "num_heads", None), int)}


def _widths(model: nn.Module) -> dict[str, int]:
    """Output channels of every convolution (the widths to report)."""
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def _replay(dense: nn.Module, history: list, example: torch.Tensor) -> dict:
    """Decode, for every dimension of every tensor, which dense indices survive ``history``.

    One replay per dimension d: a float64 copy whose every floating tensor holds, at each
    entry, its own index along d (exact in float64) is pruned with the same history, and
    what survives along d names its origin. Any dimension of any tensor decodes so (a
    transformer's position embedding is pruned along its last), whatever the network.
    """
    dense_state = dense.state_dict()
    entries = {name: {"dense_shape": list(tensor.shape), "indices": [None] * tensor.dim()}
               for name, tensor in dense_state.items()}
    coded_dims = max((t.dim() for t in dense_state.values() if t.is_floating_point()), default=0)
    for dim in range(coded_dims):
        coded = copy.deepcopy(dense).double()
        with torch.no_grad():
            for tensor in coded.state_dict().values():
                if tensor.dim() > dim and tensor.is_floating_point():
                    tensor.copy_(_position_code(tensor.shape, dim))
        graph = tp.DependencyGraph().build_dependency(coded, example_inputs=example.double())
        graph.load_pruning_history(history)
        for name, tensor in coded.state_dict().items():
            if tensor.dim() > dim and tensor.is_floating_point():
                kept = tensor.movedim(dim, 0).reshape(tensor.shape[dim], -1)[:, 0].long().tolist()
                if len(kept) != dense_state[name].shape[dim]:
                    entries[name]["indices"][dim] = kept
    return entries


def _position_code(shape: torch.Size, dim: int) -> torch.Tensor:
    """A float64 tensor of ``shape`` whose every entry is its own index along ``dim``."""
    index = torch.arange(shape[dim], dtype=torch.float64)
    return index.reshape(-1, *[1] * (len(shape) - dim - 1)).expand(shape)


def gather(dense_tensor: torch.Tensor, indices: list) -> torch.Tensor:
    """The sub-tensor of ``dense_tensor`` that a channel-map entry's ``indices`` select."""
    for dim, kept in enumerate(indices):
        if kept is not None:
            dense_tensor = dense_tensor.index_select(
                dim, torch.tensor(kept, device=dense_tensor.device))
    return dense_tensor


def check_channel_map(channel_map: dict, dense: nn.Module, pruned: nn.Module) -> None:
    """Raise ``ChannelMapError`` unless the map fits both networks, tensor by tensor."""
    if channel_map.get("format") != MAP_FORMAT or channel_map.get("version") != MAP_VERSION:
        raise ChannelMapError(f"channel map: expected format {MAP_FORMAT} version {MAP_VERSION}, "
                              f"got {channel_map.get('format')} {channel_map.get('version')}")
    dense_state, pruned_state = dense.state_dict(), pruned.state_dict()
    entries = channel_map["tensors"]
    if set(entries) != set(dense_state) or set(entries) != set(pruned_state):
        odd = sorted(set(entries) ^ set(dense_state) | set(entries) ^ set(pruned_state))
        raise ChannelMapError("channel map: tensors do not match the networks "
                              f"({', '.join(odd[:3])} ...)")
    for name, entry in entries.items():
        dense_shape, pruned_shape = list(dense_state[name].shape), list(pruned_state[name].shape)
        expected = [len(k) if k is not None else n for k, n in zip(entry["indices"], dense_shape)]
        in_range = all(k is None or (k and max(k) < n and min(k) >= 0 and len(set(k)) == len(k))
                       for k, n in zip(entry["indices"], dense_shape))
        if entry["dense_shape"] != dense_shape or expected != pruned_shape or not in_range:
            raise ChannelMapError(f"channel map: {name} maps {entry['dense_shape']} -> {expected} "
                                  f"but the networks have {dense_shape} -> {pruned_shape}")


def save_channel_map(channel_map: dict, path: str | Path) -> Path:
    """Write a channel map as JSON (plain lists of ints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(channel_map))
    return path


def load_channel_map(path: str | Path, dense: nn.Module | None = None,
                     pruned: nn.Module | None = None) -> dict:
    """Read a channel map; with both networks given, check that it fits them."""
    channel_map = json.loads(Path(path).read_text())
    if dense is not None and pruned is not None:
        check_channel_map(channel_map, dense, pruned)
    return channel_map
