"""Streamed datasets (pf.streaming): a generated JPEG folder read batch by batch, its crops,
its determinism, its bounded memory, and the active-learning loop running on it."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pf.augment import CROP_RATIO, CROP_SCALE, center_crop_box, crop_box, resized_crop_draws
from pf.batches import Batches
from pf.data import DatasetNotFound, is_streamed, load_dataset
from pf.experiments.config import ConfigError, make_config
from pf.experiments.run import run_experiment
from pf.flops import forward_macs
from pf.models import build_model
from pf.streaming import IMAGENET_ENV, StreamedSplit

CLASSES = ("ant", "bee", "cat", "dog")


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    """ImageNet's layout in small: train/<class>/*.JPEG and val/<class>/*.JPEG, sizes mixed,
    each class its own colour (learnable) under noise."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for split, count in (("train", 48), ("val", 12)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                height, width = rng.integers(20, 48, 2)
                colour = np.array([60 * label, 255 - 60 * label, 40 + 50 * (label % 2)])
                pixels = colour + rng.normal(0, 25, (height, width, 3))
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
                    folder / f"{name}_{i:04d}.JPEG", quality=90)
    return root


def test_a_streamed_folder_is_listed_not_read(jpeg_folder):
    dataset = load_dataset(f"stream:{jpeg_folder}", side=16)
    assert is_streamed(dataset.name) and isinstance(dataset.train, StreamedSplit)
    assert dataset.classes == CLASSES
    assert (len(dataset.train), len(dataset.test)) == (4 * 48, 4 * 12)
    assert dataset.train.labels.tolist() == [c for c in range(4) for _ in range(48)]
    assert dataset.train.image_shape == (3, 16, 16) and dataset.in_channels == 3
    assert dataset.train.files.dtype.kind == "S"  # bytes: 1.28 M names stay small


def test_evaluation_batches_are_the_centre_crop_of_every_image(jpeg_folder):
    dataset = load_dataset(f"stream:{jpeg_folder}", side=16)
    images = next(dataset.test.load([torch.arange(8)], False, None))
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 16, 16)
    for index in range(8):
        with Image.open(dataset.test.root / dataset.test.files[index].decode()) as image:
            expected = image.convert("RGB").resize((16, 16), Image.BILINEAR,
                                                   box=center_crop_box(*image.size))
        assert torch.equal(images[index].permute(1, 2, 0), torch.from_numpy(np.array(expected)))


def test_the_centre_box_keeps_the_middle_seven_eighths_of_the_short_side():
    assert center_crop_box(40, 32) == pytest.approx((6, 2, 34, 30))


@pytest.mark.parametrize("size", [(64, 48), (48, 64), (30, 200)])
def test_random_resized_boxes_fit_the_image_and_follow_the_drawn_area_and_ratio(size):
    width, height = size
    draws = resized_crop_draws(500, torch.Generator().manual_seed(0)).tolist()
    flips = 0
    for draw in draws:
        (left, top, right, bottom), flip = crop_box(draw, width, height)
        flips += flip
        assert 0 <= left < right <= width + 1e-9 and 0 <= top < bottom <= height + 1e-9
        box_width, box_height = right - left, bottom - top
        area = width * height * (CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * draw[0])
        if box_width < width and box_height < height:  # not shrunk: the draw's own box
            assert box_width * box_height == pytest.approx(area)
            assert CROP_RATIO[0] - 1e-9 <= box_width / box_height <= CROP_RATIO[1] + 1e-9
        else:  # a too-long side is cut to the image, the other side keeps its length
            assert box_width * box_height <= area * (1 + 1e-9)
    assert 200 < flips < 300


def test_training_batches_depend_on_the_seed_not_on_the_decoding_threads(jpeg_folder,
                                                                        monkeypatch):
    dataset = load_dataset(f"stream:{jpeg_folder}", side=16)

    def epoch(seed, threads):
        monkeypatch.setattr("pf.streaming.decode_threads", lambda: threads)
        batches = Batches(dataset.train, None, 32, dataset, shuffle=True, augment=True,
                          generator=torch.Generator().manual_seed(seed))
        return [(x.clone(), y.clone()) for x, y in batches]

    first, again, other = epoch(0, 1), epoch(0, 4), epoch(1, 4)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], other[0][0])
    plain = [x for x, _ in Batches(dataset.train, None, 32, dataset)]
    assert not torch.equal(first[0][0], plain[0])  # augmented: not the centre crops


