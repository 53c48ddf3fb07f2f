"""What the tests fake instead of training: run records for the tests that read runs back
(tables, figures, the CLI summary, notebooks): typed ``RunRecord``s in the shape
``pf.experiments.run`` writes, labelled as it labels them, and the schema-1 form older runs
were written in; and networks that look trained, for pruning and fusion."""

from pathlib import Path

import torch

from pf.experiments import ACTIVE_LEARNING, DATA_PRUNING
from pf.experiments.config import ActiveLearningConfig, DataPruningConfig
from pf.experiments.ledger import Forwards, Work, charge_selection, round_macs
from pf.experiments.methods import METHODS
from pf.models import build_model
from pf.experiments.record import (RANDOM_LABEL, DatasetRecord, NetworkRecord, RoundRecord,
                                   RunRecord, ScoresRecord, SelectorRecord, TargetRecord,
                                   scoring_label)

BUDGETS = (5000, 15000, 25000)
TRAIN_SIZE = 50000
TARGET_PARAMS, TARGET_MACS = 850000, 125_000_000
PROXY_PARAMS, PROXY_MACS = 270000, 40_000_000
ENVIRONMENT = {"pf": "0.1.0", "git_commit": "abc123", "git_dirty": False, "dirty_files": [],
               "lock": None, "device": "cpu", "device_name": "Test CPU"}


def fake_record(method="prunefuse", prune_ratio=0.5, seed=0, fusion=True, kd=True,
                accuracies=(0.80, 0.88, 0.92), dataset="cifar10", arch="resnet56",
                proxy_arch="resnet20", metric="least_confidence", budgets=BUDGETS,
                epochs=4, sync_every=0, **settings) -> RunRecord:
    """An active-learning run's record; selection costs scale with the selector's size, and
    a synced selector's (PruneFuse, ``sync_every``) add its source target's training.
    ``settings``: further config fields (e.g. ``rest``), which the label names."""
    pruned = method == "prunefuse"
    shrink = (1 - prune_ratio) ** 2
    selector = {
        "baseline": NetworkRecord(arch, TARGET_PARAMS, TARGET_MACS),
        "svp": NetworkRecord(proxy_arch, PROXY_PARAMS, PROXY_MACS),
        "prunefuse": NetworkRecord(f"{arch}@p={prune_ratio}", int(TARGET_PARAMS * shrink),
                                   int(TARGET_MACS * shrink)),
    }[method]
    defaults = ActiveLearningConfig().to_dict()
    config = {**defaults, "dataset": dataset, "arch": arch, "method": method,
              "metric": metric, "prune_ratio": prune_ratio, "proxy_arch": proxy_arch,
              "fusion": fusion, "kd": kd, "sync_every": sync_every, "budgets": list(budgets),
              "lr_schedule": [[epochs, 0.1]], "seed": seed, **settings}
    label = METHODS[method].label(config, defaults)
    forwards = Forwards(TARGET_MACS, selector.forward_macs, selector.forward_macs)
    rounds, spent = [], 0
    for index, (budget, accuracy) in enumerate(zip(budgets, accuracies)):
        last = index == len(budgets) - 1
        has_selector = pruned or not last
        work = Work(selector_trained=budget * epochs if has_selector else 0,
                    target_trained=budget * epochs, distilled=pruned and kd,
                    scored=0 if last else TRAIN_SIZE - budget)
        rounds.append(RoundRecord(
            round=index, labeled=budget, added=budget - (budgets[index - 1] if index else 0),
            label=label,
            selector=SelectorRecord(selector.arch, accuracy - 0.05, method == "baseline")
            if has_selector else None,
            target=TargetRecord(arch=arch, init="fused" if pruned and fusion else "scratch",
                                kd=pruned and kd, test_accuracy=accuracy,
                                curve=[accuracy * (e + 1) / epochs for e in range(epochs)],
                                curve_epochs=list(range(1, epochs + 1)),
                                train_loss=[1.0 / (e + 1) for e in range(epochs)]),
            macs={**round_macs(forwards, work), "data_selection": spent},
            seconds={"selector_training": 1.0, "target_training": 2.0, "pool_scoring": 0.5,
                     "data_selection": float(index)}))
        synced = sync_every and index >= 1 and index % sync_every == 0 and not last
        spent = charge_selection(spent, "macs", rounds[-1].macs,
                                 rounds[index - 1].macs if synced else None)
    return RunRecord(
        config=config, seed=seed, experiment=ACTIVE_LEARNING, method=method,
        dataset=DatasetRecord(dataset, TRAIN_SIZE, 10000, 10, [3, 32, 32]),
        networks={"target": NetworkRecord(arch, TARGET_PARAMS, TARGET_MACS),
                  "selector": selector},
        rounds=rounds, environment=dict(ENVIRONMENT), seconds_total=10.0)


