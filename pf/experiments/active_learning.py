"""The active-learning loop: executes the per-round plan of ``pf.experiments.methods``.

``run_active_learning(config, dataset)`` carries out what ``plan_rounds`` decided: round 0
labels ``budgets[0]`` random samples (budgets are TOTAL labeled counts); each round trains
the selector on the labeled set, trains the target at that budget, and (before the last
budget) lets the selector score the unlabeled pool and label the next
``budgets[r+1] - budgets[r]``, recording what every phase spent in MACs and seconds.
``initial_networks`` draws the networks a run starts from, one seeded draw per role.

Why it works this way: docs/internals.md, "pf.experiments.active_learning".
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from pf.experiments import ACTIVE_LEARNING
from pf.experiments.checkpoint import Checkpoint
from pf.experiments.config import ActiveLearningConfig, ConfigError
from pf.experiments.ledger import Forwards, Work, charge_selection, round_macs
from pf.experiments.methods import METHODS, Round, plan_rounds
from pf.experiments.record import (NetworkRecord, RoundRecord, SelectorRecord, TargetRecord,
                                   channel_map_file, cpu_load)
from pf.data import Dataset
from pf.flops import classifier_macs, forward_macs, parameter_count
from pf.fuse import fuse
from pf.models import build_model
from pf.prune import prune_at_init
from pf.select import MC_PROBS, PROBS_FEATURES, STRATEGIES, select
from pf.train import FitResult, fit, mc_dropout_probs, predict

__all__ = ["RoundState", "role_seed", "initial_networks", "run_active_learning"]


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


@dataclass
class RoundState:
    """What one round hands the next; a checkpoint holds exactly this (``vars``)."""

    added: torch.Tensor  # the indices the next round labels
    labeled_mask: torch.Tensor
    rounds: list  # a RoundRecord per finished round
    selected: list  # the indices each finished round added
    trained_selector: nn.Module | None  # what a warm selector starts from
    trained_target: nn.Module | None  # what a sync prunes
    # The selector's lineage: its initial weights, its channel map's file and the network
    # it was cut from (theta's init, or a synced selector's trained target); replaced at
    # every sync.
    lineage: dict
    channel_maps: dict  # PruneFuse: {file name: map}, the one at init and one per sync
    spent: dict  # data selection so far, {"macs", "seconds"}: what chose the labeled set

    def label_added(self) -> torch.Tensor:
        """Label the indices the last round picked (round 0: the random first set); the
        labeled set, in index order."""
        self.labeled_mask[self.added] = True
        self.selected.append(self.added.tolist())
        return self.labeled_mask.nonzero().squeeze(1)

    def charge(self, target_round: int | None) -> None:
        """Add to ``spent`` what chose the next labels: the last round's selector work, and
        the training of round ``target_round``'s target when the selector depends on it
        (``pf.experiments.ledger.charge_selection``)."""
        charged = None if target_round is None else self.rounds[target_round]
        for unit in self.spent:
            self.spent[unit] = charge_selection(self.spent[unit], unit,
                                                getattr(self.rounds[-1], unit),
                                                None if charged is None else getattr(charged, unit))


@dataclass(frozen=True)
class _Run:
    """What every round of one run reads: its config, data, initial networks and costs."""

    config: ActiveLearningConfig
    dataset: Dataset
    progress: bool | None
    dense_init: nn.Module  # theta at initialisation
    selector_init: nn.Module
    channel_map: dict | None  # theta -> theta_p at init (PruneFuse)
    networks: dict  # NetworkRecord of the target and the selector
    forwards: Forwards
    label: str  # every round's label: one recipe, named against today's defaults

    @classmethod
    def start(cls, config: ActiveLearningConfig, dataset: Dataset,
              progress: bool | None) -> _Run:
        dense_init, selector_init, channel_map = initial_networks(config, dataset)
        image_shape = dataset.train.image_shape
        method = METHODS[config.method]
        networks = {
            "target": NetworkRecord(config.arch, parameter_count(dense_init),
                                    forward_macs(dense_init, image_shape)),
            "selector": NetworkRecord(method.selector_arch(config), parameter_count(selector_init),
                                      forward_macs(selector_init, image_shape)),
        }
        selector_macs = networks["selector"].forward_macs
        # per scored pool image: a forward pass, and a Monte-Carlo strategy's extra
        # classifier passes (every selector of a run has the initial one's widths)
        scoring = STRATEGIES[config.metric].scoring_macs(
            selector_macs, classifier_macs(selector_init), config.mc_passes)
        forwards = Forwards(networks["target"].forward_macs, selector_macs, scoring)
        label = method.label(config.to_dict(), ActiveLearningConfig().to_dict())
        return cls(config, dataset, progress, dense_init, selector_init, channel_map, networks,
                   forwards, label)

    def first_state(self) -> RoundState:
        """The state before round 0: ``budgets[0]`` random indices to label."""
        train_size = len(self.dataset.train)
        generator = torch.Generator().manual_seed(self.config.seed)
        first = torch.randperm(train_size, generator=generator)
        return RoundState(
            added=first[:self.config.budgets[0]],
            labeled_mask=torch.zeros(train_size, dtype=torch.bool), rounds=[], selected=[],
            trained_selector=None, trained_target=None,
            lineage={"selector": self.selector_init, "map_file": channel_map_file(None),
                     "source": self.dense_init},
            channel_maps={channel_map_file(None): self.channel_map} if self.channel_map else {},
            spent={"macs": 0, "seconds": 0.0})

    def train(self, model, labeled, schedule, seed, desc, **options) -> FitResult:
        return fit(model, self.dataset, labeled, schedule, device=self.dataset.train.device,
                   seed=seed, progress=self.progress, desc=desc, **self.config.fit_options(),
                   **options)


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
    run = _Run.start(config, dataset, progress)
    saved = checkpoint.load()
    state = run.first_state() if saved is None else RoundState(**saved)
    state.labeled_mask, state.added = (state.labeled_mask.to(dataset.train.device),
                                       state.added.to(dataset.train.device))
    plan = plan_rounds(config)
    bar = tqdm(plan, desc=config.method, disable=None if progress is None else not progress,
               initial=len(state.rounds))
    for step in plan[len(state.rounds):]:  # those after the last round a checkpoint holds
        labeled = state.label_added()
        seed = config.seed * 1000 + 10 * step.index
        sync_seconds = _sync(run, state, step)
        selector, selector_result = _train_selector(run, state, step, labeled, seed)
        teacher = selector if step.kd else None
        target, target_result = _train_target(run, state, step, selector, teacher, labeled, seed)
        if step.selector == "target":
            selector, selector_result = target, target_result
        scored, scoring_seconds = _pick(run, state, step, selector)
        state.rounds.append(_round_record(run, state, step, selector_result, target_result,
                                          teacher is not None, scored,
                                          {"selector_sync": sync_seconds,
                                           "pool_scoring": scoring_seconds}))
        if step.selects:
            state.charge(step.charges_target)
        checkpoint.save(len(state.rounds), vars(state))
        bar.update()
        bar.set_postfix(acc=f"{target_result.test_accuracy:.3f}")
    bar.close()
    return {"rounds": state.rounds, "selected": state.selected,
            "channel_maps": state.channel_maps, "networks": run.networks}


def _sync(run: _Run, state: RoundState, step: Round) -> float:
    """At a sync, prune the last trained target into the selector's new lineage; seconds."""
    if not step.syncs:
        return 0.0
    start = time.perf_counter()
    pruned, synced_map = _prune(run.config, state.trained_target, run.dataset.train.image_shape)
    seconds = time.perf_counter() - start
    state.lineage = {"selector": pruned, "map_file": channel_map_file(step.origin),
                     "source": state.trained_target}
    state.channel_maps[state.lineage["map_file"]] = synced_map
    return seconds


