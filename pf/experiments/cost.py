"""What a run will compute, planned from its config before anything runs.

``planned_cost(config)`` returns, per phase (``pf.experiments.ledger.RUN_PHASES``), the
images a run will process and their MACs, without running it: an active-learning run's
rounds (``pf.experiments.methods.plan_rounds``) or a data-pruning run's plan
(``pf.experiments.data_pruning.plan_data_pruning``), counted by the ledger that the runs'
records use, with the networks' forward MACs from ``pf.flops``. Tests pin every planned
phase to the recorded sum. kNN and GNN extrapolation are not counted (no convolutions).
Time is not predicted: divide by the images/s that ``benchmarks/bench_train.py`` measures.

    planned_cost(make_config("paper"))["total_macs"]

The phases, one by one: docs/internals.md, "pf.experiments.cost".
"""

from __future__ import annotations

import functools

from pf.data import is_streamed, known_sizes
from pf.experiments import DATA_PRUNING
from pf.experiments.config import ActiveLearningConfig, ConfigError, RunConfig
from pf.experiments.data_pruning import plan_data_pruning
from pf.experiments.ledger import (RUN_PHASES, TRAINED_PHASES, Forwards, Work,
                                   charge_selection, pruning_images, pruning_macs, round_images,
                                   round_macs)
from pf.experiments.methods import BASELINE, METHODS, PRUNEFUSE, plan_rounds
from pf.flops import classifier_macs, forward_macs, parameter_count
from pf.models import build_model
from pf.prune import prune_at_init
from pf.select import STRATEGIES
from pf.train import evaluated_epochs

__all__ = ["planned_cost", "selection_macs",
           "protocol_selection_costs"]


@functools.lru_cache(maxsize=None)
def _forward(arch: str, num_classes: int, image_shape: tuple,
             prune_ratio: float | None) -> tuple[int, int]:
    """Forward MACs of ``arch`` (pruned at init at ``prune_ratio`` when given) and of its
    classifier alone, cached: a sweep plans many runs of few networks, and pruning a
    ResNet-56 takes seconds."""
    network = build_model(arch, num_classes, image_shape[0])
    if prune_ratio is not None:  # the widths are the ratio's, whatever the importance or steps
        network = prune_at_init(network, prune_ratio, input_shape=image_shape)[0]
    return forward_macs(network, image_shape), classifier_macs(network)


def _scored_in_pool(config: ActiveLearningConfig, train_size: int, labeled: int) -> int:
    """Images a selection round scores (as ``pf.experiments.active_learning`` does): none
    for a random pick, else the pool or its ``pool_subset``, and the labeled set too for
    metrics that measure the pool against it."""
    strategy = STRATEGIES[config.metric]
    if not strategy.reads_network:
        return 0
    pool = train_size - labeled
    if config.pool_subset:
        pool = min(pool, config.pool_subset)
    return pool + labeled if strategy.labeled_aware else pool


def _active_learning(config: ActiveLearningConfig, train: int, test: int,
                     forwards: Forwards) -> dict:
    """Images and MACs per phase of ``pf.experiments.active_learning.run_active_learning``:
    its rounds' plan (``pf.experiments.methods.plan_rounds``), each round's work counted by
    ``pf.experiments.ledger`` as the run records it, summed."""
    images = dict.fromkeys(RUN_PHASES, 0)
    macs = dict.fromkeys(RUN_PHASES, 0)
    target_epochs, selector_epochs = config.schedule().epochs, config.selector_schedule().epochs
    target_evaluations = len(evaluated_epochs(target_epochs, config.eval_every))
    for step in plan_rounds(config):
        work = Work(selector_trained=step.labeled * selector_epochs if step.trains_selector else 0,
                    selector_tests=1 if step.trains_selector else 0,  # once, at its end
                    target_trained=step.labeled * target_epochs, target_tests=target_evaluations,
                    distilled=step.kd,
                    scored=_scored_in_pool(config, train, step.labeled) if step.picks else 0,
                    test_size=test)
        for phase, count in round_images(work).items():
            images[phase] += count
        for phase, count in round_macs(forwards, work).items():
            macs[phase] += count
    return {"images": images, "macs": macs}


