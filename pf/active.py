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
only in their labeled set (our choice; PruneFuse states it for theta_p).

Each round records what it spent, in MACs (``pf.flops``) and seconds: the selector's
training, the target's training, and pool scoring (the selector's forward passes over
the pool; the seconds include picking, e.g. greedy k-centers) for the NEXT round's
labels. ``data_selection`` at a budget is the paper's Fig. 3 quantity: the selector
training and pool scoring of every earlier round, i.e. all that chose this labeled set.
"""

from __future__ import annotations

import copy
import time

import torch
from tqdm.auto import tqdm

from pf.config import METHODS, Config, ConfigError
from pf.data import Dataset
from pf.flops import forward_macs, parameter_count, training_macs
from pf.fuse import fuse
from pf.models import build_model
from pf.prune import prune_at_init
from pf.select import FEATURE_METRICS, LABELED_AWARE_METRICS, select
from pf.train import FitResult, fit, predict

__all__ = ["run_active_learning"]


def _selector_init(config: Config, dense_init: torch.nn.Module, dataset: Dataset):
    """The selector's initial network and, for PruneFuse, the channel map (else None)."""
    if config.method == "baseline":
        return dense_init, None
    if config.method == "svp":
        torch.manual_seed(config.seed + 1)  # the proxy's own draw, distinct from theta's
        return build_model(config.proxy_arch, dataset.num_classes, dataset.in_channels), None
    return prune_at_init(dense_init, config.prune_ratio, config.importance,
                         tuple(dataset.train.images.shape[1:]), seed=config.seed)


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
    if config.metric in FEATURE_METRICS:
        with_labeled = config.metric in LABELED_AWARE_METRICS
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
    torch.manual_seed(config.seed)
    dense_init = build_model(config.arch, dataset.num_classes, dataset.in_channels)
    selector_init, channel_map = _selector_init(config, dense_init, dataset)
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
                "pool_scoring": 0, "data_selection": spent["macs"]}
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
