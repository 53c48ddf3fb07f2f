"""The active-learning loop: executes the per-round plan of ``pf.experiments.methods``.

Budgets are TOTAL labeled counts. Round 0 labels ``budgets[0]`` random samples (the same
ones for every method at a given seed). ``pf.experiments.methods.plan_rounds`` decides, before
anything trains, what every round does (which selector, how it starts, whether it syncs,
how the target starts, whether it is distilled, how many samples it picks); this module
carries that out: train the selector on the labeled set, train the target at that
budget, and (before the last budget) let the selector score the unlabeled pool and label
the next ``budgets[r+1] - budgets[r]``. The methods, warm starts and the extended
paper's synchronisation (T_sync) are described in ``pf.experiments.methods``.

Every network is re-trained from one seeded initialisation per role, so rounds differ
only in their labeled set (our choice; PruneFuse states it for theta_p), unless
``selector_start="warm"`` or a sync says otherwise. The target is drawn after
``torch.manual_seed(seed)`` (PruneFuse's selector is pruned from it); SVP's proxy from
its own stream, ``role_seed(seed, "proxy")``, never another seed's target.

Each round records what it spent in MACs (``pf.flops``), phase by phase as
``pf.experiments.cost.planned_cost`` plans it: the selector's training, the target's training, pool
scoring (the selector's forward passes over the pool) for the NEXT round's labels, the
pruning of a synced selector (``selector_sync``: seconds; no forward pass over data, so
0 MACs), the test-set evaluations (``evaluation``: after every ``eval_every``-th epoch
and the last of the target, after the last of a selector) and the distillation teacher's
forward passes (``distillation``: one per image the target trains on). Seconds are
recorded for the trainings' steps (``fit``'s ``training_seconds``: the teacher's forwards
are inside, since timing them apart would cost a host sync per step), their test
evaluations together (``evaluation``), the sync and pool scoring (which includes picking,
e.g. greedy k-centers). ``data_selection`` at a budget is the paper's Fig. 3 quantity:
all that chose this labeled set in earlier rounds: selector trainings, syncs and pool
scoring (``SELECTION_PHASES``), and the trainings of the targets that selected (the
baseline's) or that a selector was pruned from (a sync's), each counted once
(``CHARGED_TARGET``: with their teacher's forwards, in MACs as in seconds). Both units
count the same work, and neither counts a test evaluation, which chooses nothing.
"""

from __future__ import annotations

import copy
import hashlib
import time

import torch
from tqdm.auto import tqdm

from pf.experiments import ACTIVE_LEARNING
from pf.experiments.checkpoint import Checkpoint
from pf.experiments.config import ActiveLearningConfig, ConfigError
from pf.experiments.methods import METHODS, plan_rounds
from pf.experiments.record import (NetworkRecord, RoundRecord, SelectorRecord, TargetRecord,
                                   channel_map_file)
from pf.data import Dataset
from pf.flops import classifier_macs, forward_macs, parameter_count, training_macs
from pf.fuse import fuse
from pf.models import build_model
from pf.prune import prune_at_init
from pf.select import MC_PROBS, PROBS_FEATURES, STRATEGIES, select
from pf.train import FitResult, fit, mc_dropout_probs, predict

__all__ = ["SELECTION_PHASES", "CHARGED_TARGET", "role_seed", "initial_networks",
           "run_active_learning"]

# What data selection spends in a round whose selector picks: its selector's phases ...
SELECTION_PHASES = ("selector_training", "selector_sync", "pool_scoring")
# ... and, once, the training of a target it depends on, in each unit the same work: the
# teacher's forwards run inside the training steps, so the seconds already hold them.
CHARGED_TARGET = {"macs": ("target_training", "distillation"), "seconds": ("target_training",)}


