"""Reading runs back: collect, summarize and mean_std on a synthetic results tree.

``fake_metrics`` builds a metrics.json dict with the schema ``pf.experiment`` writes
(small, no training); ``write_run`` stores one. tests/test_figures.py uses both.
"""

import math
from pathlib import Path

import pytest

from pf.results import (COLUMNS, collect, mean_std, round_table, run_label, run_table, summarize,
                        write_json)

BUDGETS = (5000, 15000, 25000)
TRAIN_SIZE = 50000
TARGET_PARAMS, TARGET_MACS = 850000, 125_000_000
PROXY_PARAMS, PROXY_MACS = 270000, 40_000_000


def fake_metrics(method="prunefuse", prune_ratio=0.5, seed=0, fusion=True, kd=True,
                 accuracies=(0.80, 0.88, 0.92), dataset="cifar10", arch="resnet56",
                 proxy_arch="resnet20", metric="least_confidence", budgets=BUDGETS,
                 epochs=4, sync_every=0) -> dict:
    """A schema-faithful metrics.json dict; selection costs scale with the selector's size,
    and a synced selector's (PruneFuse, ``sync_every``) add its source target's training."""
    pruned = method == "prunefuse"
    shrink = (1 - prune_ratio) ** 2
    selector_arch, selector_params, selector_macs = {
        "baseline": (arch, TARGET_PARAMS, TARGET_MACS),
        "svp": (proxy_arch, PROXY_PARAMS, PROXY_MACS),
        "prunefuse": (f"{arch}@p={prune_ratio}", int(TARGET_PARAMS * shrink),
                      int(TARGET_MACS * shrink)),
    }[method]
    rounds, spent = [], 0
    for index, (budget, accuracy) in enumerate(zip(budgets, accuracies)):
        last = index == len(budgets) - 1
        has_selector = pruned or not last
        selector_training = 3 * selector_macs * budget * epochs if has_selector else 0
        scoring = 0 if last else selector_macs * (TRAIN_SIZE - budget)
        rounds.append({
            "round": index, "labeled": budget,
            "added": budget - (budgets[index - 1] if index else 0),
            "selector": {"arch": selector_arch, "test_accuracy": accuracy - 0.05,
                         "is_target": method == "baseline"} if has_selector else None,
            "target": {"arch": arch, "init": "fused" if pruned and fusion else "scratch",
                       "kd": pruned and kd, "test_accuracy": accuracy,
                       "curve": [accuracy * (e + 1) / epochs for e in range(epochs)],
                       "train_loss": [1.0 / (e + 1) for e in range(epochs)]},
            "macs": {"selector_training": selector_training,
                     "target_training": 3 * TARGET_MACS * budget * epochs,
                     "pool_scoring": scoring, "data_selection": spent},
            "seconds": {"selector_training": 1.0, "target_training": 2.0, "pool_scoring": 0.5,
                        "data_selection": float(index)},
        })
        spent += selector_training + scoring
        synced = sync_every and index >= 1 and index % sync_every == 0 and not last
        spent += 3 * TARGET_MACS * budgets[index - 1] * epochs if synced else 0
    return {
        "schema": 1,
        "config": {"dataset": dataset, "arch": arch, "method": method, "metric": metric,
                   "prune_ratio": prune_ratio, "importance": "l2", "proxy_arch": proxy_arch,
                   "fusion": fusion, "kd": kd, "rest": "keep", "sync_every": sync_every,
                   "selector_start": "init", "budgets": list(budgets),
                   "lr_schedule": [[epochs, 0.1]], "seed": seed},
        "seed": seed,
        "method": method,
        "dataset": {"name": dataset, "train_size": TRAIN_SIZE, "test_size": 10000,
                    "num_classes": 10, "image_shape": [3, 32, 32]},
        "accuracy": "test split, final epoch, fraction in [0, 1]",
        "macs_unit": "MACs (1 multiply-add = 1; FLOPs = 2 x MACs)",
        "networks": {"target": {"arch": arch, "params": TARGET_PARAMS, "forward_macs": TARGET_MACS},
                     "selector": {"arch": selector_arch, "params": selector_params,
                                  "forward_macs": selector_macs}},
        "rounds": rounds,
        "environment": {"pf": "0.1.0", "git_commit": "abc123", "device": "cpu",
                        "device_name": "Test CPU"},
    }


