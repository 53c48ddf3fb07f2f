import dataclasses

import nbformat
import pytest

from conftest import PROJECT
from pf.experiments.config import (CONFIGS, PRESETS, ActiveLearningConfig, ConfigError,
                                   DataPruningConfig, from_parameters, make_config,
                                   parse_assignment, validate)
from pf.data import known_sizes

NOTEBOOKS = PROJECT / "notebooks"


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
    ({"epochs": 3}, "epochs: unknown parameter; known: experiment, dataset"),
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
    ({"lr_shape": "cosine"}, "lr_shape: 'cosine' is not one of step, linear"),
    ({"dropout": 1.0}, "dropout: must lie in [0, 1)"),
    ({"metric": "bald"}, "metric: bald samples Monte-Carlo dropout before the classifier and "
                         "needs dropout > 0"),
    ({"metric": "mc_entropy", "mc_passes": 0}, "mc_passes: must be a positive integer"),
    ({"pool_subset": 100}, "pool_subset: 100 scored images cannot give the 200 labels a round "
                           "adds; choose 0 (the whole pool) or at least 200"),
    ({"experiment": "data_pruning", "removed_fractions": [0.3, 1.0]},
     "removed_fractions: expected a list of fractions"),
    ({"experiment": "data_pruning", "score_lr_schedule": [[9, 0.1]]},
     "score_lr_schedule: du needs a scoring run of at least 10 epochs (its window), got 9"),
])
def test_bad_parameters_name_themselves_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config("demo", overrides)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_data_pruning_runs_on_the_demo_preset_with_the_paper_defaults():
    config = make_config("demo", {"experiment": "data_pruning"})
    assert (config.score, config.score_source, config.score_subset) == ("du", "full", 0.2)
    assert (config.extrapolation, config.knn_k, config.random_baseline) == ("knn", 10, True)
    assert config.score_schedule().epochs == config.schedule().epochs == 30


def test_unknown_preset():
    with pytest.raises(ConfigError, match="preset: unknown preset 'huge'"):
        make_config("huge")


@pytest.mark.parametrize("experiment", sorted(CONFIGS))
def test_every_field_is_a_json_type(experiment):
    for value in CONFIGS[experiment]().to_dict().values():
        assert type(value) in (str, int, float, bool, list)


def test_tdds_span_defaults_to_the_last_10_epochs_and_is_checked():
    config = make_config("demo", {"experiment": "data_pruning", "score": "tdds"})
    assert (config.tdds_span, config.tdds_span_epochs) == ("last", 10)
    first = make_config("demo", {"experiment": "data_pruning", "tdds_span": "first"})
    assert first.tdds_span == "first"
    with pytest.raises(ConfigError, match='tdds_span: expected str like "last", got 10'):
        make_config("demo", {"experiment": "data_pruning", "tdds_span": 10})
    with pytest.raises(ConfigError, match="tdds_span: 'mid' is not one of last, first"):
        make_config("demo", {"experiment": "data_pruning", "tdds_span": "mid"})


def test_each_experiment_has_its_own_config_and_refuses_the_others_parameters():
    learning = make_config("demo")
    pruning = make_config("demo", {"experiment": "data_pruning"})
    assert (type(learning), type(pruning)) == (ActiveLearningConfig, DataPruningConfig)
    assert "removed_fractions" not in learning.to_dict() and "budgets" not in pruning.to_dict()
    # The demo preset's data and schedule apply to both; its budgets only to active learning.
    assert pruning.dataset == learning.dataset == "digits"
    assert pruning.schedule() == learning.schedule()
    with pytest.raises(ConfigError, match="^prune_ratio: a parameter of "
                                          "experiment=active_learning, not data_pruning$"):
        make_config("demo", {"experiment": "data_pruning", "prune_ratio": 0.5})
    with pytest.raises(ConfigError, match="^experiment: 'pruning' is not one of "):
        make_config("demo", {"experiment": "pruning"})


def test_the_older_names_of_the_committed_sweeps_still_read():
    old = make_config("demo", {"method": "prune_data", "prune_rates": [0.5],
                               "prune_baseline": False})
    new = make_config("demo", {"experiment": "data_pruning", "removed_fractions": [0.5],
                               "random_baseline": False})
    assert old == new


def test_every_field_declares_what_it_allows_and_validate_reads_it():
    # Each field is declared once with its rules; a value outside them is refused by the
    # one check, naming the field.
    for kind in CONFIGS.values():
        for spec in dataclasses.fields(kind):
            rules = spec.metadata
            assert set(rules) == {"choices", "noun", "at_least", "above", "at_most", "below",
                                  "check"}, spec.name
            if isinstance(spec.default, str) and rules["choices"]:
                config = kind()
                setattr(config, spec.name, "no such thing")
                with pytest.raises(ConfigError, match=f"^{spec.name}: "):
                    validate(config)


