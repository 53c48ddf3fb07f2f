"""Data pruning by score extrapolation: what is kept, the run's record, the config's limits."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pf.experiments.config import ConfigError, make_config
from pf.experiments.run import run_experiment
from pf.experiments.config import check_sizes
from pf.experiments.data_pruning import keep_count, keep_highest, keep_random, plan_data_pruning
from pf.experiments.ledger import pruning_images

PF = str(Path(sys.executable).with_name("pf"))

# ---------------------------------------------------------------------------------------
# Which samples are kept
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate, n, expected", [
    (0.0, 10, 10), (0.3, 10, 7), (0.9, 10, 1), (0.95, 10, 1), (0.7, 1000, 300),
    (0.25, 2, 2),  # 1.5 rounds up
    (0.99, 10, 1),  # never empty
])
def test_keep_count_rounds_to_the_nearest_and_keeps_at_least_one(rate, n, expected):
    assert keep_count(rate, n) == expected


def test_the_plan_lists_every_retraining_in_the_runs_order_with_its_kept_count():
    config = make_config("smoke", {"experiment": "data_pruning", "removed_fractions": [0.3, 0.9],
                                   "coresets": ["moderate"], "score_source": "subset",
                                   "score_subset": 0.25, "score_reference": True,
                                   "lr_schedule": [[5, 0.05]], "eval_every": 2,
                                   "score_lr_schedule": [[10, 0.05]]})
    plan = plan_data_pruning(config, 10)
    assert [(r.removed_fraction, r.selection, r.kept) for r in plan.retrainings] == [
        (0.3, "score", 7), (0.3, "moderate", 7), (0.3, "random", 7),
        (0.9, "score", 1), (0.9, "moderate", 1), (0.9, "random", 1)]
    assert (plan.scored, plan.embedded, plan.reference, plan.evaluations) == (3, 10, True, 3)
    images = pruning_images(plan, test_size=4)
    assert images["target_training"] == (7 + 1) * 3 * 5
    assert images["evaluation"] == 4 * (2 + 6 * 3)  # the scoring and reference runs, 6 x 3 passes
    assert images["selector_training"] == 3 * 10
    assert images["reference_scoring"] == 10 * 10
    assert pruning_images(plan, test_size=4, reference_reused=True)["reference_scoring"] == 0


def test_keep_highest_keeps_exactly_the_top_scores_without_duplicates():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3, 0.8])
    assert keep_highest(scores, 3).tolist() == [1, 3, 5]
    assert keep_highest(scores, 6).tolist() == list(range(6))
    assert keep_highest(scores, 0).tolist() == []


def test_keep_highest_breaks_ties_by_the_lower_index():
    scores = torch.tensor([1.0, 2.0, 1.0, 2.0, 1.0, 0.0])
    assert keep_highest(scores, 1).tolist() == [1]
    assert keep_highest(scores, 3).tolist() == [0, 1, 3]
    assert keep_highest(scores, 4).tolist() == [0, 1, 2, 3]


def test_keep_highest_refuses_unscored_samples_and_impossible_counts():
    with pytest.raises(ValueError, match="NaN"):
        keep_highest(torch.tensor([1.0, float("nan")]), 1)
    with pytest.raises(ValueError, match="count"):
        keep_highest(torch.tensor([1.0, 2.0]), 3)


def test_keep_random_is_seeded_distinct_and_nested_across_counts():
    small, large = keep_random(100, 30, seed=4), keep_random(100, 70, seed=4)
    assert len(set(small.tolist())) == 30 and len(set(large.tolist())) == 70
    assert set(small.tolist()) <= set(large.tolist())
    assert torch.equal(small, keep_random(100, 30, seed=4))
    assert not torch.equal(small, keep_random(100, 30, seed=5))


# ---------------------------------------------------------------------------------------
# One run, end to end
# ---------------------------------------------------------------------------------------

RATES = [0.5, 0.75]
SMOKE = {"experiment": "data_pruning", "removed_fractions": RATES, "lr_schedule": [[1, 0.05]],
         "score_lr_schedule": [[10, 0.05]], "score_source": "subset", "score_subset": 0.25,
         "score_reference": True}


@pytest.fixture(scope="module")
def subset_run(tmp_path_factory):
    """A subset-scored, kNN-extrapolated run with a reference full run, on synthetic data."""
    out = tmp_path_factory.mktemp("prune_data")
    metrics = run_experiment(make_config("smoke", SMOKE), out, progress=False)
    return metrics, out


@pytest.mark.slow  # runs data pruning
def test_one_round_per_rate_and_selection_with_the_kept_counts(subset_run):
    metrics, out = subset_run
    assert (metrics.experiment, metrics.method) == ("data_pruning", None)
    rounds = metrics.rounds
    assert [(r.removed_fraction, r.selection) for r in rounds] == [
        (0.5, "score"), (0.5, "random"), (0.75, "score"), (0.75, "random")]
    assert [r.round for r in rounds] == [0, 1, 2, 3]
    assert [r.labeled for r in rounds] == [r.added for r in rounds] == [256, 256, 128, 128]
    for round_ in rounds:
        assert round_.selector is None
        target = round_.target
        assert (target.init, target.kd) == ("scratch", False)
        assert len(target.curve) == 1 and target.test_accuracy == target.curve[-1]
        assert round_.macs["target_training"] > 0
        selection = round_.macs["data_selection"]
        assert (selection > 0) == (round_.selection == "score")
        assert selection == round_.macs["selector_training"] + round_.macs["pool_scoring"]
    selected = json.loads((out / metrics.selected_file).read_text())
    assert [len(kept) for kept in selected["kept"]] == [256, 256, 128, 128]
    assert all(len(set(kept)) == len(kept) for kept in selected["kept"])
    assert selected["removed_fractions"] == [0.5, 0.5, 0.75, 0.75]


@pytest.mark.slow  # runs data pruning
def test_score_rounds_keep_the_highest_scores_and_scores_json_covers_every_sample(subset_run):
    metrics, out = subset_run
    stored = json.loads((out / metrics.scores_file).read_text())
    scores = torch.tensor(stored["scores"])
    assert len(scores) == metrics.dataset.train_size == 512
    assert torch.isfinite(scores).all() and len(stored["reference_scores"]) == 512
    assert len(stored["scored_indices"]) == 128  # 0.25 of 512
    kept = json.loads((out / metrics.selected_file).read_text())["kept"]
    assert kept[0] == keep_highest(scores, 256).tolist()
    assert set(kept[2]) <= set(kept[0])  # scores rank once: the sets nest


@pytest.mark.slow  # runs data pruning
def test_correlations_with_the_full_run_are_reported(subset_run):
    block = subset_run[0].scores
    assert (block.score, block.source, block.extrapolation) == ("du", "subset", "knn")
    assert block.scored == 128 and block.reference
    for key in ("pearson", "spearman", "pearson_scored", "spearman_scored"):
        assert -1 <= getattr(block, key) <= 1
    assert block.reference_macs > block.macs["selector_training"]


def test_collect_reads_a_pruning_run(subset_run):
    from pf.analysis.results import collect

    table = collect(subset_run[1])
    assert len(table) == 4 and set(table.experiment) == {"data_pruning"}
    assert table.labeled.tolist() == [256, 256, 128, 128]


def test_full_scores_and_no_baseline(synthetic):
    from pf.experiments.data_pruning import run_data_pruning

    config = make_config("smoke", {"experiment": "data_pruning", "removed_fractions": [0.5],
                                   "lr_schedule": [[1, 0.05]], "score": "forgetting",
                                   "random_baseline": False, "score_reference": True})
    run = run_data_pruning(config, synthetic, progress=False)
    assert [(r.removed_fraction, r.selection) for r in run["rounds"]] == [(0.5, "score")]
    block = run["scores"]
    assert (block.source, block.scored, block.extrapolation) == ("full", 512, None)
    assert block.pearson is None and run["reference_scores"] is None  # nothing to compare
    assert block.macs["pool_scoring"] == 0  # no embedding pass


@pytest.mark.slow  # runs data pruning
def test_no_rates_scores_only_and_the_cli_reports_the_correlations(tmp_path):
    assignments = [f"{key}={json.dumps(value)}"
                   for key, value in {**SMOKE, "removed_fractions": []}.items()]
    cli = subprocess.run([PF, "run", "--preset", "smoke", "--out", str(tmp_path),
                          *(arg for a in assignments for arg in ("--set", a))],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["rounds"] == [] and -1 <= metrics["scores"]["pearson"] <= 1
    assert "scores: DU, kNN k=10 from 25 % (128 of 512 samples scored)" in cli.stdout
    assert f"unseen samples: Pearson {metrics['scores']['pearson']:.3f}" in cli.stdout


# ---------------------------------------------------------------------------------------
# Bad parameters
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    ({"score": "aum"}, "score: 'aum' is not one of du, tdds, el2n, forgetting"),
    ({"removed_fractions": [0.5, 1.0]}, "removed_fractions: expected a list of fractions in"),
    ({"removed_fractions": [-0.1]}, "removed_fractions: expected a list of fractions in"),
    ({"removed_fractions": ["half"]}, "removed_fractions: expected a list of fractions in"),
    ({"removed_fractions": [0.5, 0.5]}, "removed_fractions: must be distinct"),
    ({"score_subset": 1.0}, "score_subset: must lie in (0, 1)"),
    ({"score_source": "half"}, "score_source: 'half' is not one of full, subset"),
    ({"extrapolation": "svm"}, "extrapolation: 'svm' is not one of knn, gnn"),
    ({"knn_weighting": "gauss"}, "knn_weighting: 'gauss' is not one of mean, exp"),
    ({"knn_k": 0}, "knn_k: must be a positive integer"),
    ({"score_lr_schedule": [[5, 0.1]]},
     "score_lr_schedule: du needs a scoring run of at least 10 epochs (its window), got 5"),
    ({"score": "tdds", "score_lr_schedule": [], "lr_schedule": [[3, 0.1]]},
     "score_lr_schedule: tdds needs a scoring run of at least 10 epochs"),
])
def test_bad_pruning_parameters_name_themselves_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config("smoke", {"experiment": "data_pruning", "score_lr_schedule": [[10, 0.05]],
                              **overrides})
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_a_short_scoring_schedule_is_fine_for_scores_without_a_window_and_other_methods():
    make_config("smoke", {"experiment": "data_pruning", "score": "el2n"})
    make_config("smoke", {"method": "prunefuse"})  # 2 epochs: the AL presets stay valid


@pytest.mark.parametrize("overrides, message", [
    ({"score_subset": 0.01, "knn_k": 10}, "knn_k: 10 exceeds the 5 scored samples"),
    ({"score_subset": 0.02, "extrapolation": "gnn"}, "score_subset: gnn needs at least 20"),
    ({"score_subset": 0.999}, "score_subset: 0.999 of 512 samples leaves fewer than 2"),
])
def test_subset_sizes_are_checked_against_the_training_set(overrides, message):
    config = make_config("smoke", {"experiment": "data_pruning", "score_source": "subset",
                                   "score_lr_schedule": [[10, 0.05]], **overrides})
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        check_sizes(config, 512)


def test_gnn_extrapolation_scores_every_sample(synthetic):
    from pf.experiments.data_pruning import run_data_pruning

    config = make_config("smoke", {**SMOKE, "extrapolation": "gnn", "gnn_epochs": 5,
                                   "score_reference": False, "removed_fractions": [0.5],
                                   "random_baseline": False})
    run = run_data_pruning(config, synthetic, progress=False)
    assert len(run["score_values"]) == 512 and len(run["scored_indices"]) == 128
    assert torch.isfinite(torch.tensor(run["score_values"])).all()
    block = run["scores"]
    assert (block.extrapolation, block.gnn_epochs, block.knn_weighting) == ("gnn", 5, None)
    assert block.pearson is None  # no reference run


# ---------------------------------------------------------------------------------------
# Reference runs kept in a cache
# ---------------------------------------------------------------------------------------


def _counting_recorded_runs(monkeypatch) -> list:
    """Wrap pf.experiments.data_pruning's recorded trainings; the returned list gets each
    one's label."""
    from pf.experiments import data_pruning

    labels, real = [], data_pruning._recorded_run

    def counted(config, dataset, init, indices, seed, desc, progress):
        labels.append(desc)
        return real(config, dataset, init, indices, seed, desc, progress)

    monkeypatch.setattr(data_pruning, "_recorded_run", counted)
    return labels


