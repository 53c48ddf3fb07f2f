"""Data-parallel runs over several processes (``torchrun``), each on its own GPU (or, for
tests, its own CPU with gloo), that select exactly what one process selects.

A run started by ``torchrun --nproc_per_node N -m pf run ...`` joins the process group
(``start``). Every process builds the same networks from the same seeds and draws the same
shuffles and augmentations; what it does alone is its share of the images:

- training: each global mini-batch (``batch_size`` images, as in one process) is split
  in N contiguous parts (``part``); each process runs its part through
  ``DistributedDataParallel`` with its loss weighted by its share of the batch, so the
  averaged gradient is the global batch's. BatchNorm normalises over the global batch
  (``synced_batch_norm``: statistics and their gradients summed over processes), as one
  process does; torch's SyncBatchNorm would do the same on GPUs but refuses CPUs.
- scoring and testing: each process predicts its part of the indices, and the logits are
  gathered (``gather_parts``) so every process selects from the same scores.

Only rank 0 writes records and checkpoints (``is_main``). Differences to one process are
floating-point order only, with one exception: dropout (``dropout > 0``, BALD) draws each
process's masks from its own generator.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["start", "finish", "world_size", "rank", "is_main", "part", "gather_parts",
           "sum_over_processes", "data_parallel", "SyncedBatchNorm1d", "SyncedBatchNorm2d",
           "synced_batch_norm"]


def start(device: torch.device) -> torch.device:
    """Join the process group when ``torchrun`` started this process (``WORLD_SIZE`` > 1):
    NCCL on CUDA (each process on GPU ``LOCAL_RANK``), gloo on CPU. Returns the device this
    process trains on."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda" and dist.is_initialized():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def finish() -> None:
    """Leave the process group, if this process joined one (at the end of ``pf run``)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """How many processes share the run (1 without ``torchrun``)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's place among them (0 without ``torchrun``)."""
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes the run's files and shows its progress."""
    return rank() == 0


def part(indices: torch.Tensor) -> torch.Tensor:
    """This process's contiguous share of ``indices`` (shares differ by one at most)."""
    return indices.tensor_split(world_size())[rank()]


def gather_parts(local: torch.Tensor, total: int) -> torch.Tensor:
    """Every process's ``local`` rows (its ``part`` of ``total`` rows) in rank order: the
    rows one process would have computed. Parts are padded to one length to be gathered."""
    if world_size() == 1:
        return local
    lengths = [len(share) for share in torch.arange(total).tensor_split(world_size())]
    padded = local.new_zeros((lengths[0], *local.shape[1:]))
    padded[:len(local)] = local
    gathered = [torch.empty_like(padded) for _ in lengths]
    dist.all_gather(gathered, padded)
    return torch.cat([rows[:length] for rows, length in zip(gathered, lengths)])


def sum_over_processes(value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over the processes (itself without ``torchrun``)."""
    if world_size() > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value


def data_parallel(model: nn.Module) -> nn.Module:
    """``model`` wrapped for a data-parallel training step (itself in one process).
    Buffers are not broadcast: the synced BatchNorm keeps them equal on every process."""
    if world_size() == 1:
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        forward_sync_buffers=False)


class _GlobalBatchNorm(torch.autograd.Function):
    """Training-mode batch norm over the union of every process's batch: the per-channel
    count, mean and squared deviations are gathered and merged (Chan et al.'s pairwise
    update, exact where a sum of squares would cancel), and the backward pass sums the two
    channel sums of the output gradient over processes."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        dims = [0, *range(2, x.dim())]
        x32 = x.float()
        count = x32.numel() // x32.shape[1]
        var, mean = torch.var_mean(x32, dims, correction=0)
        local = torch.cat([mean.new_tensor([count]), mean, var * count])
        stats = [torch.empty_like(local) for _ in range(world_size())]
        dist.all_gather(stats, local)
        counts, means, squares = torch.stack(stats).split([1, len(mean), len(mean)], dim=1)
        total = counts.sum()
        mean = (counts * means).sum(0) / total
        var = (squares + counts * (means - mean) ** 2).sum(0) / total
        shape = [1, -1] + [1] * (x.dim() - 2)
        invstd = torch.rsqrt(var + eps)
        normalised = (x32 - mean.view(shape)) * invstd.view(shape)
        ctx.save_for_backward(normalised, weight, invstd)
        ctx.total = total
        out = normalised * weight.view(shape) + bias.view(shape)
        unbiased = var * total / (total - 1)  # what the running variance averages, as torch's
        ctx.mark_non_differentiable(mean, unbiased)
        return out.to(x.dtype), mean, unbiased

    @staticmethod
    def backward(ctx, grad_out, _mean_grad, _var_grad):
        normalised, weight, invstd = ctx.saved_tensors
        dims = [0, *range(2, grad_out.dim())]
        shape = [1, -1] + [1] * (grad_out.dim() - 2)
        grad = grad_out.float()
        grad_bias, grad_weight = grad.sum(dims), (grad * normalised).sum(dims)
        sums = sum_over_processes(torch.stack([grad_bias, grad_weight]))
        grad_x = (grad - sums[0].view(shape) / ctx.total
                  - normalised * (sums[1].view(shape) / ctx.total)) \
            * (weight * invstd).view(shape)
        # The parameters' own gradients stay local: the data-parallel wrapper averages them.
        return grad_x.to(grad_out.dtype), grad_weight, grad_bias, None


class _SyncedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm layer whose training steps normalise over every process's batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        out, mean, var = _GlobalBatchNorm.apply(x, self.weight, self.bias, self.eps)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            momentum = (self.momentum if self.momentum is not None
                        else 1 / self.num_batches_tracked.item())  # a cumulative average
            self.running_mean.lerp_(mean, momentum)
            self.running_var.lerp_(var, momentum)
        return out


class SyncedBatchNorm1d(_SyncedBatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over the global batch in training steps."""


class SyncedBatchNorm2d(_SyncedBatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` over the global batch in training steps."""


SYNCED = {nn.BatchNorm1d: SyncedBatchNorm1d, nn.BatchNorm2d: SyncedBatchNorm2d}


@contextlib.contextmanager
def synced_batch_norm(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with every BatchNorm layer normalising over the global batch while the
    block runs (nothing changes in one process).

    The layers change class in place and change back on the way out: pruning, fusion and
    checkpoints read the network's own layers, and the parameters and buffers stay the
    same objects. A layer without an affine transform or running statistics is refused.
    """
    layers = [m for m in model.modules() if type(m) in SYNCED] if world_size() > 1 else []
    plain = next((m for m in layers if not (m.affine and m.track_running_stats)), None)
    if plain is not None:
        raise ValueError(f"{plain}: only affine BatchNorm layers with running statistics "
                         "normalise over several processes")
    classes = [type(layer) for layer in layers]
    try:
        for layer, kind in zip(layers, classes):
            layer.__class__ = SYNCED[kind]
        yield model
    finally:
        for layer, kind in zip(layers, classes):
            layer.__class__ = kind
