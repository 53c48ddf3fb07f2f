"""Reading runs back: collect, summarize and mean_std on a synthetic results tree of run
records (tests/fakes.py), old records (schema 1) included."""

import dataclasses
import math

import pandas as pd
import pytest

from fakes import (BUDGETS, TARGET_PARAMS, TRAIN_SIZE, as_schema1, fake_pruning_record,
                   fake_record, write_run)
from pf.analysis.results import (COLUMNS, collect, collect_scores, mean_std, readable, round_table,
                                 run_table, summarize)
from pf.experiments.config import ActiveLearningConfig
from pf.experiments.methods import METHODS
from pf.experiments.record import (OVERLOADED, SCHEMA_VERSION, UNDER_LOAD_FILE, RecordError,
                                   RunRecord, cpu_load, read_record)
from pf.storage import write_json


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
    expected = fake_record(seed=1, accuracies=(0.82, 0.92, 0.94)).rounds[2]
    for phase in ("data_selection", "selector_training", "pool_scoring", "target_training"):
        assert pf_last[f"{phase}_macs"] == expected.macs[phase]
        assert pf_last[f"{phase}_seconds"] == expected.seconds[phase]
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
    bad_rounds = fake_record().to_json()
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


def _label(method, **settings):
    defaults = ActiveLearningConfig().to_dict()
    return METHODS[method].label({**defaults, **settings}, defaults)


def test_labels_name_methods_and_departures_from_the_recipe():
    assert _label("baseline") == "AL baseline"
    assert _label("svp", proxy_arch="resnet8") == "SVP resnet8"
    assert _label("prunefuse", prune_ratio=0.7) == "PruneFuse p=0.7"
    assert _label("prunefuse", fusion=False, kd=False, rest="zero") == \
        "PruneFuse p=0.5 (no fusion, no KD, rest=zero)"
    assert _label("prunefuse", sync_every=1, selector_start="warm", rest="keep") == \
        "PruneFuse p=0.5 (T_sync=1, selector_start=warm)"
    assert _label("prunefuse", prune_ratio=0.6, prune_steps=5, fusion_variant="leading_conv") == \
        "PruneFuse p=0.6 (prune_steps=5, fusion_variant=leading_conv)"
    # SVP's proxy is never pruned nor fused: only its start is named.
    assert _label("svp", proxy_arch="resnet8", selector_start="warm", rest="zero") == \
        "SVP resnet8 (selector_start=warm)"


def test_a_label_is_the_one_stored_when_the_run_was_written(tmp_path):
    # Tables show the label a run was written with, not one re-derived from today's defaults.
    record = fake_record(rest="zero")
    record.rounds = [dataclasses.replace(step, label="as written") for step in record.rounds]
    record.write(tmp_path / "run")
    assert collect(tmp_path).label.unique().tolist() == ["as written"]


def test_records_survive_a_round_trip_through_metrics_json(tmp_path):
    for record in (fake_record(method="svp"), fake_pruning_record()):
        record.write(tmp_path / record.experiment)
        assert read_record(tmp_path / record.experiment) == record
    assert record.schema == SCHEMA_VERSION


def test_schema1_records_read_as_they_were_written(tmp_path):
    # Old records have no labels, no curve_epochs, none of the later settings: reading them
    # gives the same table rows as the typed record they correspond to.
    for name, record in (("pf", fake_record(rest="zero", kd=False)),
                         ("svp", fake_record(method="svp")), ("dp", fake_pruning_record())):
        write_json(tmp_path / "old" / name / "metrics.json", as_schema1(record))
        record.write(tmp_path / "new" / name)
    old, new = collect(tmp_path / "old"), collect(tmp_path / "new")
    assert old.equals(new) and len(old) == 3 + 3 + 4
    assert old[old.run_dir == "pf"].label.tolist() == ["PruneFuse p=0.5 (no KD, rest=zero)"] * 3
    assert collect_scores(tmp_path / "old").equals(collect_scores(tmp_path / "new"))


def test_a_folder_without_a_record_is_a_one_line_error(tmp_path):
    with pytest.raises(RecordError, match="metrics.json: not a readable metrics file"):
        read_record(tmp_path)
    write_json(tmp_path / "metrics.json", {"schema": 2, "rounds": []})
    with pytest.raises(RecordError, match="^[^\n]*metrics.json: not a run record of schema 2"):
        read_record(tmp_path)


def test_run_and_round_tables_show_one_run(tmp_path):
    record = fake_record(method="svp", accuracies=(0.7, 0.8, 0.9))
    record.write(tmp_path)
    assert isinstance(read_record(tmp_path), RunRecord)
    assert run_table(record).equals(run_table(tmp_path))
    rounds = round_table(record)
    assert rounds.index.tolist() == [0, 1, 2] and rounds.labeled.tolist() == list(BUDGETS)
    assert rounds.target_accuracy.tolist() == pytest.approx([0.7, 0.8, 0.9])
    assert rounds.data_selection_macs.tolist() == [r.macs["data_selection"]
                                                   for r in record.rounds]


def test_a_readable_table_shows_percent_units_and_no_noise_or_empty_columns():
    table = pd.DataFrame({"labeled": [100, 300], "budget_fraction": [0.069589, 0.208768],
                          "target_accuracy": [0.98333335, 0.9], "prune_ratio": [math.nan] * 2,
                          "data_selection_macs": [0, 6_571_354_944],
                          "pool_scoring_seconds": [0.04, 1.3725], "pearson": [0.812345678, 1.0]})
    shown = readable(table)
    assert list(shown.columns) == ["labeled", "budget (%)", "target accuracy (%)",
                                   "data selection (GMACs)", "pool scoring (s)", "pearson"]
    assert shown["target accuracy (%)"].tolist() == [98.33, 90.0]
    assert shown["budget (%)"].tolist() == [6.96, 20.88]
    assert shown["data selection (GMACs)"].tolist() == [0.0, 6.57]
    assert shown["pool scoring (s)"].tolist() == [0.0, 1.4] and shown.pearson[0] == 0.8123
    wide = pd.DataFrame({"AL baseline": [0, 3.2e12], "PruneFuse p=0.7": [0, 2.5e11]})
    macs = readable(wide.rename_axis(columns="selector"), kind="macs")
    assert macs.columns.name == "selector: GMACs"
    assert macs["AL baseline"].tolist() == [0.0, 3200.0]


def test_a_run_is_under_load_when_a_round_was_or_its_sweep_says_so(tmp_path):
    loaded = fake_record(seed=0)
    loaded.rounds[1].cpu_load = OVERLOADED + 0.5  # e.g. a benchmark beside it
    loaded.write(tmp_path / "sweep" / "loaded")
    fake_record(seed=1).write(tmp_path / "sweep" / "named")
    fake_record(seed=2).write(tmp_path / "sweep" / "quiet")
    write_json(tmp_path / "sweep" / UNDER_LOAD_FILE, {"note": "shared the cores",
                                                      "runs": ["named"]})
    for root, prefix in ((tmp_path, "sweep/"), (tmp_path / "sweep", "")):
        runs = collect(root).groupby("run_dir").under_load.agg(["all", "any"])
        assert runs["all"].equals(runs["any"])  # a run is under load in all its rows or none
        assert runs["any"].to_dict() == {f"{prefix}loaded": True, f"{prefix}named": True,
                                         f"{prefix}quiet": False}
    assert run_table(loaded).under_load.all() and not run_table(fake_record()).under_load.any()
    assert cpu_load() is None or cpu_load() >= 0
