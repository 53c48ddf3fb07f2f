"""Datasets: loading, splits, the registry of dataset kinds, channel statistics, the
crop-and-flip augmentation, and real CIFAR-10 (the JPEG copy beside the project) when present."""

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import PROJECT, SHARED_CIFAR10
from pf.augment import CROP_PADDING, augment_batch
from pf.batches import Batches
from pf.data import (DATASETS, DatasetNotFound, _channel_stats, cifar10_jpeg_path, dataset_kind,
                     dataset_names, dataset_title, load_dataset)
from pf.experiments.settings import dataset_rule
from pf.models import build_model
from pf.train import Schedule, fit


def test_digits_are_real_uint8_images_with_a_fixed_split():
    digits = load_dataset("digits")
    assert digits.train.images.shape == (1437, 1, 8, 8)
    assert digits.test.images.shape == (360, 1, 8, 8)
    assert digits.train.images.dtype == torch.uint8 and digits.train.labels.dtype == torch.int64
    assert digits.train.images.max() == 255 and digits.num_classes == 10
    assert not digits.augment
    assert torch.bincount(digits.test.labels).min() >= 35  # stratified


def test_decoded_once_then_read_from_the_cache(monkeypatch, tmp_path):
    first = load_dataset("digits", root=tmp_path)
    assert (tmp_path / "cache" / "digits.pt").exists()
    monkeypatch.setattr("pf.data._digits", lambda: pytest.fail("decoded again"))
    again = load_dataset("digits", root=tmp_path)
    assert torch.equal(first.train.images, again.train.images)
    assert again.mean == first.mean and again.classes == first.classes


# A worker that counts its builds in MARKER, then loads digits once GO exists. Its build
# sleeps so that a second worker, started with it, reaches the cache while it builds.
CONCURRENT_WORKER = """
import sys, time
from pathlib import Path
import pf.data

root, marker, go = map(Path, sys.argv[1:4])
build = pf.data._digits
def counted_build():
    with marker.open("a") as log:
        log.write("built\\n")
    time.sleep(1)
    return build()
pf.data._digits = counted_build
Path(f"{go}.{sys.argv[4]}").touch()
while not go.exists():
    time.sleep(0.01)
print(int(pf.data.load_dataset("digits", root=root).train.images.sum()))
"""


@pytest.mark.slow  # several processes
def test_workers_starting_together_prepare_the_dataset_once(tmp_path):
    marker, go = tmp_path / "builds.log", tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WORKER, str(tmp_path / "data"),
                                 str(marker), str(go), str(k)], stdout=subprocess.PIPE, text=True)
               for k in range(2)]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.{k}").exists() for k in range(2)) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both workers are imported and waiting: release them together
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0]
    assert marker.read_text() == "built\n"  # the second worker read the first one's cache
    assert outputs[0] == outputs[1] and int(outputs[0]) > 0


def test_the_cache_temp_file_is_not_named_by_the_process_id_alone(monkeypatch, tmp_path):
    # Another node of a shared filesystem, with the same process id, writing its cache.
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    cache = tmp_path / "cache"
    cache.mkdir()
    foreign = cache / "digits.tmp4242"
    foreign.write_bytes(b"another node's half-written cache")
    dataset = load_dataset("digits", root=tmp_path)
    assert foreign.read_bytes() == b"another node's half-written cache"
    assert sorted(p.name for p in cache.iterdir()) == ["digits.lock", "digits.pt", foreign.name]
    assert torch.equal(load_dataset("digits", root=tmp_path).train.images, dataset.train.images)


def test_channel_stats_in_chunks_equal_one_float64_pass_over_all_pixels(monkeypatch):
    images = torch.randint(0, 256, (20, 3, 9, 11), dtype=torch.uint8)
    images[:5] = 255  # a skewed distribution, not a uniform one
    pixels = images.transpose(0, 1).reshape(3, -1).double() / 255
    expected = pixels.mean(1).tolist() + pixels.std(1).tolist()
    seen = []
    bincount = torch.bincount

    def recording_bincount(values, *args, **kwargs):
        seen.append(len(values))
        return bincount(values, *args, **kwargs)

    monkeypatch.setattr(torch, "bincount", recording_bincount)
    for chunk_size in (1, 7, 20):
        seen.clear()
        mean, std = _channel_stats(images, chunk_size=chunk_size)
        assert list(mean) + list(std) == pytest.approx(expected, abs=1e-12)
        assert max(seen) == min(chunk_size, 20) * 9 * 11  # one chunk's channel at a time