@pytest.mark.slow  # runs data pruning
def test_a_cached_reference_run_is_reused_by_runs_that_repeat_it(synthetic, tmp_path, monkeypatch):
    from pf.experiments.data_pruning import run_data_pruning

    cache = tmp_path / "cache"
    trainings = _counting_recorded_runs(monkeypatch)
    config = {**SMOKE, "removed_fractions": [], "reference_cache": str(cache)}
    first = run_data_pruning(make_config("smoke", config), synthetic, progress=False)
    assert trainings == ["score du", "reference du"] and not first["scores"].reference_cached
    assert len(list(cache.glob("reference-seed0-*.pt"))) == 1

    # Another k and subset size: the same reference run, read back instead of trained.
    trainings.clear()
    second = run_data_pruning(make_config("smoke", {**config, "knn_k": 3, "score_subset": 0.5}),
                              synthetic, progress=False)
    assert trainings == ["score du"] and second["scores"].reference_cached
    assert second["reference_scores"] == first["reference_scores"]
    for key in ("reference_test_accuracy", "reference_macs", "reference_seconds"):
        assert getattr(second["scores"], key) == getattr(first["scores"], key)
    assert second["scores"].pearson != first["scores"].pearson  # against its own estimate

    # Another seed is another reference run.
    trainings.clear()
    run_data_pruning(make_config("smoke", {**config, "seed": 1}), synthetic, progress=False)
    assert trainings == ["score du", "reference du"]
    assert len(list(cache.glob("reference-seed*.pt"))) == 2


