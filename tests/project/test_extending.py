"""docs/extending.md's recipes, followed with toy entries registered here (not in pf)."""

import json

import torch
from torch import nn

from pf.analysis.figures import FIGURES, FigureKind, make_figures
from pf.data import DATASETS, Dataset, DatasetKind, Split, load_dataset
from pf.experiments.config import make_config
from pf.experiments.methods import METHODS, ActiveLearningMethod
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


class DistilledSvp(ActiveLearningMethod):
    """SVP whose target also learns from the trained proxy (distillation)."""

    name, title = "svp_kd", "SVP + distillation"

    def _name(self, settings: dict) -> str:
        return f"SVP+KD {settings['proxy_arch']}"

    def needs_selector(self, config, last: bool) -> bool:
        return True  # the last round's target distils from a proxy too

    def distils(self, config) -> bool:
        return True


def test_a_method_variant_is_a_subclass_and_one_registry_entry(monkeypatch, tmp_path):
    monkeypatch.setitem(METHODS, "svp_kd", DistilledSvp())
    config = make_config("smoke", {"method": "svp_kd", "proxy_arch": "resnet8"})
    record = run_experiment(config, tmp_path, progress=False)
    assert [r.target.kd for r in record.rounds] == [True, True]
    assert all(r.macs["distillation"] > 0 for r in record.rounds)
    assert record.rounds[0].label == "SVP+KD resnet8"
    # the planner read the same plan: what it plans is what the run recorded
    planned = planned_cost(config)["macs"]["distillation"]
    assert planned == sum(r.macs["distillation"] for r in record.rounds)


def labels_per_round(rows, out_dir):
    """A toy table: the labeled counts of every run's rounds."""
    path = out_dir / "labels_per_round.csv"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows[["label", "seed", "labeled"]].to_csv(path, index=False)
    return [path]


def test_a_figure_is_one_function_and_one_registry_entry(monkeypatch, tmp_path):
    monkeypatch.setitem(FIGURES, "labels_per_round",
                        FigureKind("labels_per_round", "learning", labels_per_round))
    run_experiment(make_config("smoke", {"method": "baseline"}), tmp_path / "runs" / "one",
                   progress=False)
    made = make_figures(tmp_path / "runs", tmp_path / "figures", only="labels_per_round")
    [path] = made["labels_per_round"]
    assert path.read_text().splitlines()[1:] == ["AL baseline,0,64", "AL baseline,0,128"]


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
