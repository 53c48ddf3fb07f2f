"""Mini-batches that stay on the training device: gathered by index, augmented and
normalised there, with no DataLoader and no host copies (a streamed split decodes each
batch on the host and sends it over, ``pf.streaming``).

    for x, y in Batches(dataset.train, labeled, 128, dataset, shuffle=True, augment=True,
                        generator=g): ...
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from pf.data import Dataset, Split
from pf.layout import exact
from pf.streaming import StreamedSplit

__all__ = ["Batches"]


class Batches:
    """Mini-batches of one split, indexed on the device, augmented and normalised there.

    ``indices`` selects the subset (labeled set, pool) without copying the split; each
    iteration has the split load one batch (gathered, and augmented when asked: its
    ``load``), converts it to float and normalises it with the dataset's statistics; batches
    come with exactly the strides of ``memory_format`` (channels_last unless another is
    asked for; ``pf.layout.exact`` copies a one-channel batch whose strides would pass for
    either layout). Shuffling draws from ``generator`` (which must live on the split's
    device), so the same seed gives the same batches.
    With ``with_indices=True`` each batch also carries the split indices of its images
    (x, y, idx), for code that keeps per-sample state (``pf.scores``'s recorder). With
    ``share`` (``pf.distributed.part``) each batch is this process's part of the batch one
    process would get, augmented as there.
    """

    def __init__(self, split: Split | StreamedSplit, indices: torch.Tensor | None, batch_size: int,
                 dataset: Dataset, *, shuffle: bool = False, augment: bool = False,
                 generator: torch.Generator | None = None,
                 memory_format: torch.memory_format = torch.channels_last,
                 with_indices: bool = False, share=None):
        device = split.device
        self.split = split
        self.indices = (torch.arange(len(split), device=device) if indices is None
                        else torch.as_tensor(indices, device=device))
        self.batch_size = batch_size
        self.shuffle, self.augment, self.generator = shuffle, augment, generator
        self.memory_format, self.with_indices, self.share = memory_format, with_indices, share
        std = torch.tensor(dataset.std, device=device).view(1, -1, 1, 1)
        mean = torch.tensor(dataset.mean, device=device).view(1, -1, 1, 1)
        # (u8 / 255 - mean) / std as a single multiply-add.
        self.scale, self.shift = 1 / (255 * std), -mean / std

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.indices
        if self.shuffle:
            perm = torch.randperm(len(order), generator=self.generator, device=order.device)
            order = order[perm]
        chunks = order.split(self.batch_size)
        loaded = self.split.load(chunks, self.augment, self.generator, self.share)
        for idx, images in zip(chunks, loaded):
            idx = idx if self.share is None else self.share(idx)
            x = torch.addcmul(self.shift, images.float(), self.scale)
            batch = exact(x, self.memory_format), self.split.labels[idx]
            yield (*batch, idx) if self.with_indices else batch
