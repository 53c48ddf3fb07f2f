"""The active-learning loop: baseline, SVP and PruneFuse over a schedule of budgets.

Budgets are TOTAL labeled counts. Round 0 labels ``budgets[0]`` random samples (the same
ones for every method at a given seed). Every round then trains the selector on the
labeled set, trains the target at that budget, and (before the last budget) lets the
selector score the unlabeled pool and label the next ``budgets[r+1] - budgets[r]``:

- ``baseline``: the dense target architecture selects. The target trained at a budget
  IS the selector of that round (SVP's "active learning baseline"), so nothing is
  trained twice.
- ``svp``: a smaller proxy architecture (``proxy_arch``) selects (Coleman et al., 2020).
- ``prunefuse``: theta_p = prune_at_init(theta, p) selects, retrained every round from
  theta_p's initialisation; at each budget the trained theta_p* is fused into theta's
  initialisation (``rest`` says what fills the remaining weights) and trained with
  distillation from theta_p* (Kousar et al.). ``fusion=False`` trains the target from
  theta instead; ``kd=False`` drops the distillation.

With ``metric="random"`` only PruneFuse still trains its selector (fusion needs it).
Every network is re-trained from one seeded initialisation per role, so rounds differ
only in their labeled set (our choice; PruneFuse states it for theta_p). The target is
drawn after ``torch.manual_seed(seed)`` (PruneFuse's selector is pruned from it); SVP's
proxy from its own stream, ``role_seed(seed, "proxy")``, never another seed's target.

Each round records what it spent in MACs (``pf.flops``), phase by phase as
``pf.cost.planned_cost`` plans it: the selector's training, the target's training, pool
scoring (the selector's forward passes over the pool) for the NEXT round's labels, the
test-set evaluations (``evaluation``: after every epoch of the target, after the last of
a selector) and the distillation teacher's forward passes (``distillation``: one per
image the target trains on). Seconds are recorded for the phases with a clock of their
own: the trainings (whole ``fit`` calls, so their evaluations and teacher forwards are
inside) and pool scoring (which includes picking, e.g. greedy k-centers). Evaluation and
distillation are counted in MACs only: the teacher's forwards run inside the training
step, and timing them apart would cost a host sync per step. ``data_selection`` at a
budget is the paper's Fig. 3 quantity: the selector training and pool scoring of every
earlier round, i.e. all that chose this labeled set.
"""

from __future__ import annotations

import copy
import hashlib
import time

import torch
from tqdm.auto import tqdm

from pf.config import METHODS, Config, ConfigError
from pf.data import Dataset
from pf.flops import forward_macs, parameter_count, training_macs
from pf.fuse import fuse
from pf.models import build_model
from pf.prune import prune_at_init
from pf.select import STRATEGIES, select
from pf.train import FitResult, fit, predict

__all__ = ["role_seed", "initial_networks", "run_active_learning"]


