"""docs/extending.md's recipes, followed with toy entries registered here (not in pf)."""

import json

import torch
from torch import nn

from pf.data import DATASETS, Dataset, DatasetKind, Split, load_dataset
from pf.experiments.config import make_config
from pf.experiments.cost import planned_cost
from pf.experiments.run import run_experiment
from pf.fuse import fuse
from pf.models import MODELS, build_model
from pf.prune import prune_at_init
from pf.select import STRATEGIES, Strategy


def highest_index(pool_size: int, count: int) -> torch.Tensor:
    """The last ``count`` pool positions: a toy rule that reads nothing."""
    return torch.arange(pool_size - count, pool_size)


def test_a_selection_strategy_is_one_function_and_one_registry_entry(monkeypatch, tmp_path):
    monkeypatch.setitem(STRATEGIES, "highest_index", Strategy(
        "highest_index", highest_index, inputs="none", labeled_aware=False,
        needs_generator=False, label="highest index", color="tab:gray"))
    config = make_config("smoke", {"metric": "highest_index", "method": "baseline"})
    run_experiment(config, tmp_path, progress=False)
    added = json.loads((tmp_path / "selected.json").read_text())["added"]
    unlabeled = sorted(set(range(512)) - set(added[0]))
    assert sorted(added[1]) == unlabeled[-64:]  # the pool's last 64 positions


def load_stripes(name, root, download, side) -> Dataset:
    """Two classes of 8x8 images: horizontal or vertical stripes, under noise."""
    generator = torch.Generator().manual_seed(0)

    def split(count):
        labels = torch.arange(count) % 2
        stripes = (torch.arange(8) % 2 * 200).view(1, 8, 1).expand(count, 8, 8).clone()
        stripes[labels == 1] = stripes[labels == 1].transpose(1, 2)
        noise = torch.randint(0, 50, (count, 3, 8, 8), generator=generator)
        return Split((stripes[:, None] + noise).clamp(0, 255).to(torch.uint8), labels)

    return Dataset(name, split(96), split(32), ("horizontal", "vertical"), (0.4,) * 3,
                   (0.4,) * 3, augment=False)


def test_a_dataset_is_one_registry_entry(monkeypatch, tmp_path):
    monkeypatch.setitem(DATASETS, "stripes", DatasetKind("stripes", "Stripes (toy)",
                                                         load_stripes, (96, 32, 2, (3, 8, 8))))
    config = make_config("smoke", {"dataset": "stripes", "budgets": [16, 32]})
    assert planned_cost(config)["training_images"] > 0  # planned before it is loaded
    record = run_experiment(config, tmp_path, progress=False)
    assert record.dataset.train_size == 96 and record.dataset.image_shape == [3, 8, 8]
    assert len(load_dataset("stripes").classes) == 2


class TinyCNN(nn.Module):
    """Two convolutions and a classifier, under pf's contract (features, dropout, fc)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(32, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


def test_an_architecture_is_one_registry_entry_that_prunes_and_fuses_exactly(monkeypatch,
                                                                            tmp_path):
    monkeypatch.setitem(MODELS, "tiny_cnn", TinyCNN)
    dense = build_model("tiny_cnn")
    pruned, channel_map = prune_at_init(dense, 0.5, input_shape=(3, 16, 16))
    assert pruned.fc.in_features == 16
    fused = fuse(dense, pruned, channel_map, rest="zero").eval()
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(fused(x), pruned.eval()(x))
    record = run_experiment(make_config("smoke", {"arch": "tiny_cnn", "method": "prunefuse"}),
                            tmp_path, progress=False)
    assert record.networks["selector"].forward_macs < record.networks["target"].forward_macs