def test_the_fast_preset_is_the_paper_schedule_at_a_third_of_its_epochs():
    paper, fast = make_config("paper").lr_schedule, make_config("fast").lr_schedule
    assert [lr for _, lr in fast] == [lr for _, lr in paper]
    assert [epochs for epochs, _ in fast] == [1, 30, 15, 15]


# Each notebook's parameters cell against the preset it is sized as; the departures it makes
# on purpose are named here, so that a default changed in pf without the notebook fails.
NOTEBOOK_PRESETS = {
    "prunefuse.ipynb": ("demo", {}),
    "subset_selection_norms.ipynb": ("demo", {  # norm-based selection at small budgets
        "method": "baseline", "metric": "norm_gs", "budgets": [20, 40, 60, 80, 100]}),
    "score_extrapolation.ipynb": ("demo", {  # extrapolated scores, checked against a full run
        "experiment": "data_pruning", "score_source": "subset", "score_reference": True}),
    "flops.ipynb": ("paper", {}),
    "quickstart.ipynb": ("demo", {}),
}


def _parameters(notebook: str) -> dict:
    cell = next(cell for cell in nbformat.read(NOTEBOOKS / notebook, as_version=4).cells
                if "parameters" in cell.metadata.get("tags", []))
    namespace = {}
    exec(cell.source, namespace)
    return namespace


def test_every_notebook_is_checked_against_a_preset():
    assert sorted(NOTEBOOK_PRESETS) == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")
                                              if p.name != "figures.ipynb")


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_PRESETS))
def test_notebook_parameters_equal_their_preset(notebook):
    preset, departures = NOTEBOOK_PRESETS[notebook]
    expected = make_config(preset, departures).to_dict()
    given = _parameters(notebook)
    shared = [key for key in given if key in expected]
    assert shared, notebook
    assert {key: given[key] for key in shared} == {key: expected[key] for key in shared}


def test_a_notebooks_preset_replaces_the_values_left_as_its_cell_shows_them():
    shown = {**_parameters("prunefuse.ipynb"), "out_dir": "runs/x"}
    assert from_parameters(shown, written_for="demo") == make_config("demo")
    for preset in ("cpu", "paper"):
        assert from_parameters({**shown, "preset": preset}, written_for="demo") == \
            make_config(preset)
    changed = {**shown, "preset": "cpu", "arch": "resnet14", "seed": 3}
    assert from_parameters(changed, written_for="demo") == \
        make_config("cpu", {"arch": "resnet14", "seed": 3})
    with pytest.raises(ConfigError, match="preset: unknown preset 'gpu'"):
        from_parameters({**shown, "preset": "gpu"}, written_for="demo")


def test_a_sweeps_resolved_values_are_kept_whatever_the_notebook_was_written_for():
    """A sweep injects a resolved config and no preset: even values that equal the demo
    preset's (resnet20) or the paper's (batch size 128) stay the sweep's."""
    resolved = make_config("cpu", {"seed": 2, "batch_size": 128}).to_dict()
    assert from_parameters({**_parameters("prunefuse.ipynb"), **resolved},
                           written_for="demo").to_dict() == resolved


def test_the_flops_notebook_plans_the_papers_protocol():
    given, paper = _parameters("flops.ipynb"), make_config("paper")
    train_size, _, _, image_shape = known_sizes(paper.dataset)
    assert given["epochs"] == paper.schedule().epochs
    assert (given["train_size"], tuple(given["input_shape"])) == (train_size, image_shape)


def test_a_configs_digest_follows_its_values_not_how_they_were_given():
    demo = make_config("demo", {"method": "svp"})
    # The same values from the paper's defaults and overrides: the same digest.
    spelled_out = make_config("paper", {key: value for key, value in demo.to_dict().items()})
    assert spelled_out.digest() == demo.digest()
    assert make_config("demo", {"method": "svp", "seed": 1}).digest() != demo.digest()
    assert make_config("paper").departures() == {}
    # Data pruning at its defaults is not active learning at its defaults.
    assert make_config("paper", {"experiment": "data_pruning"}).digest() != make_config().digest()


def test_editing_a_preset_gives_its_sweep_runs_new_ids(tmp_path, monkeypatch):
    from pf.sweep import load_sweep

    sweep = tmp_path / "sweeps" / "s.yaml"
    sweep.parent.mkdir()
    (tmp_path / "prunefuse.ipynb").write_text("{}")
    sweep.write_text("notebook: prunefuse.ipynb\npreset: smoke\ngrid: [{method: [baseline]}]\n")
    before = [run.run_id for run in load_sweep(sweep, tmp_path)[1]]
    monkeypatch.setitem(PRESETS, "smoke", {**PRESETS["smoke"], "lr_schedule": [[3, 0.05]]})
    after = [run.run_id for run in load_sweep(sweep, tmp_path)[1]]
    assert before != after and before[0].split("-")[0] == after[0].split("-")[0]