def write_run(root: Path, relative: str, **options) -> Path:
    """Write ``fake_metrics(**options)`` to ``root/relative/metrics.json``."""
    return write_json(Path(root) / relative / "metrics.json", fake_metrics(**options))


@pytest.fixture
def tree(tmp_path):
    """Two PruneFuse seeds in a sweep, a baseline directly under the root, a nested SVP run."""
    write_run(tmp_path, "sweep_a/pf_s0", seed=0, accuracies=(0.80, 0.90, 0.92))
    write_run(tmp_path, "sweep_a/pf_s1", seed=1, accuracies=(0.82, 0.92, 0.94))
    write_run(tmp_path, "baseline_s0", method="baseline", accuracies=(0.78, 0.86, 0.90))
    write_run(tmp_path, "sweep_b/group/svp_s0", method="svp", accuracies=(0.77, 0.85, 0.89))
    return tmp_path


def test_collect_gives_one_row_per_run_and_round(tree):
    table = collect(tree)
    assert list(table.columns) == COLUMNS
    assert len(table) == 4 * len(BUDGETS)
    runs = table.groupby("run_dir").first()
    assert runs.sweep.to_dict() == {"baseline_s0": "", "sweep_a/pf_s0": "sweep_a",
                                    "sweep_a/pf_s1": "sweep_a", "sweep_b/group/svp_s0": "sweep_b"}
    assert runs.label.to_dict()["sweep_b/group/svp_s0"] == "SVP resnet20"

    pf_last = table[(table.run_dir == "sweep_a/pf_s1") & (table["round"] == 2)].iloc[0]
    assert (pf_last.method, pf_last.dataset, pf_last.arch) == ("prunefuse", "cifar10", "resnet56")
    assert (pf_last.prune_ratio, pf_last.labeled, pf_last.train_size) == (0.5, 25000, TRAIN_SIZE)
    assert pf_last.budget_fraction == pytest.approx(0.5)
    assert pf_last.target_accuracy == pytest.approx(0.94)
    assert pf_last.selector_accuracy == pytest.approx(0.89)
    assert pf_last.selector_params == int(TARGET_PARAMS * 0.25)
    assert pf_last.curve == pytest.approx([0.235, 0.47, 0.705, 0.94]) and pf_last.epochs == 4
    assert bool(pf_last.fusion) and bool(pf_last.kd)
    assert (pf_last.rest, pf_last.importance, pf_last.seed) == ("keep", "l2", 1)
    assert (pf_last.device, pf_last.git_commit) == ("Test CPU", "abc123")
    expected = fake_metrics(seed=1, accuracies=(0.82, 0.92, 0.94))["rounds"][2]
    for phase in ("data_selection", "selector_training", "pool_scoring", "target_training"):
        assert pf_last[f"{phase}_macs"] == expected["macs"][phase]
        assert pf_last[f"{phase}_seconds"] == expected["seconds"][phase]
    assert pf_last.data_selection_macs > 0

    baseline = table[table.method == "baseline"]
    assert baseline.prune_ratio.isna().all() and baseline.proxy_arch.isna().all()
    assert baseline.rest.isna().all() and not baseline.fusion.any() and not baseline.kd.any()
    assert baseline.selector_accuracy.isna().tolist() == [False, False, True]  # no selector last
    assert table[table.method == "svp"].proxy_arch.unique().tolist() == ["resnet20"]
    assert table[table.method != "svp"].proxy_arch.isna().all()


def test_collect_skips_corrupt_incomplete_and_hidden_files(tree):
    (tree / "broken").mkdir()
    (tree / "broken" / "metrics.json").write_text("{not json")
    write_json(tree / "incomplete" / "metrics.json", {"schema": 1, "config": {}})
    bad_rounds = fake_metrics()
    del bad_rounds["rounds"][0]["target"]["curve"]
    write_json(tree / "bad_rounds" / "metrics.json", bad_rounds)
    (tree / "sweep_a" / "pf_s0" / ".metrics.json.x1y2.tmp").write_text("{half")
    write_run(tree, "sweep_a/.ipynb_checkpoints", seed=7)
    with pytest.warns(UserWarning) as caught:
        table = collect(tree)
    warned = " ".join(str(w.message) for w in caught)
    assert "broken" in warned and "incomplete" in warned and "bad_rounds" in warned
    assert len(caught) == 3
    assert sorted(table.run_dir.unique()) == ["baseline_s0", "sweep_a/pf_s0", "sweep_a/pf_s1",
                                               "sweep_b/group/svp_s0"]