def test_at_most_two_batches_are_decoded_at_a_time(jpeg_folder, monkeypatch):
    """The host memory bound: while the loop holds batch k, only batch k + 1 is decoding."""
    dataset = load_dataset(f"stream:{jpeg_folder}", side=16)
    decoded = []
    plain_decode = StreamedSplit._decode
    monkeypatch.setattr(StreamedSplit, "_decode",
                        lambda self, path, draw: decoded.append(path) or plain_decode(self, path,
                                                                                      draw))
    batch = 16
    chunks = torch.arange(len(dataset.train)).split(batch)
    for k, images in enumerate(dataset.train.load(chunks, True, torch.Generator())):
        assert len(images) == batch
        assert len(decoded) <= (k + 2) * batch
    assert len(decoded) == len(dataset.train)


def test_the_active_learning_loop_runs_on_a_streamed_folder(jpeg_folder, tmp_path):
    config = make_config("smoke", {"dataset": f"stream:{jpeg_folder}", "image_size": 16,
                                   "method": "prunefuse", "budgets": [32, 64]})
    run_experiment(config, tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["dataset"]["image_shape"] == [3, 16, 16]
    assert record["dataset"]["train_size"] == 4 * 48
    assert [r["labeled"] for r in record["rounds"]] == [32, 64]
    # Four colours under noise: a net that learned nothing is at 25 %.
    assert record["rounds"][-1]["target"]["test_accuracy"] > 0.5
    added = json.loads((tmp_path / "selected.json").read_text())["added"]
    assert len({i for round_added in added for i in round_added}) == 64


def test_imagenet_is_looked_for_where_the_variable_says(jpeg_folder, monkeypatch, tmp_path):
    monkeypatch.setenv(IMAGENET_ENV, str(jpeg_folder))
    assert len(load_dataset("imagenet", tmp_path, side=16).train) == 4 * 48
    monkeypatch.delenv(IMAGENET_ENV)
    with pytest.raises(DatasetNotFound, match="imagenet: no folder at .*imagenet") as error:
        load_dataset("imagenet", tmp_path)
    assert "\n" not in str(error.value)


def test_a_folder_without_a_held_out_split_is_one_clear_line(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetNotFound, match="no train/<class>/<image> and test/"):
        load_dataset(f"stream:{tmp_path}")


def test_the_crop_side_is_checked_and_plans_the_cost():
    with pytest.raises(ConfigError, match="image_size"):
        make_config("smoke", {"dataset": "imagenet", "image_size": 4})
    from pf.experiments.cost import planned_cost

    for side in (112, 224):
        config = make_config("smoke", {"dataset": "imagenet", "image_size": side,
                                       "arch": "resnet50"})
        network = build_model("resnet50", 1000, 3)
        assert planned_cost(config)["forward_macs"]["target"] == forward_macs(network,
                                                                             (3, side, side))


def test_a_process_decodes_only_its_part_with_the_whole_batch_s_draws(jpeg_folder, monkeypatch):
    """Under torchrun (pf.distributed) each process reads its part of every batch, cropped
    as one process would crop it."""
    from pf.distributed import part

    dataset = load_dataset(f"stream:{jpeg_folder}", side=16)
    chunk = [torch.arange(10, 19)]
    whole = next(dataset.train.load(chunk, True, torch.Generator().manual_seed(5)))
    monkeypatch.setattr("pf.distributed.world_size", lambda: 2)
    monkeypatch.setattr("pf.distributed.rank", lambda: 1)
    mine = next(dataset.train.load(chunk, True, torch.Generator().manual_seed(5), part))
    assert torch.equal(mine, whole[5:])  # 9 = 5 + 4: the second process's four