@pytest.mark.slow  # runs data pruning
def test_an_unreadable_or_foreign_cache_file_is_recomputed(synthetic, tmp_path, monkeypatch):
    from pf.experiments.data_pruning import run_data_pruning
    from pf.experiments.reference_cache import reference_path

    config = make_config("smoke", {**SMOKE, "removed_fractions": [],
                                   "reference_cache": str(tmp_path)})
    path = reference_path(config, "cpu")
    path.write_bytes(b"not a torch file")
    trainings = _counting_recorded_runs(monkeypatch)
    first = run_data_pruning(config, synthetic, progress=False)
    assert trainings == ["score du", "reference du"] and not first["scores"].reference_cached

    stored = torch.load(path, weights_only=True)
    stored["identity"]["train_size"] = 1000  # as if written for another dataset
    torch.save(stored, path)
    trainings.clear()
    second = run_data_pruning(config, synthetic, progress=False)
    assert trainings == ["score du", "reference du"] and not second["scores"].reference_cached
    assert second["reference_scores"] == first["reference_scores"]
    assert torch.load(path, weights_only=True)["identity"]["train_size"] == 512



@pytest.fixture
def tiny(synthetic):
    """The first 64 training and 32 test images of ``synthetic``: recorded runs in seconds."""
    from dataclasses import replace

    from pf.data import Split

    def head(split, n):
        return Split(split.images[:n], split.labels[:n])

    return replace(synthetic, train=head(synthetic.train, 64), test=head(synthetic.test, 32))


