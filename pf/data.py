"""Datasets as uint8 tensors, decoded once and cached (``pf.batches`` iterates over them
on the training device).

Every dataset loads as a ``Dataset``: train and test ``Split``s of uint8 images (N, C, H, W)
with int64 labels, the class names, and the per-channel mean/std used to normalise. Datasets
too large for memory stream from their folders instead (``pf.streaming``: ``imagenet``,
``stream:<path>``); both kinds of split hand ``pf.batches.Batches`` uint8 batches through
``load``. Decoding happens once; the tensors are cached under the data directory
(``$PF_DATA``, default ``~/.cache/pf/data``) and later loads read that file. The first load
holds a lock in that directory while it prepares the dataset (download, extract, decode), so
workers that start together prepare it once and the others read the cache.

    dataset = load_dataset("digits")                      # 1,437 train / 360 test, 8x8
    dataset = load_dataset("imagefolder:../shared/data/cifar10-jpeg.tar.gz")

Names: ``digits`` (scikit-learn's bundled handwritten digits; no download),
``cifar10``/``cifar100`` (torchvision's archives), ``cifar10_jpeg`` (the real CIFAR-10
as JPEG, quality ~75, that ships beside this project; ``cifar10_jpeg_path``),
``tinyimagenet`` (the tiny-imagenet-200 folder), ``imagefolder:<path>`` (any
``{train,test}/<class>/*`` tree, as a folder or a .tar/.tar.gz archive), ``synthetic``
(small, learnable, for tests); streamed: ``imagenet`` (ImageNet-1K's ``train/`` and
``val/`` class folders, ``pf.streaming.imagenet_path``) and ``stream:<path>`` (any such
tree), cropped to ``side`` pixels.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pf.augment import augment_batch
from pf.storage import exclusive_lock, save_atomically
from pf.streaming import (IMAGE_SUFFIXES, IMAGENET_STATS, TEST_FOLDERS, StreamedSplit,
                          imagenet_path, list_class_folders)

__all__ = [
    "DATASETS",
    "DatasetKind",
    "dataset_kind",
    "dataset_title",
    "known_sizes",
    "DatasetNotFound",
    "Split",
    "Dataset",
    "data_dir",
    "cifar10_jpeg_path",
    "load_dataset",
    "dataset_names",
    "is_streamed",
]

DEFAULT_SIDE = 224  # pixels of the square a streamed dataset's images are cropped to
CIFAR10_JPEG_ENV = "PF_CIFAR10_JPEG"  # where cifar10_jpeg is, when not beside the project
STATS_CHUNK = 4096  # images per step of the channel statistics: bounds their memory
# Published CIFAR statistics (SVP and most peer code); other datasets use their own.
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
}


class DatasetNotFound(FileNotFoundError):
    """A dataset is not where it was looked for; the message says where and how to get it."""


@dataclass(frozen=True)
class Split:
    """Images (uint8, N x C x H x W) and their int64 labels, on one device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> Split:
        """This split on ``device`` (no copy when it is already there)."""
        return Split(self.images.to(device), self.labels.to(device))

    def load(self, chunks: Iterable[torch.Tensor], augment: bool,
             generator: torch.Generator | None,
             share: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterator[torch.Tensor]:
        """The uint8 images of each chunk of indices, cropped and flipped (``pf.augment``)
        with draws from ``generator`` when ``augment``; with ``share`` (this process's
        part of a batch, ``pf.distributed.part``) only the rows it keeps, drawn as for the
        whole chunk."""
        for idx in chunks:
            images = self.images[idx]
            images = augment_batch(images, generator) if augment else images
            yield images if share is None else share(images)


@dataclass(frozen=True)
class Dataset:
    """A train/test pair with what training needs to know about it.

    ``augment`` says whether training uses random crop + horizontal flip: true for
    natural images (CIFAR, Tiny-ImageNet, image folders), false for digits (a flipped
    digit is another symbol) and the synthetic set. Its splits are ``Split``s, or for a
    streamed dataset ``pf.streaming.StreamedSplit``s.
    """

    name: str
    train: Split
    test: Split
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.train.image_shape[0]

    def to(self, device: torch.device | str) -> Dataset:
        """The same dataset with both splits on ``device``."""
        return replace(self, train=self.train.to(device), test=self.test.to(device))


def cifar10_jpeg_path() -> Path:
    """The ``cifar10_jpeg`` archive: ``$PF_CIFAR10_JPEG``, else ``shared/data/
    cifar10-jpeg.tar.gz`` beside the folder this package sits in (the project's
    ``../shared/data``), found without regard to the working folder, so sweeps and
    notebooks running in their own folders read the same file."""
    if os.environ.get(CIFAR10_JPEG_ENV):
        return Path(os.environ[CIFAR10_JPEG_ENV]).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


def data_dir() -> Path:
    """Where datasets are looked for and cached: ``$PF_DATA`` or ``~/.cache/pf/data``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pf" / "data"
    return Path(os.environ.get("PF_DATA", default)).expanduser()


def dataset_kind(name: str) -> DatasetKind | None:
    """The ``DATASETS`` entry of a configured name (``imagefolder:/x`` is ``imagefolder:``'s),
    or None for an unknown name."""
    prefix = name.split(":", 1)[0] + ":" if ":" in name else None
    kind = DATASETS.get(name) or DATASETS.get(prefix)
    if kind is None or (kind.is_prefix and len(name) == len(kind.name)):
        return None
    return kind


def dataset_title(name: str) -> str:
    """What figures call a dataset: its title, or the name as given (``imagefolder:``)."""
    kind = dataset_kind(name)
    return kind.title if kind is not None and kind.title else name


def known_sizes(name: str) -> tuple | None:
    """(train size, test size, classes, image shape) of a dataset known before it is
    loaded, else None (an image folder's)."""
    kind = dataset_kind(name)
    return None if kind is None else kind.sizes


def is_streamed(name: str) -> bool:
    """Whether the dataset ``name`` streams from its folder (``pf.streaming``)."""
    kind = dataset_kind(name)
    return kind is not None and kind.streamed


def load_dataset(name: str, root: str | Path | None = None, download: bool = True,
                 side: int = DEFAULT_SIDE) -> Dataset:
    """Load a dataset by name (``DATASETS``), decoding it only the first time.

    ``root`` overrides the data directory; ``download`` lets torchvision fetch CIFAR when
    it is missing; ``side`` is the crop of a streamed dataset. A missing dataset raises
    ``DatasetNotFound`` with a one-line message.
    """
    kind = dataset_kind(name)
    if kind is None:
        raise ValueError(f"dataset: unknown dataset {name!r}; choose one of {dataset_names()}")
    root = Path(root) if root is not None else data_dir()
    return kind.load(name, root, download, side)


def dataset_names() -> str:
    """Every name a config may give, as a message lists them."""
    return ", ".join(kind.name + ("<path>" if kind.is_prefix else "") for kind in DATASETS.values())


# ---------------------------------------------------------------------------------------
# Decoding and caching
# ---------------------------------------------------------------------------------------


def _from_cache(root: Path, key: str, build) -> Dataset:
    """Read ``root/cache/key.pt`` if present, else build the dataset and write that file.

    The build runs under ``pf.storage.exclusive_lock`` on ``root/cache/key.lock``: workers that
    start together on a fresh machine wait for the first one's build (torchvision's
    download and extraction included) and then read its cache file.
    """
    cache_file = root / "cache" / f"{key}.pt"
    if not cache_file.exists():
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(cache_file.with_suffix(".lock")):
            if not cache_file.exists():  # else another worker built it while this one waited
                dataset = build()
                save_atomically(_pack(dataset), cache_file)
                return dataset
    return Dataset(**_unpack(torch.load(cache_file, weights_only=True)))


def _pack(dataset: Dataset) -> dict:
    fields = dict(vars(dataset))
    for split in ("train", "test"):
        fields[split] = (fields[split].images, fields[split].labels)
    return fields


def _unpack(fields: dict) -> dict:
    fields = dict(fields)
    for split in ("train", "test"):
        fields[split] = Split(*fields[split])
    for key in ("classes", "mean", "std"):
        fields[key] = tuple(fields[key])
    return fields


def _channel_stats(images: torch.Tensor, chunk_size: int = STATS_CHUNK
                   ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (n - 1 in the denominator) of uint8 images on the 0..1
    scale, over all pixels.

    Counts each channel's 256 pixel values ``chunk_size`` images at a time and derives
    the moments from the counts with exact integer sums, so the extra memory is one
    chunk's channel (4,096 x 64 x 64 bytes for Tiny-ImageNet) instead of a float64 copy
    of the whole set (16x its bytes, 18 GiB for Tiny-ImageNet), and the result does not
    depend on ``chunk_size``; it agrees with a float64 pass over all pixels to rounding.
    """
    channels = images.shape[1]
    counts = torch.zeros(channels, 256, dtype=torch.int64)
    for chunk in images.split(chunk_size):
        for channel in range(channels):
            counts[channel] += torch.bincount(chunk[:, channel].reshape(-1), minlength=256)
    means, stds = [], []
    for histogram in counts.tolist():  # Python ints: n * sum of squares overflows int64
        n = sum(histogram)
        total = sum(value * count for value, count in enumerate(histogram))
        squares = sum(value * value * count for value, count in enumerate(histogram))
        means.append(total / n / 255)
        stds.append(((n * squares - total * total) / (n * (n - 1))) ** 0.5 / 255)
    return tuple(means), tuple(stds)


def _make_dataset(name, train, test, classes, augment, stats=None) -> Dataset:
    mean, std = stats or _channel_stats(train.images)
    return Dataset(name, train, test, tuple(classes), mean, std, augment)


def _digits() -> Dataset:
    """scikit-learn's 1,797 handwritten digits, 8x8, values 0..16 scaled to 0..255.

    The set has no official split; ours is a stratified 80/20 split with a fixed seed
    (0): 1,437 train, 360 test. Our choice, fixed so that every run sees the same split.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    train_x, test_x, train_y, test_y = train_test_split(
        images, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )

    def to_split(x, y):
        return Split(torch.from_numpy(x), torch.from_numpy(y).long())

    classes = [str(c) for c in digits.target_names]
    return _make_dataset("digits", to_split(train_x, train_y), to_split(test_x, test_y),
                         classes, augment=False)


def _cifar(name: str, root: Path, download: bool) -> Dataset:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    folder = root / name
    archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    try:
        train, test = (cls(str(folder), train=t, download=download) for t in (True, False))
    except Exception as error:  # torchvision raises RuntimeError or URLError/OSError
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DatasetNotFound(
            f"{name}: not found in {folder} and not downloadable ({reason}); put {archive} "
            f"there, or point PF_DATA at a folder holding {name}/"
        ) from None

    def to_split(d):
        return Split(
            torch.from_numpy(d.data).permute(0, 3, 1, 2).contiguous(),
            torch.tensor(d.targets, dtype=torch.long),
        )

    return _make_dataset(name, to_split(train), to_split(test), train.classes,
                         augment=True, stats=CIFAR_STATS[name])


def _decode(blobs: list[bytes], where: str) -> torch.Tensor:
    """Decode encoded images to one uint8 (N, 3, H, W) tensor; all must share one size."""
    from PIL import Image

    arrays = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs]
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"{where}: images differ in size ({sorted(sizes)[:2]}); resize them first")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _read_tree(path: Path) -> dict[str, bytes]:
    """Every image file below a folder or inside a tar archive, keyed by relative path."""
    if path.is_dir():
        return {
            str(f.relative_to(path)): f.read_bytes()
            for f in sorted(path.rglob("*"))
            if f.suffix.lower() in IMAGE_SUFFIXES
        }
    with tarfile.open(path) as archive:
        return {
            m.name: archive.extractfile(m).read()
            for m in archive.getmembers()
            if m.isfile() and Path(m.name).suffix.lower() in IMAGE_SUFFIXES
        }


def _imagefolder(path: Path, name: str) -> Dataset:
    """``{train,test}/<class>/<file>`` below ``path`` (an optional top folder is allowed).

    Classes are the sorted folder names of train/, as torchvision's ImageFolder has them.
    """
    files = _read_tree(path)
    by_split: dict[str, dict[str, list[bytes]]] = {"train": {}, "test": {}}
    for relative, blob in sorted(files.items()):
        parts = Path(relative).parts
        if len(parts) >= 3 and parts[-3] in by_split:
            by_split[parts[-3]].setdefault(parts[-2], []).append(blob)
    classes = sorted(by_split["train"])
    if not classes or not by_split["test"]:
        raise DatasetNotFound(
            f"imagefolder: no train/<class>/<image> and test/<class>/<image> files in {path}"
        )

    def split(which: str) -> Split:
        blobs, labels = [], []
        for label, cls in enumerate(classes):
            blobs += by_split[which].get(cls, [])
            labels += [label] * len(by_split[which].get(cls, []))
        return Split(_decode(blobs, f"imagefolder {path}"), torch.tensor(labels))

    return _make_dataset(name, split("train"), split("test"), classes, augment=True)


def _streamed(name: str, folder: Path, side: int) -> Dataset:
    """The ``train/<class>/<image>`` and ``test/<class>/<image>`` (or ``val/``) tree below
    ``folder`` as ``StreamedSplit``s of ``side``-pixel squares: listed, not read. Classes are
    the sorted folder names of ``train/``, as torchvision's ImageFolder has them."""
    if not folder.is_dir():
        raise DatasetNotFound(f"{name}: no folder at {folder}; give one holding "
                              "train/<class>/<image> and val/<class>/<image> (or test/)")
    train = folder / "train"
    test = next((folder / where for where in TEST_FOLDERS if (folder / where).is_dir()), None)
    classes = tuple(sorted(p.name for p in train.iterdir() if p.is_dir())) \
        if train.is_dir() else ()
    if not classes or test is None:
        raise DatasetNotFound(f"{name}: no train/<class>/<image> and test/<class>/<image> "
                              f"(or val/) folders in {folder}")
    splits = [StreamedSplit(where, *list_class_folders(where, classes), side)
              for where in (train, test)]
    if not all(len(split) for split in splits):
        raise DatasetNotFound(f"{name}: no images in the class folders of {train} or {test}")
    return Dataset(name, *splits, classes, *IMAGENET_STATS, augment=True)


def _tinyimagenet(folder: Path) -> Dataset:
    """Tiny-ImageNet-200: train/<wnid>/images/*.JPEG; the labelled val split is the test set."""
    annotations = folder / "val" / "val_annotations.txt"
    if not (folder / "wnids.txt").exists() or not annotations.exists():
        raise DatasetNotFound(
            f"tinyimagenet: no tiny-imagenet-200 (wnids.txt, val/val_annotations.txt) in "
            f"{folder}; unzip tiny-imagenet-200.zip into {folder.parent}"
        )
    classes = sorted(folder.joinpath("wnids.txt").read_text().split())
    index = {wnid: i for i, wnid in enumerate(classes)}
    train_files = sorted((folder / "train").glob("*/images/*.JPEG"))
    val_labels = dict(line.split("\t")[:2] for line in annotations.read_text().splitlines())
    val_files = sorted(folder.joinpath("val", "images", f) for f in val_labels)

    def split(files, labels) -> Split:
        blobs = [f.read_bytes() for f in files]
        return Split(_decode(blobs, f"tinyimagenet {folder}"), torch.tensor(labels))

    train = split(train_files, [index[f.parent.parent.name] for f in train_files])
    test = split(val_files, [index[val_labels[f.name]] for f in val_files])
    return _make_dataset("tinyimagenet", train, test, classes, augment=True)


def _synthetic(num_classes: int = 10, train_size: int = 512, test_size: int = 256,
               size: int = 16, seed: int = 0) -> Dataset:
    """Smooth random class templates plus pixel noise: learnable in a few epochs, for tests."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, 3, 4, 4, generator=g) * 255
    templates = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear")

    def split(n: int) -> Split:
        labels = torch.randint(num_classes, (n,), generator=g)
        noise = torch.randn(n, 3, size, size, generator=g) * 48
        images = (templates[labels] + noise).clamp(0, 255).round().to(torch.uint8)
        return Split(images, labels)

    classes = [f"class{c}" for c in range(num_classes)]
    return _make_dataset("synthetic", split(train_size), split(test_size), classes, augment=False)


# ---------------------------------------------------------------------------------------
# The registry: every dataset pf knows, by the name a config gives
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetKind:
    """How a dataset is named, shown, sized and loaded.

    ``name`` is what a config gives (ending in ":" for a path-taking kind, e.g.
    ``imagefolder:``); ``title`` what figures call it ("" for the name as given); ``sizes``
    (train, test, classes, image shape) when known before loading; ``load(name, root,
    download, side)`` builds it; ``streamed`` kinds read their folders batch by batch.
    """

    name: str
    title: str
    load: Callable[[str, Path, bool, int], Dataset]
    sizes: tuple | None = None
    streamed: bool = False

    @property
    def is_prefix(self) -> bool:
        return self.name.endswith(":")


def _cached(build: Callable[[str, Path, bool], Dataset]):
    """A loader that builds once per data root and then reads ``_from_cache``'s file."""
    return lambda name, root, download, side: _from_cache(
        root, name, lambda: build(name, root, download))


def _load_cifar10_jpeg(name: str, root: Path, download: bool, side: int) -> Dataset:
    path = cifar10_jpeg_path()
    if not path.exists():
        raise DatasetNotFound(
            f"cifar10_jpeg: no archive at {path}; it ships as shared/data/cifar10-jpeg.tar.gz "
            f"beside the project: set {CIFAR10_JPEG_ENV} to its path")
    return load_dataset(f"imagefolder:{path}", root)


def _load_imagefolder(name: str, root: Path, download: bool, side: int) -> Dataset:
    path = Path(name.split(":", 1)[1]).expanduser().resolve()
    if not path.exists():
        raise DatasetNotFound(f"imagefolder: nothing at {path}; give a folder (or .tar/.tar.gz) "
                              "holding train/<class>/* and test/<class>/*")
    stamp = f"{path}:{path.stat().st_mtime_ns}:{path.stat().st_size}"
    key = "imagefolder-" + hashlib.sha256(stamp.encode()).hexdigest()[:16]
    return _from_cache(root, key, lambda: _imagefolder(path, name))


def _load_streamed(name: str, root: Path, download: bool, side: int) -> Dataset:
    folder = (imagenet_path(root) if name == "imagenet"
              else Path(name[len(STREAMED_PREFIX):]).expanduser().resolve())
    return _streamed(name, folder, side)


STREAMED_PREFIX = "stream:"  # a folder read batch by batch, never held in memory
CIFAR_SHAPE = (3, 32, 32)
DATASETS: dict[str, DatasetKind] = {kind.name: kind for kind in (
    # pf.data's stratified 80/20 split of scikit-learn's 1,797
    DatasetKind("digits", "8x8 digits (scikit-learn)", _cached(lambda *_: _digits()),
                (1437, 360, 10, (1, 8, 8))),
    DatasetKind("cifar10", "CIFAR-10", _cached(_cifar), (50000, 10000, 10, CIFAR_SHAPE)),
    DatasetKind("cifar100", "CIFAR-100", _cached(_cifar), (50000, 10000, 100, CIFAR_SHAPE)),
    DatasetKind("cifar10_jpeg", "CIFAR-10 (JPEG q75)", _load_cifar10_jpeg,
                (50000, 10000, 10, CIFAR_SHAPE)),
    DatasetKind("tinyimagenet", "Tiny ImageNet",
                _cached(lambda name, root, _: _tinyimagenet(root / "tiny-imagenet-200")),
                (100000, 10000, 200, (3, 64, 64))),
    DatasetKind("imagefolder:", "", _load_imagefolder),
    DatasetKind("synthetic", "", lambda *_: _synthetic(), (512, 256, 10, (3, 16, 16))),
    # ILSVRC-2012, its val split as the test set; the shape at the default crop
    DatasetKind("imagenet", "ImageNet-1K", _load_streamed,
                (1281167, 50000, 1000, (3, DEFAULT_SIDE, DEFAULT_SIDE)), streamed=True),
    DatasetKind(STREAMED_PREFIX, "", _load_streamed, streamed=True),
)}
