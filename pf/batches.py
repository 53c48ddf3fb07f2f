"""Mini-batches that stay on the training device: gathered by index, augmented and
normalised there, with no DataLoader and no host copies.

    for x, y in Batches(dataset.train, labeled, 128, dataset, shuffle=True, augment=True,
                        generator=g): ...
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from pf.data import Dataset, Split
from pf.layout import exact

__all__ = ["CROP_PADDING", "augment_batch", "Batches"]

CROP_PADDING = 4  # pixels of zero padding before the random crop (CIFAR convention)


def augment_batch(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (after zero-padding by 4 pixels) and horizontal flip, per image.

    Works on any device and dtype; the zero padding is applied before normalisation,
    as torchvision's ``RandomCrop(padding=4)`` does on PIL images.
    """
    n, _, h, w = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, [CROP_PADDING] * 4)
    shifts = torch.randint(0, 2 * CROP_PADDING + 1, (2, n, 1), generator=generator, device=device)
    rows = (shifts[0] + torch.arange(h, device=device))[:, None, :, None]
    # A flip reverses the column order inside the crop window.
    columns = torch.arange(w, device=device).expand(n, w)
    flip = torch.rand(n, 1, generator=generator, device=device) < 0.5
    columns = torch.where(flip, w - 1 - columns, columns)
    cols = (shifts[1] + columns)[:, None, None, :]
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


class Batches:
    """Mini-batches of one split, indexed on the device, augmented and normalised there.

    ``indices`` selects the subset (labeled set, pool) without copying the split; each
    iteration gathers one batch, converts it to float, augments it when asked and
    normalises it with the dataset's statistics; batches come with exactly the strides of
    ``memory_format`` (channels_last unless another is asked for; ``pf.layout.exact``
    copies a one-channel batch whose strides would pass for either layout). Shuffling
    draws from ``generator`` (which must live on the split's device), so the same seed
    gives the same batches.
    With ``with_indices=True`` each batch also carries the split indices of its images
    (x, y, idx), for code that keeps per-sample state (``pf.scores``'s recorder).
    """

    def __init__(self, split: Split, indices: torch.Tensor | None, batch_size: int,
                 dataset: Dataset, *, shuffle: bool = False, augment: bool = False,
                 generator: torch.Generator | None = None,
                 memory_format: torch.memory_format = torch.channels_last,
                 with_indices: bool = False):
        device = split.images.device
        self.split = split
        self.indices = (torch.arange(len(split), device=device) if indices is None
                        else torch.as_tensor(indices, device=device))
        self.batch_size = batch_size
        self.shuffle, self.augment, self.generator = shuffle, augment, generator
        self.memory_format, self.with_indices = memory_format, with_indices
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
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            images = self.split.images[idx]
            if self.augment:
                images = augment_batch(images, self.generator)
            x = torch.addcmul(self.shift, images.float(), self.scale)
            batch = exact(x, self.memory_format), self.split.labels[idx]
            yield (*batch, idx) if self.with_indices else batch