def _write_image_tree(root: Path, size=(8, 8), per_class=3):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "airplane"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.mark.parametrize("as_archive", [False, True])
def test_imagefolder_from_a_folder_or_an_archive(tmp_path, as_archive):
    tree = tmp_path / "tree"
    _write_image_tree(tree / "top")
    source = tree / "top"
    if as_archive:
        source = tmp_path / "tree.tar.gz"
        with tarfile.open(source, "w:gz") as archive:
            archive.add(tree / "top", arcname="cifar-like")
    dataset = load_dataset(f"imagefolder:{source}", root=tmp_path / "data")
    assert dataset.classes == ("airplane", "cat")  # sorted, as ImageFolder
    assert dataset.train.images.shape == (6, 3, 8, 8) and dataset.augment
    assert dataset.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    decoded = np.array(Image.open(tree / "top" / "train" / "cat" / "0.png"))
    assert torch.equal(dataset.train.images[3], torch.from_numpy(decoded).permute(2, 0, 1))
    assert len(dataset.mean) == 3 and all(0 < s for s in dataset.std)


def test_imagefolder_with_mixed_sizes_is_refused(tmp_path):
    _write_image_tree(tmp_path / "tree")
    Image.new("RGB", (9, 9)).save(tmp_path / "tree" / "train" / "cat" / "odd.png")
    with pytest.raises(ValueError, match="differ in size"):
        load_dataset(f"imagefolder:{tmp_path / 'tree'}", root=tmp_path / "data")


def test_tinyimagenet_layout_with_val_annotations(tmp_path):
    folder = tmp_path / "tiny-imagenet-200"
    wnids = ["n01", "n02"]
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids))
    lines = []
    for k, wnid in enumerate(wnids):
        (folder / "train" / wnid / "images").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (64, 64), (k * 100, 0, i)).save(
                folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
        Image.new("RGB", (64, 64), (k * 100, 0, 0)).save(
            folder / "val" / "images" / f"val_{k}.JPEG")
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines))
    dataset = load_dataset("tinyimagenet", root=tmp_path)
    assert dataset.train.images.shape == (4, 3, 64, 64)
    assert dataset.test.labels.tolist() == [0, 1]
    assert dataset.classes == tuple(wnids)


@pytest.mark.parametrize("name, expected", [
    ("tinyimagenet", "tinyimagenet: no tiny-imagenet-200"),
    ("imagefolder:/no/such/place", "imagefolder: nothing at /no/such/place"),
])
def test_missing_dataset_is_one_clear_line(tmp_path, name, expected):
    with pytest.raises(DatasetNotFound) as error:
        load_dataset(name, root=tmp_path)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)


def test_cifar10_jpeg_is_the_archive_beside_the_project_or_where_the_variable_says(
        tmp_path, monkeypatch):
    monkeypatch.delenv("PF_CIFAR10_JPEG", raising=False)
    assert cifar10_jpeg_path() == PROJECT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
    monkeypatch.setenv("PF_CIFAR10_JPEG", str(tmp_path / "elsewhere.tar.gz"))
    assert cifar10_jpeg_path() == tmp_path / "elsewhere.tar.gz"
    with pytest.raises(DatasetNotFound) as error:
        load_dataset("cifar10_jpeg", root=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "elsewhere.tar.gz") in message and "PF_CIFAR10_JPEG" in message
    assert "\n" not in message
    _write_image_tree(tmp_path / "tree")
    monkeypatch.setenv("PF_CIFAR10_JPEG", str(tmp_path / "tree"))
    dataset = load_dataset("cifar10_jpeg", root=tmp_path / "data")
    assert dataset.classes == ("airplane", "cat") and dataset.augment


