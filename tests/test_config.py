import pytest

from pf.experiments.config import PRESETS, Config, ConfigError, make_config, parse_assignment


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_valid(preset):
    config = make_config(preset)
    assert config.schedule().epochs > 0


def test_paper_preset_is_the_svp_protocol():
    config = make_config("paper")
    assert (config.dataset, config.arch) == ("cifar10", "resnet56")
    assert config.budgets == [1000, 5000, 10000, 15000, 20000, 25000]
    assert config.schedule().epochs == 181 and config.batch_size == 128
    assert (config.momentum, config.weight_decay) == (0.9, 5e-4)


def test_overrides_apply_and_ints_widen_to_floats():
    config = make_config("demo", {"seed": 4, "weight_decay": 0, "budgets": [10, 20]})
    assert (config.seed, config.weight_decay, config.budgets) == (4, 0.0, [10, 20])
    assert isinstance(config.weight_decay, float)


@pytest.mark.parametrize("text, expected", [
    ("seed=3", ("seed", 3)), ("weight_decay=1e-3", ("weight_decay", 1e-3)),
    ("compile=true", ("compile", True)), ("budgets=[1, 2]", ("budgets", [1, 2])),
    ("dataset=imagefolder:/data/x.tar.gz", ("dataset", "imagefolder:/data/x.tar.gz")),
    ("arch=resnet20", ("arch", "resnet20")), ("lr_schedule=[[1,0.1]]", ("lr_schedule", [[1, 0.1]])),
])
def test_parse_assignment(text, expected):
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("overrides, message", [
    ({"epochs": 3}, "epochs: unknown parameter; known: dataset"),
    ({"seed": "one"}, 'seed: expected int like 0, got "one"'),
    ({"seed": 1.5}, "seed: expected int"),
    ({"compile": 1}, "compile: expected bool"),
    ({"arch": "vgg16"}, "arch: unknown model 'vgg16'; choose one of resnet8"),
    ({"dataset": "mnist"}, "dataset: unknown dataset 'mnist'; choose one of digits"),
    ({"device": "tpu"}, "device: 'tpu' is not one of auto, cpu, cuda"),
    ({"budgets": [100, 50]}, "budgets: must be strictly increasing TOTAL labeled counts"),
    ({"budgets": []}, "budgets: expected a non-empty list of positive integers"),
    ({"budgets": [0, 10]}, "budgets: expected a non-empty list of positive integers"),
    ({"lr_schedule": [[1.5, 0.1]]}, "lr_schedule: expected [[epochs, lr], ...]"),
    ({"batch_size": 0}, "batch_size: must be a positive integer"),
    ({"momentum": 1.5}, "momentum: must lie in [0, 1]"),
    ({"kd_temperature": 0}, "kd_temperature: must be > 0"),
    ({"method": "prune_data", "prune_rates": [0.3, 1.0]},
     "prune_rates: expected a list of fractions"),
    ({"method": "prune_data", "score_lr_schedule": [[9, 0.1]]},
     "score_lr_schedule: du needs a scoring run of at least 10 epochs (its window), got 9"),
])
def test_bad_parameters_name_themselves_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config("demo", overrides)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_data_pruning_runs_on_the_demo_preset_with_the_paper_defaults():
    config = make_config("demo", {"method": "prune_data"})
    assert (config.score, config.score_source, config.score_subset) == ("du", "full", 0.2)
    assert (config.extrapolation, config.knn_k, config.prune_baseline) == ("knn", 10, True)
    assert config.score_schedule().epochs == config.schedule().epochs == 30


def test_unknown_preset():
    with pytest.raises(ConfigError, match="preset: unknown preset 'huge'"):
        make_config("huge")


def test_every_field_is_a_json_type():
    for value in Config().to_dict().values():
        assert type(value) in (str, int, float, bool, list)


def test_tdds_span_defaults_to_the_last_10_epochs_and_is_checked_for_every_method():
    config = make_config("demo", {"method": "prune_data", "score": "tdds"})
    assert (config.tdds_span, config.tdds_span_epochs) == ("last", 10)
    assert make_config("demo", {"tdds_span": "first"}).tdds_span == "first"
    with pytest.raises(ConfigError, match='tdds_span: expected str like "last", got 10'):
        make_config("demo", {"tdds_span": 10})
    with pytest.raises(ConfigError, match="tdds_span: 'mid' is not one of last, first"):
        make_config("demo", {"method": "prunefuse", "tdds_span": "mid"})