def planned_cost(config: RunConfig, train_size: int | None = None, test_size: int | None = None,
                 num_classes: int | None = None, image_shape: tuple | None = None,
                 reference_reused: bool = False) -> dict:
    """Images processed and MACs per phase (``pf.experiments.ledger.RUN_PHASES``) of
    running ``config``, planned.

    The dataset's sizes come from ``pf.data.known_sizes`` unless given (an
    ``imagefolder:`` dataset needs them given); a streamed dataset's images are
    ``config.image_size`` squares. Returns ``images`` and ``macs`` (dicts per phase),
    ``total_macs``, ``training_images`` (images trained on, every trained phase) and
    ``forward_macs`` (per image: target and selector). ``reference_reused`` plans a data
    pruning run whose reference run is already cached (or computed by an earlier run of the
    same sweep). Raises ``ConfigError`` for an unknown dataset size.
    """
    known = known_sizes(config.dataset)
    if known is None and None in (train_size, test_size, num_classes, image_shape):
        raise ConfigError(f"dataset: the size of {config.dataset!r} is unknown until it is "
                          f"loaded; give train_size, test_size, num_classes and image_shape")
    train, test, classes, shape = (given if given is not None else default for given, default
                                   in zip((train_size, test_size, num_classes, image_shape),
                                          known or (None,) * 4))
    if image_shape is None and is_streamed(config.dataset):
        shape = (3, config.image_size, config.image_size)
    shape = tuple(shape)
    target = _forward(config.arch, classes, shape, None)[0]
    if config.experiment == DATA_PRUNING:
        selector = target
        images = pruning_images(plan_data_pruning(config, train), test, reference_reused)
        plan = {"images": images, "macs": pruning_macs(target, images)}
    else:
        arch, ratio = METHODS[config.method].selector_network(config)
        selector, classifier = _forward(arch, classes, shape, ratio)
        scoring = STRATEGIES[config.metric].scoring_macs(selector, classifier, config.mc_passes)
        plan = _active_learning(config, train, test, Forwards(target, selector, scoring))
    images = plan["images"]
    trained = sum(images[phase] for phase in TRAINED_PHASES)
    return {**plan, "total_macs": sum(plan["macs"].values()), "training_images": trained,
            "forward_macs": {"target": target, "selector": selector}}


def selection_macs(selector_forward: int, budgets: list[int], train_size: int,
                   epochs: int) -> list[int]:
    """Cumulative data-selection MACs at each budget, from the protocol alone.

    Round k trains the selector for ``epochs`` on ``budgets[k]`` images and scores the
    other ``train_size - budgets[k]``; the labeled set at ``budgets[r]`` cost rounds
    0..r-1 (the first set is random and free). A run records the same sums measured.
    """
    forwards = Forwards(target=0, selector=selector_forward, scoring=selector_forward)
    totals, spent = [], 0
    for budget in budgets:
        totals.append(spent)
        work = Work(selector_trained=budget * epochs, scored=train_size - budget)
        spent = charge_selection(spent, "macs", round_macs(forwards, work), None)
    return totals


def protocol_selection_costs(arch: str, prune_ratios: list[float], budgets: list[int],
                             train_size: int, epochs: int, input_shape=(3, 32, 32),
                             num_classes: int = 10, dataset: str = "cifar10") -> list[dict]:
    """Data-selection MACs of the AL baseline and of PruneFuse at each ratio, no training.

    The baseline's selector is the dense ``arch``; PruneFuse's is ``arch`` pruned at init
    (``pf.prune``). Both train ``epochs`` per round and score the rest of the pool, as in
    ``selection_macs`` (an uncertainty metric; k-centers also embeds the labeled set). One
    record per (method, ratio, budget), ready for a DataFrame, with the column names of
    ``pf.analysis.results.collect`` (``dataset`` only labels it; ``seed`` is 0: no
    randomness).
    """
    dense = build_model(arch, num_classes, input_shape[0])
    selectors = [(BASELINE, float("nan"), dense)]
    selectors += [(PRUNEFUSE, ratio, prune_at_init(dense, ratio, input_shape=input_shape)[0])
                  for ratio in prune_ratios]
    # The 2024 method, as the defaults are: no synchronisation, selectors retrained from init.
    defaults = ActiveLearningConfig()
    records = []
    for method, ratio, selector in selectors:
        forward = forward_macs(selector, input_shape)
        costs = selection_macs(forward, budgets, train_size, epochs)
        pruned = method == PRUNEFUSE
        records += [{"dataset": dataset, "method": method, "prune_ratio": ratio, "arch": arch,
                     "metric": defaults.metric, "seed": 0, "round": index,
                     "sync_every": defaults.sync_every if pruned else float("nan"),
                     "selector_start": defaults.selector_start if pruned else float("nan"),
                     "selector_params": parameter_count(selector), "selector_forward_macs": forward,
                     "labeled": budget, "budget_fraction": budget / train_size,
                     "data_selection_macs": cost}
                    for index, (budget, cost) in enumerate(zip(budgets, costs))]
    return records