def role_seed(seed: int, role: str) -> int:
    """The seed of ``role``'s own random stream in a run of ``seed``: a stable hash of both.

    Streams of different (seed, role) pairs never coincide, as ``seed + 1`` did: the SVP
    proxy of seed s drew exactly what the target of seed s + 1 drew.
    """
    digest = hashlib.sha256(f"pf/{role}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**63


def initial_networks(config: Config, dataset: Dataset) -> tuple:
    """The networks a run starts from: ``(target, selector, channel_map)``.

    The target theta is drawn after ``torch.manual_seed(config.seed)``. The selector is
    theta itself (baseline), ``proxy_arch`` drawn from ``role_seed(seed, "proxy")`` and
    leaving the global generator as theta left it (svp), or theta pruned at init
    (prunefuse, the only one with a channel map; None otherwise).
    """
    torch.manual_seed(config.seed)
    target = build_model(config.arch, dataset.num_classes, dataset.in_channels)
    if config.method == "baseline":
        return target, target, None
    if config.method == "svp":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(role_seed(config.seed, "proxy"))
            proxy = build_model(config.proxy_arch, dataset.num_classes, dataset.in_channels)
        return target, proxy, None
    pruned, channel_map = prune_at_init(target, config.prune_ratio, config.importance,
                                        tuple(dataset.train.images.shape[1:]), seed=config.seed)
    return target, pruned, channel_map


def _train(model, dataset, labeled, schedule, config, seed, desc, progress, **options) -> FitResult:
    return fit(model, dataset, labeled, schedule, device=dataset.train.images.device, seed=seed,
               progress=progress, desc=desc, **config.fit_options(), **options)


def _choose(config: Config, selector, dataset: Dataset, labeled_mask: torch.Tensor, count: int,
            round_index: int) -> tuple[torch.Tensor, int]:
    """Indices of the next ``count`` samples to label, and how many images were scored.

    Feature metrics (k-centers, the norm-based ones) use the selector's penultimate
    features; k-centers and ``norm_gs`` also score the labeled set, which they measure
    the pool against. The sampling metrics draw from a generator seeded per round.
    """
    pool = (~labeled_mask).nonzero().squeeze(1)
    seed = config.seed * 1000 + round_index
    if config.metric == "random":
        generator = torch.Generator().manual_seed(seed)
        positions = select("random", count, pool_size=len(pool), generator=generator)
        return pool[positions.to(pool.device)], 0
    if STRATEGIES[config.metric].inputs == "features":
        with_labeled = STRATEGIES[config.metric].labeled_aware
        _, features = predict(selector, dataset.train, dataset, None if with_labeled else pool,
                              batch_size=config.eval_batch_size, precision=config.precision,
                              features=True)
        pool_features, labeled_features = ((features[pool], features[labeled_mask])
                                           if with_labeled else (features, None))
        # On the features' device: torch.multinomial draws there.
        generator = torch.Generator(device=features.device).manual_seed(seed)
        positions = select(config.metric, count, pool_features=pool_features,
                           labeled_features=labeled_features, generator=generator)
        return pool[positions], len(features)
    logits = predict(selector, dataset.train, dataset, pool, batch_size=config.eval_batch_size,
                     precision=config.precision)
    positions = select(config.metric, count, probs=torch.softmax(logits, dim=1))
    return pool[positions], len(pool)


def run_active_learning(config: Config, dataset: Dataset, progress: bool | None = None) -> dict:
    """Run ``config.method`` over ``config.budgets`` on ``dataset`` (already on its device).

    Returns ``rounds`` (one record per budget), ``selected`` (the indices each round
    added), ``channel_map`` (PruneFuse only) and the networks' sizes and forward MACs.
    """
    if config.method not in METHODS:
        raise ConfigError(f"method: the active-learning loop runs {', '.join(METHODS)}, not "
                          f"{config.method} (pf.experiment.run_experiment runs every method)")
    image_shape = tuple(dataset.train.images.shape[1:])
    device = dataset.train.images.device
    dense_init, selector_init, channel_map = initial_networks(config, dataset)
    uses_selector = config.metric != "random" or config.method == "prunefuse"
    selector_arch = {"baseline": config.arch, "svp": config.proxy_arch,
                     "prunefuse": f"{config.arch}@p={config.prune_ratio}"}[config.method]
    networks = {
        "target": {"arch": config.arch, "params": parameter_count(dense_init),
                   "forward_macs": forward_macs(dense_init, image_shape)},
        "selector": {"arch": selector_arch, "params": parameter_count(selector_init),
                     "forward_macs": forward_macs(selector_init, image_shape)},
    }
    target_macs, selector_macs = (networks[k]["forward_macs"] for k in ("target", "selector"))
    test_size = len(dataset.test)

    first = torch.randperm(len(dataset.train), generator=torch.Generator().manual_seed(config.seed))
    added = first[:config.budgets[0]].to(device)
    labeled_mask = torch.zeros(len(dataset.train), dtype=torch.bool, device=device)
    rounds, selected = [], []
    spent = {"macs": 0, "seconds": 0.0}  # data selection so far: what chose the current set
    bar = tqdm(config.budgets, desc=config.method,
               disable=None if progress is None else not progress)
    for index, budget in enumerate(bar):
        labeled_mask[added] = True
        labeled = labeled_mask.nonzero().squeeze(1)
        selected.append(added.tolist())
        last = index == len(config.budgets) - 1
        seed = config.seed * 1000 + 10 * index

        selector, selector_result = None, None
        needs_selector = uses_selector and (config.method == "prunefuse" or not last)
        if needs_selector and config.method != "baseline":
            selector = copy.deepcopy(selector_init)
            selector_result = _train(selector, dataset, labeled, config.selector_schedule(), config,
                                     seed, f"selector @ {budget}", progress, record_curve=False)
        # Counted before the baseline's target becomes its selector below: evaluated once.
        selector_evaluations = 0 if selector_result is None else len(selector_result.curve)

        target = copy.deepcopy(dense_init)
        init, teacher = "scratch", None
        if config.method == "prunefuse":
            if config.fusion:
                target, init = (fuse(dense_init, selector, channel_map, config.rest, seed=seed),
                                "fused")
            teacher = selector if config.kd else None
        target_result = _train(target, dataset, labeled, config.schedule(), config, seed + 1,
                               f"target @ {budget}", progress, teacher=teacher)
        if config.method == "baseline" and needs_selector:
            selector, selector_result = target, target_result

        seconds = {"selector_training": 0.0 if selector_result is None else selector_result.seconds,
                   "target_training": target_result.seconds, "pool_scoring": 0.0,
                   "data_selection": spent["seconds"]}
        macs = {"selector_training": 0 if selector_result is None else training_macs(
                    selector_macs, selector_result.images_seen),
                "target_training": training_macs(target_macs, target_result.images_seen),
                "pool_scoring": 0,
                "evaluation": test_size * (selector_macs * selector_evaluations
                                           + target_macs * len(target_result.curve)),
                "distillation": 0 if teacher is None else selector_macs * target_result.images_seen,
                "data_selection": spent["macs"]}
        if not last:
            start = time.perf_counter()
            count = config.budgets[index + 1] - budget
            added, scored = _choose(config, selector, dataset, labeled_mask, count, index + 1)
            seconds["pool_scoring"] = time.perf_counter() - start
            macs["pool_scoring"] = selector_macs * scored
            if config.metric != "random":  # a random pick uses no selector, whatever was trained
                for unit, phases in (("macs", macs), ("seconds", seconds)):
                    spent[unit] += phases["selector_training"] + phases["pool_scoring"]
        rounds.append({
            "round": index, "labeled": budget, "added": len(selected[-1]),
            "selector": None if selector_result is None else {
                "arch": selector_arch, "test_accuracy": selector_result.test_accuracy,
                "is_target": config.method == "baseline"},
            "target": {"arch": config.arch, "init": init, "kd": teacher is not None,
                       "test_accuracy": target_result.test_accuracy,
                       "curve": target_result.curve, "train_loss": target_result.train_loss},
            "macs": macs, "seconds": seconds})
        bar.set_postfix(acc=f"{target_result.test_accuracy:.3f}")
    return {"rounds": rounds, "selected": selected, "channel_map": channel_map,
            "networks": networks}