def test_the_reference_cache_never_writes_into_another_writers_temporary_file(tiny, tmp_path):
    """On a shared filesystem another node's writer can have this process's id: the file
    it is writing (named as pf once named its own: cache file, pid, .partial) must
    survive, and this run's own temporary file must be gone once the cache file is in place."""
    import os

    from pf.experiments.data_pruning import run_data_pruning
    from pf.experiments.reference_cache import reference_path

    config = make_config("smoke", {**SMOKE, "score": "el2n", "score_lr_schedule": [[1, 0.05]],
                                   "removed_fractions": [], "reference_cache": str(tmp_path)})
    path = reference_path(config, "cpu")
    others = path.with_name(f"{path.name}.{os.getpid()}.partial")
    others.write_bytes(b"another node is writing this")
    run = run_data_pruning(config, tiny, progress=False)
    assert others.read_bytes() == b"another node is writing this"
    assert list(tmp_path.glob("*.partial")) == [others]
    stored = torch.load(path, weights_only=True)
    assert stored["scores"].tolist() == run["reference_scores"]


# ---------------------------------------------------------------------------------------
# TDDS's span
# ---------------------------------------------------------------------------------------

SPAN_RUN = {"experiment": "data_pruning", "score": "tdds", "removed_fractions": [],
            "score_lr_schedule": [[13, 0.05]]}