def fake_pruning_record(seed=0, source="subset", subset=0.2, extrapolation="knn", k=10,
                        weighting="mean", pearson=0.5, reference=True, accuracies=(0.9, 0.8),
                        random_accuracies=(0.88, 0.7), fractions=(0.3, 0.7)) -> RunRecord:
    """A data-pruning run's record: one score round per rate, and a random one when
    ``random_accuracies`` is given; correlations only with ``reference``."""
    record = fake_record(method="baseline", seed=seed)  # the shared envelope
    record.experiment, record.method = DATA_PRUNING, None
    record.config = {**DataPruningConfig().to_dict(), "dataset": record.config["dataset"],
                     "arch": record.config["arch"], "seed": seed,
                     "removed_fractions": list(fractions)}
    subset_run = source == "subset"
    correlated = reference and subset_run
    scores = ScoresRecord(
        score="du", source=source,
        scored=round(subset * TRAIN_SIZE) if subset_run else TRAIN_SIZE, train_size=TRAIN_SIZE,
        scoring_test_accuracy=0.85, macs={"selector_training": 10, "pool_scoring": 1},
        seconds={"selector_training": 1.0, "pool_scoring": 0.1},
        extrapolation=extrapolation if subset_run else None, knn_k=k if subset_run else None,
        knn_weighting=weighting if subset_run and extrapolation == "knn" else None,
        reference=correlated, reference_test_accuracy=0.93 if correlated else None,
        **{key: value if correlated else None for key, value in (
            ("pearson", pearson), ("spearman", pearson - 0.1), ("pearson_scored", 0.8),
            ("spearman_scored", 0.7))})
    scores.label = scoring_label(scores)
    record.scores = scores
    plans = [(fraction, "score", accuracy) for fraction, accuracy in zip(fractions, accuracies)]
    if random_accuracies:
        plans += [(fraction, "random", accuracy)
                  for fraction, accuracy in zip(fractions, random_accuracies)]
    template = record.rounds[0]
    record.rounds = [RoundRecord(
        round=index, labeled=round((1 - fraction) * TRAIN_SIZE),
        added=round((1 - fraction) * TRAIN_SIZE),
        label=scores.label if selection == "score" else RANDOM_LABEL, selector=None,
        target=TargetRecord(**{**vars(template.target), "init": "scratch", "kd": False,
                               "test_accuracy": accuracy, "curve": [accuracy],
                               "curve_epochs": [1]}),
        macs=template.macs, seconds=template.seconds, removed_fraction=fraction,
        selection=selection)
        for index, (fraction, selection, accuracy) in enumerate(plans)]
    return record


def extrapolation_tree(root: Path) -> Path:
    """Two seeds of: kNN k=10 and GNN k=10 at 10 and 20 % with references (scoring only),
    a full run with random pruning, and a kNN run without reference, also with random."""
    for seed in (0, 1):
        for subset in (0.1, 0.2):
            for extrapolation, base in (("knn", 0.4), ("gnn", 0.3)):
                fake_pruning_record(seed, subset=subset, extrapolation=extrapolation,
                                    pearson=base + subset + 0.1 * seed, accuracies=(),
                                    random_accuracies=()).write(
                    root / f"{extrapolation}{subset}_s{seed}")
        fake_pruning_record(seed, source="full", accuracies=(0.92, 0.85 + 0.02 * seed)).write(
            root / f"full_s{seed}")
        fake_pruning_record(seed, reference=False, accuracies=(0.91, 0.80)).write(
            root / f"knn_rates_s{seed}")
    return root


def as_schema1(record: RunRecord) -> dict:
    """``record`` as a run written before the record was typed (schema 1) would hold it:
    no labels, no ``curve_epochs``, none of the settings added since in its config, one
    config for every experiment (data pruning was ``method="prune_data"``, its rounds'
    fractions ``prune_rate``)."""
    payload = record.to_json()
    payload["schema"] = 1
    pruning = payload.pop("experiment") == DATA_PRUNING
    for step in payload["rounds"]:
        del step["label"], step["target"]["curve_epochs"]
        fraction, selection = step.pop("removed_fraction"), step.pop("selection")
        if pruning:
            step.update(prune_rate=fraction, selection=selection)
    config = {**ActiveLearningConfig().to_dict(), **payload["config"]}
    if pruning:
        payload["method"] = config["method"] = "prune_data"
        config["prune_rates"] = config.pop("removed_fractions")
        config["prune_baseline"] = config.pop("random_baseline")
    for key in ("sync_every", "selector_start", "fuse_into", "fusion_variant", "prune_steps",
                "experiment"):
        config.pop(key)
    payload["config"] = config
    if payload["scores"] is None:
        del payload["scores"], payload["scores_file"]
    else:  # nor the keys added to the scores block since
        for key in ("label", "tdds_span", "tdds_span_epochs", "reference_cached",
                    "evaluation_macs"):
            del payload["scores"][key]
    return payload


def write_run(root: Path, relative: str, **options) -> Path:
    """Write ``fake_record(**options)`` as the run folder ``root/relative``."""
    return fake_record(**options).write(Path(root) / relative)


def seeded_network(arch="resnet20", seed=0):
    """``arch`` (pf.models) built from the global generator seeded with ``seed``."""
    torch.manual_seed(seed)
    return build_model(arch)


def pretend_trained(model, seed=1):
    """Perturb every parameter and BN statistic, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
            elif tensor.is_floating_point():
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=g))
    return model


def outside_mask(indices: list, shape: torch.Size) -> torch.Tensor:
    """A mask of the entries a channel-map entry does not cover: what fusion's rest fills."""
    outside = torch.ones(shape, dtype=torch.bool)
    if not len(shape):  # a scalar (BN's batch count) is covered whole
        return ~outside
    outside[torch.meshgrid(*[torch.arange(n) if kept is None else torch.tensor(kept)
                             for kept, n in zip(indices, shape)], indexing="ij")] = False
    return outside
