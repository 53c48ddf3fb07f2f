"""Datasets too large for memory (ImageNet-1K: 1.28 M images), streamed from JPEG folders.

A streamed split holds only its file names (as bytes) and labels; ``pf.batches.Batches``
asks it for one batch of indices at a time (``StreamedSplit.load``), and a thread pool
decodes that batch's files (PIL releases the GIL while it decodes and resizes), crops them
to a square of ``side`` pixels and hands back one uint8 batch on the training device,
while the next batch is already decoding. Training batches get ImageNet's random-resized
crop and flip (``pf.augment``); everything else (test set, pool scoring) gets the centre
crop. Host memory is bounded: the names and labels (about 50 bytes per image: 65 MB for
ImageNet-1K), two decoded batches (2 x 256 x 3 x 224 x 224 bytes = 77 MB), and one
full-size image per decoding thread.

    dataset = load_dataset("imagenet")                        # $PF_IMAGENET or <data>/imagenet
    dataset = load_dataset("stream:/data/places365", side=160)  # any train/ and test/ tree

Images are decoded on the host's cores (``decode_threads``). Decoding on the GPU
(``torchvision.io.decode_jpeg``) is not implemented: no GPU has yet measured whether the
host is the bottleneck.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pf.augment import center_crop_box, crop_box, resized_crop_draws

__all__ = ["IMAGE_SUFFIXES", "IMAGENET_STATS", "IMAGENET_ENV", "TEST_FOLDERS", "StreamedSplit",
           "decode_threads", "imagenet_path", "list_class_folders"]

# The statistics every ImageNet recipe normalises with (torchvision's); streamed folders
# use them too, as computing a folder's own would mean decoding all of it once.
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMAGENET_ENV = "PF_IMAGENET"  # where the ImageNet-1K folder is, when not under the data folder
TEST_FOLDERS = ("test", "val")  # the held-out split's folder name, first found wins
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # files read as images


def decode_threads() -> int:
    """Threads that decode images: this process's cores, shared with the other processes of
    a ``torchrun`` job on the same machine (``LOCAL_WORLD_SIZE``)."""
    cores = len(os.sched_getaffinity(0))
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def imagenet_path(data_root: Path) -> Path:
    """The ImageNet-1K folder: ``$PF_IMAGENET``, else ``<data_root>/imagenet``."""
    if os.environ.get(IMAGENET_ENV):
        return Path(os.environ[IMAGENET_ENV]).expanduser().resolve()
    return data_root / "imagenet"


@dataclass(frozen=True)
class StreamedSplit:
    """One split of an image folder: file names below ``root`` (bytes, relative), int64
    labels on ``device``, and the side of the square every image is cropped to."""

    root: Path
    files: np.ndarray
    labels: torch.Tensor
    side: int
    device: torch.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return 3, self.side, self.side

    def to(self, device: torch.device | str) -> StreamedSplit:
        """This split with its labels, and the batches it loads, on ``device``."""
        device = torch.device(device)
        return replace(self, labels=self.labels.to(device), device=device)

    def load(self, chunks: Iterable[torch.Tensor], augment: bool,
             generator: torch.Generator | None, share=None) -> Iterator[torch.Tensor]:
        """The uint8 images (n, 3, side, side) of each chunk of indices, on the device: of
        the rows ``share`` keeps (as ``pf.data.Split.load``), the others not even read.

        Each chunk's crops are drawn from ``generator`` when it is submitted, in order and
        for the whole chunk, so the batches depend on the seed only; one chunk decodes
        ahead of the one returned.
        """
        with ThreadPoolExecutor(decode_threads()) as pool:
            ahead: list[Future] | None = None
            for idx in chunks:
                submitted = self._submit(pool, idx, augment, generator, share)
                if ahead is not None:
                    yield self._collect(ahead)
                ahead = submitted
            if ahead is not None:
                yield self._collect(ahead)

    def _submit(self, pool: ThreadPoolExecutor, idx: torch.Tensor, augment: bool,
                generator: torch.Generator | None, share) -> list[Future]:
        rows = torch.arange(len(idx)) if share is None else share(torch.arange(len(idx)))
        # drawn for the whole chunk, so that every process draws what one process does
        draws = (resized_crop_draws(len(idx), generator)[rows].tolist() if augment
                 else [None] * len(rows))
        names = self.files[idx.cpu()[rows].numpy()]
        return [pool.submit(self._decode, self.root / name.decode(), draw)
                for name, draw in zip(names, draws)]

    def _decode(self, path: Path, draw: list[float] | None) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as image:
            image = image.convert("RGB")
            if draw is None:
                box, flip = center_crop_box(*image.size), False
            else:
                box, flip = crop_box(draw, *image.size)
            pixels = np.asarray(image.resize((self.side, self.side), Image.BILINEAR, box=box))
        return pixels[:, ::-1] if flip else pixels

    def _collect(self, decoding: list[Future]) -> torch.Tensor:
        pixels = np.stack([future.result() for future in decoding])  # (n, side, side, 3)
        # Height-width-channel memory is channels_last once permuted: no copy on the way.
        return torch.from_numpy(pixels).permute(0, 3, 1, 2).to(self.device)


def list_class_folders(where: Path, classes: tuple[str, ...]) -> tuple[np.ndarray, torch.Tensor]:
    """The image files in ``where/<class>/`` for each of ``classes`` (relative names, as bytes,
    sorted within a class) and their labels (the class's position); a missing folder is
    an empty class."""
    names, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(entry.name for entry in os.scandir(where / name)
                       if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES) \
            if (where / name).is_dir() else []
        names += [f"{name}/{file}".encode() for file in files]
        labels += [label] * len(files)
    return np.array(names, dtype=bytes), torch.tensor(labels, dtype=torch.long)