def role_seed(seed: int, role: str) -> int:
    """The seed of ``role``'s own random stream in a run of ``seed``: a stable hash of both.

    Streams of different (seed, role) pairs never coincide, as ``seed + 1`` did: the SVP
    proxy of seed s drew exactly what the target of seed s + 1 drew.
    """
    digest = hashlib.sha256(f"pf/{role}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**63


def initial_networks(config: ActiveLearningConfig, dataset: Dataset) -> tuple:
    """The networks a run starts from: ``(target, selector, channel_map)``.

    The target theta is drawn after ``torch.manual_seed(config.seed)``. The selector is
    theta itself (baseline), theta pruned at init (prunefuse, the only one with a channel
    map; None otherwise), or its own architecture (svp's proxy) drawn from
    ``role_seed(seed, "proxy")``, leaving the global generator as theta left it.
    """
    torch.manual_seed(config.seed)
    target = build_model(config.arch, dataset.num_classes, dataset.in_channels, config.dropout)
    method = METHODS[config.method]
    if method.target_selects:
        return target, target, None
    arch, ratio = method.selector_network(config)
    if ratio is not None:
        pruned, channel_map = _prune(config, target, dataset.train.image_shape)
        return target, pruned, channel_map
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(role_seed(config.seed, "proxy"))
        proxy = build_model(arch, dataset.num_classes, dataset.in_channels, config.dropout)
    return target, proxy, None


def _prune(config: ActiveLearningConfig, network, image_shape: tuple) -> tuple:
    """``network`` pruned as ``config`` says (at init, and again at every sync)."""
    return prune_at_init(network, config.prune_ratio, config.importance, image_shape,
                         seed=config.seed, steps=config.prune_steps)


def _train(model, dataset, labeled, schedule, config, seed, desc, progress, **options) -> FitResult:
    return fit(model, dataset, labeled, schedule, device=dataset.train.device, seed=seed,
               progress=progress, desc=desc, **config.fit_options(), **options)


def _pool_subset(config: ActiveLearningConfig, pool: torch.Tensor,
                 round_index: int) -> torch.Tensor:
    """``pool``, or with ``pool_subset`` a seeded random subset of that many of its
    indices (kept in index order), drawn afresh every round from the run's own stream."""
    if not config.pool_subset or config.pool_subset >= len(pool):
        return pool
    generator = torch.Generator().manual_seed(role_seed(config.seed, f"pool/{round_index}"))
    drawn = torch.randperm(len(pool), generator=generator)[:config.pool_subset]
    return pool[drawn.sort().values.to(pool.device)]


def _choose(config: ActiveLearningConfig, selector, dataset: Dataset,
            labeled_mask: torch.Tensor, count: int, round_index: int) -> tuple[torch.Tensor, int]:
    """Indices of the next ``count`` samples to label, and how many images were scored.

    Feature metrics (k-centers, the norm-based ones) use the selector's penultimate
    features; k-centers and ``norm_gs`` also score the labeled set, which they measure
    the pool against. The Monte-Carlo dropout metrics (BALD) sample ``mc_passes``
    classifier passes over the pool's features; BADGE reads its softmax rows and
    features. The sampling metrics, BADGE and the dropout masks draw from a generator
    seeded per round. With ``pool_subset`` every metric that reads the selector scores a
    seeded random subset of the pool (``_pool_subset``) and picks from it.
    """
    pool = (~labeled_mask).nonzero().squeeze(1)
    seed = config.seed * 1000 + round_index
    strategy = STRATEGIES[config.metric]
    if not strategy.reads_network:
        generator = torch.Generator().manual_seed(seed)
        positions = select(config.metric, count, pool_size=len(pool), generator=generator)
        return pool[positions.to(pool.device)], 0
    pool = _pool_subset(config, pool, round_index)
    if strategy.inputs == "features":
        scored = pool
        if strategy.labeled_aware:  # the pool and the labeled set, in index order
            scored = (labeled_mask.clone().index_fill_(0, pool, True)).nonzero().squeeze(1)
        _, features = predict(selector, dataset.train, dataset, scored, features=True,
                              **config.predict_options())
        row = torch.empty(len(labeled_mask), dtype=torch.long, device=scored.device)
        row[scored] = torch.arange(len(scored), device=scored.device)
        pool_features = features[row[pool]]
        labeled_features = features[row[labeled_mask]] if strategy.labeled_aware else None
        # On the features' device: torch.multinomial draws there.
        generator = torch.Generator(device=features.device).manual_seed(seed)
        positions = select(config.metric, count, pool_features=pool_features,
                           labeled_features=labeled_features, generator=generator)
        return pool[positions], len(features)
    if strategy.inputs in (MC_PROBS, PROBS_FEATURES):
        logits, features = predict(selector, dataset.train, dataset, pool, features=True,
                                   **config.predict_options())
        generator = torch.Generator(device=features.device).manual_seed(seed)
        if strategy.inputs == MC_PROBS:
            mc_probs = mc_dropout_probs(selector, features, config.mc_passes, generator)
            return pool[select(config.metric, count, mc_probs=mc_probs)], len(pool)
        positions = select(config.metric, count, probs=torch.softmax(logits, dim=1),
                           pool_features=features, generator=generator)
        return pool[positions], len(pool)
    logits = predict(selector, dataset.train, dataset, pool, **config.predict_options())
    positions = select(config.metric, count, probs=torch.softmax(logits, dim=1))
    return pool[positions], len(pool)


def run_active_learning(config: ActiveLearningConfig, dataset: Dataset,
                        progress: bool | None = None,
                        checkpoint: Checkpoint | None = None) -> dict:
    """Run ``config.method`` over ``config.budgets`` on ``dataset`` (already on its device).

    Returns ``rounds`` (a ``RoundRecord`` per budget), ``selected`` (the indices each
    round added), ``channel_maps`` (PruneFuse: ``{file name: map}``, the one at init and
    one per sync; each round's selector record names its map's file) and ``networks``
    (``NetworkRecord`` of the target and the selector). With a ``checkpoint``
    (``pf.experiments.checkpoint``) the run continues after the last round it saved, and
    saves what the next round needs after every round.
    """
    if config.experiment != ACTIVE_LEARNING:
        raise ConfigError(f"experiment: run_active_learning runs {ACTIVE_LEARNING}, "
                          f"got {config.experiment!r}")
    checkpoint = checkpoint or Checkpoint(None, config.to_dict())
    plan = plan_rounds(config)
    image_shape = dataset.train.image_shape
    device = dataset.train.device
    dense_init, selector_init, channel_map = initial_networks(config, dataset)
    method = METHODS[config.method]
    selector_arch = method.selector_arch(config)
    # every round's label: one recipe, named against today's defaults
    label = method.label(config.to_dict(), ActiveLearningConfig().to_dict())
    networks = {
        "target": NetworkRecord(config.arch, parameter_count(dense_init),
                                forward_macs(dense_init, image_shape)),
        "selector": NetworkRecord(selector_arch, parameter_count(selector_init),
                                  forward_macs(selector_init, image_shape)),
    }
    target_macs, selector_macs = networks["target"].forward_macs, networks["selector"].forward_macs
    # per scored pool image: a forward pass, and a Monte-Carlo strategy's extra classifier
    # passes (every selector of a run has the initial one's widths)
    scoring_macs = STRATEGIES[config.metric].scoring_macs(
        selector_macs, classifier_macs(selector_init), config.mc_passes)
    test_size = len(dataset.test)

    # What one round hands the next; a checkpoint holds exactly this.
    first = torch.randperm(len(dataset.train), generator=torch.Generator().manual_seed(config.seed))
    carried = checkpoint.load() or {
        "added": first[:config.budgets[0]],  # the indices the next round labels
        "labeled_mask": torch.zeros(len(dataset.train), dtype=torch.bool),
        "rounds": [], "selected": [],
        "trained_selector": None, "trained_target": None,
        # The selector's lineage: its initial weights, channel map and the network it was
        # cut from (theta's init, or a synced selector's trained target); replaced at
        # every sync.
        "lineage": {"selector": selector_init, "map_file": channel_map_file(None),
                    "source": dense_init},
        "channel_maps": {channel_map_file(None): channel_map} if channel_map else {},
        "spent": {"macs": 0, "seconds": 0.0},  # data selection so far: what chose the set
    }
    labeled_mask = carried["labeled_mask"].to(device)
    rounds, selected = carried["rounds"], carried["selected"]
    channel_maps, spent, lineage = carried["channel_maps"], carried["spent"], carried["lineage"]
    added = carried["added"].to(device)
    trained_selector, trained_target = carried["trained_selector"], carried["trained_target"]
    bar = tqdm(plan, desc=config.method, disable=None if progress is None else not progress,
               initial=len(rounds))
    for step in plan[len(rounds):]:  # those after the last round a checkpoint holds
        labeled_mask[added] = True
        labeled = labeled_mask.nonzero().squeeze(1)
        selected.append(added.tolist())
        seed = config.seed * 1000 + 10 * step.index
        budget = step.labeled

        sync_seconds = 0.0
        if step.syncs:
            start = time.perf_counter()
            pruned, synced_map = _prune(config, trained_target, image_shape)
            sync_seconds = time.perf_counter() - start
            lineage = {"selector": pruned, "map_file": channel_map_file(step.origin),
                       "source": trained_target}
            channel_maps[lineage["map_file"]] = synced_map
        selector, selector_result = None, None
        if step.trains_selector:
            start_from = trained_selector if step.selector == "warm" else lineage["selector"]
            selector = copy.deepcopy(start_from)
            selector_result = _train(selector, dataset, labeled, config.selector_schedule(), config,
                                     seed, f"selector @ {budget}", progress, record_curve=False)
            trained_selector = selector

        if step.target_init == "fused":  # fuse returns a new network
            base = dense_init if config.fuse_into == "init" else lineage["source"]
            target = fuse(base, selector, channel_maps[lineage["map_file"]], config.rest,
                          seed=seed, variant=config.fusion_variant)
        else:
            target = copy.deepcopy(dense_init)
        teacher = selector if step.kd else None
        target_result = _train(target, dataset, labeled, config.schedule(), config, seed + 1,
                               f"target @ {budget}", progress, teacher=teacher)
        trained_target = target
        if step.selector == "target":
            selector, selector_result = target, target_result

        own = selector_result if step.trains_selector else FitResult()  # the baseline's: none
        seconds = {"selector_training": own.training_seconds,
                   "target_training": target_result.training_seconds,
                   "selector_sync": sync_seconds, "pool_scoring": 0.0,
                   "evaluation": own.evaluation_seconds + target_result.evaluation_seconds,
                   "data_selection": spent["seconds"]}
        macs = {"selector_training": training_macs(selector_macs, own.images_seen),
                "target_training": training_macs(target_macs, target_result.images_seen),
                "selector_sync": 0, "pool_scoring": 0,
                "evaluation": test_size * (selector_macs * len(own.curve)
                                           + target_macs * len(target_result.curve)),
                "distillation": 0 if teacher is None else selector_macs * target_result.images_seen,
                "data_selection": spent["macs"]}
        if step.picks:
            start = time.perf_counter()
            added, scored = _choose(config, selector, dataset, labeled_mask, step.picks,
                                    step.index + 1)
            seconds["pool_scoring"] = time.perf_counter() - start
            macs["pool_scoring"] = scored * scoring_macs
        rounds.append(RoundRecord(
            round=step.index, labeled=budget, added=len(selected[-1]), label=label,
            selector=None if selector_result is None else SelectorRecord(
                arch=selector_arch, test_accuracy=selector_result.test_accuracy,
                is_target=step.selector == "target", start=step.selector,
                origin="init" if step.origin is None else f"round {step.origin} target",
                channel_map=lineage["map_file"] if channel_map else None),
            target=TargetRecord(
                arch=config.arch, init=step.target_init, kd=teacher is not None,
                test_accuracy=target_result.test_accuracy, curve=target_result.curve,
                curve_epochs=target_result.curve_epochs, train_loss=target_result.train_loss),
            macs=macs, seconds=seconds))
        if step.selects:  # what chose the next labels: this round's selector work, and a target
            charged = None if step.charges_target is None else rounds[step.charges_target]
            for unit, phases in (("macs", macs), ("seconds", seconds)):
                spent[unit] += sum(phases[p] for p in SELECTION_PHASES)
                if charged is not None:
                    spent[unit] += sum(getattr(charged, unit)[p] for p in CHARGED_TARGET[unit])
        checkpoint.save(len(rounds), {
            "added": added, "labeled_mask": labeled_mask, "rounds": rounds,
            "selected": selected, "trained_selector": trained_selector,
            "trained_target": trained_target, "lineage": lineage, "channel_maps": channel_maps,
            "spent": spent})
        bar.update()
        bar.set_postfix(acc=f"{target_result.test_accuracy:.3f}")
    bar.close()
    return {"rounds": rounds, "selected": selected, "channel_maps": channel_maps,
            "networks": networks}