def test_collect_of_an_empty_folder_is_an_empty_table(tmp_path):
    table = collect(tmp_path)
    assert table.empty and list(table.columns) == COLUMNS
    with pytest.raises(FileNotFoundError):
        collect(tmp_path / "missing")


def test_summarize_gives_mean_std_and_seed_count(tree):
    write_run(tree, "sweep_a/pf_s2", seed=2, accuracies=(0.81, 0.91, 0.96))
    stats = summarize(collect(tree), ["method", "prune_ratio", "labeled"])
    assert list(stats.columns) == ["method", "prune_ratio", "labeled", "mean", "std", "n"]
    row = stats[(stats.method == "prunefuse") & (stats.labeled == 25000)].iloc[0]
    assert row.prune_ratio == 0.5 and row.n == 3
    assert row["mean"] == pytest.approx((0.92 + 0.94 + 0.96) / 3)
    assert row["std"] == pytest.approx(0.02)  # sqrt(((-0.02)^2 + 0 + 0.02^2) / (3 - 1))
    single = stats[(stats.method == "baseline") & (stats.labeled == 5000)].iloc[0]
    assert math.isnan(single.prune_ratio)  # NaN keys keep their own group
    assert single.n == 1 and single["mean"] == pytest.approx(0.78) and math.isnan(single["std"])
    assert len(stats) == 3 * len(BUDGETS)
    by_one = summarize(collect(tree), "method", value="data_selection_macs")
    assert by_one.method.tolist() == ["baseline", "prunefuse", "svp"]


def test_mean_std_formats_percent_with_seed_count():
    assert mean_std(0.934, 0.0011, 3) == "93.40 ± 0.11 (n=3)"
    assert mean_std(0.934, float("nan"), 1) == "93.40 (n=1)"
    assert mean_std(0.5, 0.1, 1) == "50.00 (n=1)"
    assert mean_std(12.3456, 0.5, 2, scale=1, digits=1) == "12.3 ± 0.5 (n=2)"


def test_run_label_names_methods_and_departures_from_the_recipe():
    assert run_label("baseline") == "AL baseline"
    assert run_label("svp", proxy_arch="resnet8") == "SVP resnet8"
    assert run_label("prunefuse", 0.7) == "PruneFuse p=0.7"
    assert run_label("prunefuse", 0.5, fusion=False, kd=False, rest="zero") == \
        "PruneFuse p=0.5 (no fusion, no KD, rest=zero)"
    assert run_label("prunefuse", 0.5, sync_every=1, selector_start="warm", rest="keep") == \
        "PruneFuse p=0.5 (T_sync=1, selector_start=warm)"
    assert run_label("prunefuse", 0.6, prune_steps=5, fusion_variant="leading_conv") == \
        "PruneFuse p=0.6 (prune_steps=5, fusion_variant=leading_conv)"
    # SVP's proxy is never pruned nor fused: only its start is named.
    assert run_label("svp", proxy_arch="resnet8", selector_start="warm", rest="zero") == \
        "SVP resnet8 (selector_start=warm)"



def test_run_and_round_tables_show_one_run(tmp_path):
    metrics = fake_metrics(method="svp", accuracies=(0.7, 0.8, 0.9))
    write_json(tmp_path / "metrics.json", metrics)
    assert run_table(metrics).equals(run_table(tmp_path))
    rounds = round_table(metrics)
    assert rounds.index.tolist() == [0, 1, 2] and rounds.labeled.tolist() == list(BUDGETS)
    assert rounds.target_accuracy.tolist() == pytest.approx([0.7, 0.8, 0.9])
    assert rounds.data_selection_macs.tolist() == [r["macs"]["data_selection"]
                                                   for r in metrics["rounds"]]
