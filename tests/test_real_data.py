"""Real CIFAR-10 (the JPEG copy in ../shared/data), when this checkout sits beside it."""

import pytest
import torch

from pf.data import load_dataset
from pf.models import build_model
from pf.train import Schedule, fit

from conftest import SHARED_CIFAR10

pytestmark = [pytest.mark.slow,  # trains on real images
              pytest.mark.skipif(not SHARED_CIFAR10.exists(),
                                 reason=f"no real CIFAR-10 at {SHARED_CIFAR10}")]


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