def test_tdds_scores_the_last_or_first_span_of_the_scoring_run(tiny):
    """The run's TDDS equals TDDS of the full softmax history cut to the span's epochs,
    and the scores block records the span (last 10 by default)."""
    import copy

    from pf.models import build_model
    from pf.experiments.data_pruning import SCORING_SEED, score_training_set
    from pf.scores import record_dynamics, tdds

    config = make_config("smoke", SPAN_RUN)
    torch.manual_seed(config.seed)
    init = build_model(config.arch, tiny.num_classes, tiny.in_channels)
    full, _ = record_dynamics(copy.deepcopy(init), tiny, torch.arange(64),
                              config.score_schedule(), device="cpu", record_curve=False,
                              seed=config.seed * 1000 + SCORING_SEED, **config.fit_options())
    assert full.probs.shape[0] == 13
    expected = {"last": tdds(full.probs[-10:]), "first": tdds(full.probs[:10])}
    assert not torch.allclose(expected["last"], expected["first"])
    for span in ("last", "first"):
        overrides = {} if span == "last" else {"tdds_span": "first"}  # last: the default
        scoring = score_training_set(make_config("smoke", {**SPAN_RUN, **overrides}), tiny, init)
        torch.testing.assert_close(scoring["scores"], expected[span], rtol=1e-5, atol=1e-6)
        summary = scoring["summary"]
        assert (summary.tdds_span, summary.tdds_span_epochs) == (span, 10)


def test_the_span_is_recorded_only_for_tdds_and_keys_its_reference_runs(tiny):
    from pf.experiments.data_pruning import run_data_pruning
    from pf.experiments.reference_cache import reference_identity, reference_path

    block = run_data_pruning(make_config("smoke", {**SMOKE, "removed_fractions": [],
                                                   "score_reference": False}),
                             tiny, progress=False)["scores"]
    assert block.score == "du" and block.tdds_span is block.tdds_span_epochs is None

    cache = {**SPAN_RUN, "score_source": "subset", "reference_cache": "cache"}
    paths = {(span, length): reference_path(make_config("smoke", {
        **cache, "tdds_span": span, "tdds_span_epochs": length}), "cpu")
        for span in ("last", "first") for length in (10, 12)}
    assert len(set(paths.values())) == 4
    # DU's reference runs do not depend on TDDS's span: same identity, same cache file.
    du = [make_config("smoke", {**cache, "score": "du", "tdds_span": span})
          for span in ("last", "first")]
    assert reference_identity(du[0]) == reference_identity(du[1])
    assert "tdds_span" not in reference_identity(du[0])


@pytest.mark.parametrize("overrides, message", [
    ({"tdds_span": "middle"}, "tdds_span: 'middle' is not one of last, first"),
    ({"tdds_span_epochs": 5}, "tdds_span_epochs: must be a whole number >= 10, got 5"),
    ({"tdds_span_epochs": 20},
     "score_lr_schedule: tdds needs a scoring run of at least 20 epochs (tdds_span_epochs), "
     "got 13; set score_lr_schedule"),
])
def test_bad_tdds_spans_name_themselves_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config("smoke", {**SPAN_RUN, **overrides})
    assert str(error.value) == message