def _train_selector(run: _Run, state: RoundState, step: Round, labeled: torch.Tensor,
                    seed: int) -> tuple:
    """The round's own selector, trained from its lineage (or warm, from the last one)."""
    if not step.trains_selector:
        return None, None
    start_from = state.trained_selector if step.selector == "warm" else state.lineage["selector"]
    selector = copy.deepcopy(start_from)
    result = run.train(selector, labeled, run.config.selector_schedule(), seed,
                       f"selector @ {step.labeled}", record_curve=False)
    state.trained_selector = selector
    return selector, result


def _train_target(run: _Run, state: RoundState, step: Round, selector, teacher,
                  labeled: torch.Tensor, seed: int) -> tuple:
    """The round's target: fused from the selector or theta's init, distilled from
    ``teacher`` when there is one."""
    config = run.config
    if step.target_init == "fused":  # fuse returns a new network
        base = run.dense_init if config.fuse_into == "init" else state.lineage["source"]
        target = fuse(base, selector, state.channel_maps[state.lineage["map_file"]], config.rest,
                      seed=seed, variant=config.fusion_variant)
    else:
        target = copy.deepcopy(run.dense_init)
    result = run.train(target, labeled, config.schedule(), seed + 1, f"target @ {step.labeled}",
                       teacher=teacher)
    state.trained_target = target
    return target, result


def _pick(run: _Run, state: RoundState, step: Round, selector) -> tuple[int, float]:
    """Let the selector choose the next round's labels (into ``state.added``), when the
    plan says this round picks; the pool images scored and the seconds it took."""
    if not step.picks:
        return 0, 0.0
    start = time.perf_counter()
    state.added, scored = _choose(run.config, selector, run.dataset, state.labeled_mask,
                                  step.picks, step.index + 1)
    return scored, time.perf_counter() - start


def _round_record(run: _Run, state: RoundState, step: Round, selector_result: FitResult | None,
                  target_result: FitResult, distilled: bool, scored: int,
                  seconds: dict) -> RoundRecord:
    """The round's record: its selector and target, its phases' MACs (``pf.experiments.
    ledger``) and seconds (``seconds`` holds the sync's and the pool scoring's), with the
    data selection that chose its labeled set."""
    own = selector_result if step.trains_selector else FitResult()  # the baseline's: none
    work = Work(selector_trained=own.images_seen, selector_tests=len(own.curve),
                target_trained=target_result.images_seen, target_tests=len(target_result.curve),
                distilled=distilled, scored=scored, test_size=len(run.dataset.test))
    seconds = {"selector_training": own.training_seconds,
               "target_training": target_result.training_seconds, **seconds,
               "evaluation": own.evaluation_seconds + target_result.evaluation_seconds,
               "data_selection": state.spent["seconds"]}
    selector = None if selector_result is None else SelectorRecord(
        arch=run.networks["selector"].arch, test_accuracy=selector_result.test_accuracy,
        is_target=step.selector == "target", start=step.selector,
        origin="init" if step.origin is None else f"round {step.origin} target",
        channel_map=state.lineage["map_file"] if run.channel_map else None)
    return RoundRecord(
        round=step.index, labeled=step.labeled, added=len(state.selected[-1]), label=run.label,
        selector=selector,
        target=TargetRecord(
            arch=run.config.arch, init=step.target_init, kd=distilled,
            test_accuracy=target_result.test_accuracy, curve=target_result.curve,
            curve_epochs=target_result.curve_epochs, train_loss=target_result.train_loss),
        macs={**round_macs(run.forwards, work), "data_selection": state.spent["macs"]},
        seconds=seconds, cpu_load=cpu_load())