def test_missing_cifar_without_download_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFound) as error:
        load_dataset("cifar10", root=tmp_path, download=False)
    message = str(error.value)
    assert str(tmp_path / "cifar10") in message and "cifar-10-python.tar.gz" in message
    assert "\n" not in message


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="dataset: unknown dataset 'mnist'"):
        load_dataset("mnist")


def _all_crops_and_flips(image: torch.Tensor) -> list[torch.Tensor]:
    h, w = image.shape[1:]
    padded = torch.nn.functional.pad(image, [CROP_PADDING] * 4)
    crops = [padded[:, dy:dy + h, dx:dx + w]
             for dy in range(2 * CROP_PADDING + 1) for dx in range(2 * CROP_PADDING + 1)]
    return crops + [c.flip(-1) for c in crops]


def test_augmentation_is_a_padded_crop_and_flip_that_really_happens():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.uint8).reshape(2, 3, 6, 6) + 1
    batch = images.repeat(100, 1, 1, 1)
    out = augment_batch(batch, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    kinds = set()
    for source, result in zip(batch, out):
        candidates = _all_crops_and_flips(source)
        matches = [k for k, c in enumerate(candidates) if torch.equal(c, result)]
        assert matches, "output is not a crop/flip of the padded input"
        kinds.add(matches[0])
    flipped = {k for k in kinds if k >= 81}
    assert len(flipped) > 10 and len(kinds - flipped) > 10  # both flips and many shifts
    assert (out == 0).any()  # zero padding moved into view


def test_batches_cover_a_subset_once_per_epoch_and_normalise(synthetic):
    subset = torch.tensor([5, 9, 100, 3, 42, 7, 8])
    g = torch.Generator().manual_seed(0)
    batches = Batches(synthetic.train, subset, 3, synthetic, shuffle=True, generator=g)
    assert len(batches) == 3
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == sorted(synthetic.train.labels[subset].tolist())
    x, _ = next(iter(Batches(synthetic.train, subset, 7, synthetic)))
    mean = torch.tensor(synthetic.mean).view(1, 3, 1, 1)
    std = torch.tensor(synthetic.std).view(1, 3, 1, 1)
    expected = (synthetic.train.images[subset].float() / 255 - mean) / std
    torch.testing.assert_close(x, expected)


def test_shuffles_repeat_with_the_seed(synthetic):
    def order(seed):
        g = torch.Generator().manual_seed(seed)
        b = Batches(synthetic.train, None, 64, synthetic, shuffle=True, generator=g)
        return torch.cat([x.flatten(1)[:, 0] for x, _ in b])
    assert torch.equal(order(1), order(1)) and not torch.equal(order(1), order(2))


@pytest.mark.parametrize("kind", list(DATASETS.values()), ids=list(DATASETS))
def test_every_registered_dataset_is_a_config_value_with_a_title(kind):
    name = f"{kind.name}/data/x" if kind.is_prefix else kind.name
    assert dataset_kind(name) is kind and dataset_rule(name) is None
    assert dataset_title(name) == (kind.title or name)
    assert (kind.name + "<path>" if kind.is_prefix else kind.name) in dataset_names().split(", ")
    if kind.is_prefix:  # the bare prefix names no folder
        assert dataset_kind(kind.name) is None and dataset_rule(kind.name) is not None


@pytest.mark.slow  # trains on real images
@pytest.mark.skipif(not SHARED_CIFAR10.exists(), reason=f"no real CIFAR-10 at {SHARED_CIFAR10}")
def test_trains_on_real_cifar10_above_chance():
    dataset = load_dataset("cifar10_jpeg")
    assert dataset.train.images.shape == (50000, 3, 32, 32)
    assert dataset.test.images.shape == (10000, 3, 32, 32)
    assert torch.bincount(dataset.train.labels).tolist() == [5000] * 10
    assert dataset.classes[:3] == ("airplane", "automobile", "bird") and dataset.augment
    torch.manual_seed(0)
    model = build_model("resnet8", dataset.num_classes, dataset.in_channels)
    labeled = torch.randperm(50000, generator=torch.Generator().manual_seed(0))[:2000]
    result = fit(model, dataset, labeled, Schedule(((2, 0.05),), batch_size=64), device="cpu")
    assert result.test_accuracy > 0.2  # ten balanced classes: chance is 0.1
