"""The planned cost of a run equals what the run then records, phase by phase."""

import pytest

from pf.experiments.config import ConfigError, make_config
from pf.data import known_sizes
from pf.experiments.cost import planned_cost
from pf.experiments.ledger import ROUND_PHASES
from pf.data import load_dataset
from pf.experiments.run import run_experiment

SHORT = {"lr_schedule": [[1, 0.05]]}


def _recorded(metrics: dict, phase: str) -> int:
    return sum(round_.macs[phase] for round_ in metrics.rounds)


@pytest.mark.parametrize("overrides", [
    {"method": "baseline", "metric": "least_confidence"},
    {"method": "svp", "metric": "kcenters", "proxy_arch": "resnet8"},
    {"method": "prunefuse", "metric": "norm_gs", "prune_ratio": 0.6,
     "selector_lr_schedule": [[2, 0.05]]},
    {"method": "prunefuse", "metric": "random", "kd": False},
    {"method": "svp", "metric": "norm_top", "budgets": [64, 96, 160], "selector_start": "warm"},
    {"method": "baseline", "metric": "random"},
    {"method": "prunefuse", "metric": "margin", "budgets": [64, 96, 128], "sync_every": 1},
    {"method": "prunefuse", "metric": "kcenters", "budgets": [64, 96, 128], "sync_every": 1,
     "selector_start": "warm", "fuse_into": "source"},
    {"method": "prunefuse", "metric": "entropy", "budgets": [64, 96, 128], "sync_every": 2,
     "selector_start": "warm"},
    {"method": "baseline", "metric": "least_confidence", "lr_schedule": [[3, 0.05]],
     "eval_every": 2},
    {"method": "prunefuse", "metric": "bald", "dropout": 0.3, "mc_passes": 7},
    {"method": "svp", "metric": "mc_entropy", "dropout": 0.5, "proxy_arch": "resnet8"},
    {"method": "baseline", "metric": "badge"},
    {"method": "baseline", "metric": "least_confidence", "pool_subset": 100},
    {"method": "prunefuse", "metric": "kcenters", "pool_subset": 100},
])
@pytest.mark.slow  # runs the experiment it plans
def test_active_learning_plan_matches_the_recorded_macs(overrides):
    config = make_config("smoke", {**SHORT, **overrides})
    metrics = run_experiment(config, progress=False)
    plan = planned_cost(config)
    # Every phase but data pruning's reference run is recorded, round by round.
    recorded = {phase: _recorded(metrics, phase) for phase in ROUND_PHASES}
    assert plan["macs"] == {**recorded, "reference_scoring": 0}
    networks = metrics.networks
    assert plan["forward_macs"] == {role: networks[role].forward_macs
                                    for role in ("target", "selector")}
    target_epochs = len(metrics.rounds[0].target.curve_epochs)  # evaluated epochs
    trained_selectors = sum(r.selector is not None and not r.selector.is_target
                            for r in metrics.rounds)
    assert plan["images"]["evaluation"] == 256 * (len(config.budgets) * target_epochs
                                                  + trained_selectors)
    assert (plan["macs"]["distillation"] > 0) == any(r.target.kd for r in metrics.rounds)


@pytest.mark.parametrize("overrides", [
    {"score_lr_schedule": [[10, 0.05]], "score_source": "subset", "score_subset": 0.25,
     "score_reference": True},
    # a full-source run embeds the training set only for Moderate's features
    {"score": "el2n", "coresets": ["moderate", "ccs"], "random_baseline": False},
])
@pytest.mark.slow  # runs the experiment it plans
def test_data_pruning_plan_matches_the_recorded_macs(overrides):
    config = make_config("smoke", {"lr_schedule": [[3, 0.05]], "eval_every": 2,
                                   "experiment": "data_pruning", "removed_fractions": [0.5, 0.8],
                                   **overrides})
    metrics = run_experiment(config, progress=False)
    plan = planned_cost(config)
    scores = metrics.scores
    assert plan["macs"]["selector_training"] == scores.macs["selector_training"]
    assert plan["macs"]["pool_scoring"] == scores.macs["pool_scoring"] > 0
    assert plan["macs"]["reference_scoring"] == (scores.reference_macs or 0)
    assert plan["macs"]["target_training"] == _recorded(metrics, "target_training")
    assert plan["images"]["target_training"] == sum(r.labeled for r in metrics.rounds) * 3
    assert plan["macs"]["evaluation"] == (scores.evaluation_macs
                                          + _recorded(metrics, "evaluation"))


def test_known_dataset_sizes_are_the_loaded_ones():
    for name in ("digits", "synthetic"):
        data = load_dataset(name)
        assert known_sizes(name) == (len(data.train), len(data.test), data.num_classes,
                                     data.train.image_shape)


def test_an_unloaded_image_folder_needs_its_size():
    config = make_config("smoke", {"dataset": "imagefolder:/nowhere"})
    with pytest.raises(ConfigError, match="dataset: the size of 'imagefolder:/nowhere' is unknown"):
        planned_cost(config)
    plan = planned_cost(config, train_size=512, test_size=256, num_classes=10,
                        image_shape=(3, 16, 16))
    assert plan["total_macs"] == planned_cost(make_config("smoke"))["total_macs"]
