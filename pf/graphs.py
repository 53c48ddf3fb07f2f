"""CUDA graphs: one replay instead of hundreds of kernel launches per batch.

pf's networks are small (16-64-channel CIFAR ResNets, and pruned selectors narrower still):
on a large GPU a batch's kernels finish faster than the host can launch them, so the
GPU waits on Python. A CUDA graph records a forward pass once and replays it with one
launch. Two places use one:

- **inference** (pool scoring, test evaluation): ``GraphReplay`` captures the forward
  pass explicitly at the first full batch and replays it for every batch of that shape;
  other shapes (the last, partial batch) run as usual.
- **the training step**, with ``compile=True``: ``compile_network`` asks
  ``torch.compile`` for its ``reduce-overhead`` mode, which captures the compiled forward
  and backward (CUDA graph trees), and ``mark_step`` tells it where a step begins.

Both only apply on CUDA and fall back to plain launches: a capture that fails warns once
and runs eagerly; ``torch.compile`` skips graphs it cannot capture by itself. The
numbers do not change: a replay runs the same kernels on the same inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["MIN_REPLAYS", "GraphReplay", "compile_network", "mark_step", "uses_graphs"]

# A capture costs about three plain passes (two warm-up passes and the recorded one), so
# fewer full batches than this cannot pay it back.
MIN_REPLAYS = 4
WARMUP_PASSES = 2


def uses_graphs(cuda_graphs: bool, device: torch.device) -> bool:
    """Whether CUDA graphs are in play: asked for, and on a CUDA device."""
    return cuda_graphs and device.type == "cuda"


def compile_network(model: nn.Module, device: torch.device, cuda_graphs: bool) -> nn.Module:
    """``torch.compile(model)``, in ``reduce-overhead`` mode (CUDA graphs) where
    ``uses_graphs``; the default mode otherwise (CPU, or ``cuda_graphs=False``)."""
    return torch.compile(model, mode="reduce-overhead" if uses_graphs(cuda_graphs, device)
                         else None)


def mark_step(cuda_graphs: bool, device: torch.device) -> None:
    """Tell compile's CUDA graphs that a training step begins: the previous step's graph
    outputs may then be overwritten (pf reads each step's outputs within the step)."""
    if uses_graphs(cuda_graphs, device):
        torch.compiler.cudagraph_mark_step_begin()


class GraphReplay:
    """``function(x)`` (a tuple of tensors) replayed from a CUDA graph.

    The graph is captured at the first batch, when at least ``MIN_REPLAYS`` batches of its
    shape will follow (``full_batches``); later batches of the same shape and strides are
    copied into the graph's input and replayed, any other batch runs ``function``
    directly. The returned tensors are the graph's own outputs, rewritten by the next
    replay: copy them before the next call. A capture that fails (an operation CUDA
    graphs cannot record) warns once and leaves ``function`` running as usual.
    """

    def __init__(self, function: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
                 full_batches: int):
        self.function = function
        self.enabled = full_batches >= MIN_REPLAYS
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_input: torch.Tensor | None = None
        self.static_outputs: tuple[torch.Tensor, ...] = ()

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.enabled and self.graph is None:
            self._capture(x)
        if self.graph is None or not self._fits(x):
            return self.function(x)
        self.static_input.copy_(x)
        self.graph.replay()
        return self.static_outputs

    def _fits(self, x: torch.Tensor) -> bool:
        return x.shape == self.static_input.shape and x.stride() == self.static_input.stride()

    def _capture(self, x: torch.Tensor) -> None:
        try:
            self.static_input = x.clone(memory_format=torch.preserve_format)
            # Warm-up on a side stream, as CUDA graphs require: lazy initialisation (cuDNN
            # handles, workspaces) must not happen during the capture.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_PASSES):
                    self.function(self.static_input)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.static_outputs = self.function(self.static_input)
            self.graph = graph
        except RuntimeError as error:
            self.enabled, self.graph = False, None
            warnings.warn(f"CUDA graph capture failed, running without graphs: {error}",
                          RuntimeWarning, stacklevel=3)
