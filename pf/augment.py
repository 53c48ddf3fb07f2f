"""Training augmentations: the CIFAR crop-and-flip on uint8 tensors (``augment_batch``), and
the ImageNet random-resized crop (``resized_crop_draws``, ``crop_box``) for images that are
decoded one by one (``pf.streaming``).

Both draw every random number from one ``torch.Generator`` in the calling thread, so a seed
gives the same augmented batches however many threads decode them.
"""

from __future__ import annotations

import math

import torch

__all__ = ["CROP_PADDING", "CROP_SCALE", "CROP_RATIO", "EVAL_CROP", "augment_batch",
           "resized_crop_draws", "crop_box", "center_crop_box"]

CROP_PADDING = 4  # pixels of zero padding before the random crop (CIFAR convention)
CROP_SCALE = (0.08, 1.0)  # share of the image's area a random-resized crop covers (ImageNet)
CROP_RATIO = (3 / 4, 4 / 3)  # its aspect ratio (width / height), drawn log-uniformly
EVAL_CROP = 0.875  # evaluation: resize the short side to side / 0.875, crop the centre (256 -> 224)


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


def resized_crop_draws(count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random-resized-crop draws as rows (area share, aspect ratio, x, y, flip), each
    uniform in [0, 1); ``crop_box`` turns one row into a box on an image of a given size.

    Drawn before the images are decoded (their sizes are not known yet), in one call, so the
    draws do not depend on how the decoding is spread over threads.
    """
    return torch.rand(count, 5, generator=generator, device=generator.device).cpu()


def crop_box(draw: tuple[float, ...], width: int, height: int
             ) -> tuple[tuple[float, float, float, float], bool]:
    """The box (left, top, right, bottom) and flip of one ``resized_crop_draws`` row.

    The area share is uniform in ``CROP_SCALE`` and the ratio log-uniform in ``CROP_RATIO``,
    as torchvision's ``RandomResizedCrop``. Where the box does not fit, torchvision draws
    again (10 times) and then crops the centre; pf shrinks the box's too-long side to the
    image instead, so one draw always gives one box (our choice: no retry loop to seed).
    """
    area_share, ratio_draw, x_draw, y_draw, flip_draw = draw
    area = width * height * (CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * area_share)
    low, high = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    ratio = math.exp(low + (high - low) * ratio_draw)
    box_width = min(width, math.sqrt(area * ratio))
    box_height = min(height, math.sqrt(area / ratio))
    left = x_draw * (width - box_width)
    top = y_draw * (height - box_height)
    return (left, top, left + box_width, top + box_height), flip_draw < 0.5


def center_crop_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The evaluation box, in the image's pixels: the centre square that resizing the short
    side to ``side / EVAL_CROP`` and cropping ``side`` pixels keeps, for any ``side``."""
    crop = min(width, height) * EVAL_CROP
    left, top = (width - crop) / 2, (height - crop) / 2
    return left, top, left + crop, top + crop
