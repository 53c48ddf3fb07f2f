"""The memory layout each network runs in, and tensors that have exactly that layout.

Networks run in channels_last (cuDNN's fastest layout; on the 2-core development CPU,
ResNet-20 also trained 1.7x faster with it than in NCHW), except on CPU a network that
oneDNN's channels_last kernels crash on (``memory_format_for``), which runs in NCHW.

Asking for a layout is not enough to get it. A tensor with a dimension of size 1 (a batch
of one-channel images, a 1x1 map) can be "contiguous" and "channels_last" at once: a
digits batch with strides (64, 1, 8, 1) passes both checks, so ``x.contiguous()`` returns
it unchanged, oneDNN reads its strides as channels_last and runs the whole network in
channels_last, the crashing convolution included (``../shared/repro/
onednn_avx2_one_channel.py``). So pf never asks: ``exact`` compares a tensor's strides
with the layout's own and copies when they differ, and ``place`` does the same for every
weight of a network. Every batch that enters a network goes through ``exact``
(``pf.batches.Batches``; a distillation teacher's input in ``pf.train.fit``).

Why NCHW for those networks and not channels_last with oneDNN turned off for them (the
other safe choice): on a 2-core AMD EPYC with oneDNN's AVX2 code path, one thread, an SGD
step of ResNet-20 pruned at p = 0.6/0.7/0.8 took 1.4-1.7x longer without oneDNN on
digits and 1.7-2.3x longer on CIFAR-sized images, and more with two threads
(``benchmarks/bench_layout.py``, ``benchmarks/README.md``).

    layout = memory_format_for(model, device)
    place(model, device, layout)
    logits = model(exact(x, layout))
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

__all__ = ["UNSAFE_CHANNELS", "memory_format_for", "layout_strides", "has_layout", "exact",
           "place"]

# oneDNN's channels_last stride-2 weight gradient crashes below 8 input channels on AVX2.
UNSAFE_CHANNELS = 8


def memory_format_for(model: nn.Module, device: torch.device) -> torch.memory_format:
    """channels_last, or NCHW for a network that oneDNN's channels_last kernels crash on.

    On AVX2-only CPUs (e.g. AMD EPYC; Intel with ``ONEDNN_MAX_CPU_ISA=AVX2``), oneDNN
    3.12 (torch 2.14) corrupts the heap in the weight gradient of a stride-2 convolution
    with fewer than ``UNSAFE_CHANNELS`` input channels in channels_last when one
    intra-op thread runs it (pytest-xdist workers, ``pf sweep --jobs`` on few cores):
    pruned CIFAR ResNets at p >= 0.6 have such shortcuts (stage-1 widths 6/4/3). NCHW
    runs them correctly. Only such networks run in NCHW on CPU, so every other network
    keeps channels_last's speed; on CUDA nothing changes.
    """
    if device.type == "cpu" and any(
            isinstance(m, nn.Conv2d) and max(m.stride) > 1 and m.in_channels < UNSAFE_CHANNELS
            for m in model.modules()):
        return torch.contiguous_format
    return torch.channels_last


@lru_cache(maxsize=256)
def layout_strides(shape: tuple[int, ...], memory_format: torch.memory_format) -> tuple[int, ...]:
    """The strides torch gives a new 4-d tensor of ``shape`` in ``memory_format``: the one
    unambiguous form of that layout (read from torch itself, on the meta device)."""
    return torch.empty(shape, device="meta", memory_format=memory_format).stride()


def has_layout(tensor: torch.Tensor, memory_format: torch.memory_format) -> bool:
    """Whether ``tensor`` has exactly the strides of ``memory_format`` (a tensor that is
    not 4-d has no layout to get wrong)."""
    return tensor.dim() != 4 or tensor.stride() == layout_strides(tuple(tensor.shape),
                                                                  memory_format)


def exact(tensor: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """``tensor`` with exactly the strides of ``memory_format``: itself when it has them,
    else a copy that has."""
    return tensor if has_layout(tensor, memory_format) else tensor.clone(
        memory_format=memory_format)


@torch.no_grad()
def place(model: nn.Module, device: torch.device, memory_format: torch.memory_format) -> nn.Module:
    """Move ``model`` to ``device`` with every 4-d weight and buffer in exactly
    ``memory_format``, in place; returns ``model``.

    As ``model.to(device, memory_format=...)``, but checked against the layout's strides
    (``has_layout``) rather than left to torch's reading of them, since oneDNN follows a
    weight's layout as it follows an input's: a 1x1 convolution's weight made in
    channels_last, (6, 1, 6, 6), passes for NCHW too. Tensors that have the layout stay
    the very same tensors.
    """
    model.to(device=device)
    for tensor in (*model.parameters(), *model.buffers()):
        if not has_layout(tensor, memory_format):
            tensor.data = tensor.data.clone(memory_format=memory_format)
    return model
