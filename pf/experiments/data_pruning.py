"""Data pruning by score extrapolation (Schmidt, Dhungel et al., arXiv 2506.09010).

The other experiment ``pf run`` knows (``experiment=data_pruning``): score every training
sample from a scoring run's training dynamics (``pf.scores``), on the whole training set
(``score_source="full"``) or on a subset and extrapolated to the rest (``"subset"``,
``pf.extrapolate``), then for every fraction in ``removed_fractions`` keep the
highest-scored samples and train the target from scratch on them. ``run_data_pruning``
runs the experiment; ``score_training_set`` does the scoring.

    run = run_data_pruning(make_config("demo", {"experiment": "data_pruning"}), dataset)

Why it works this way: docs/internals.md, "pf.experiments.data_pruning".
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from pf.coresets import CORESETS, ccs_keep, moderate_keep
from pf.data import Dataset
from pf.experiments import DATA_PRUNING
from pf.experiments.checkpoint import Checkpoint
from pf.experiments.config import ConfigError, DataPruningConfig, check_sizes
from pf.experiments.reference_cache import load_reference, save_reference
from pf.experiments.record import (RANDOM_LABEL, NetworkRecord, RoundRecord, ScoresRecord,
                                   TargetRecord, cpu_load, scoring_label)
from pf.extrapolate import EXTRAPOLATORS, pearson, spearman
from pf.flops import forward_macs, parameter_count, training_macs
from pf.models import build_model
from pf.select import pick, random_selection
from pf.scores import SCORES, DynamicsRecorder, tdds_epochs
from pf.train import FitResult, evaluated_epochs, fit, predict

__all__ = ["keep_count", "keep_highest", "keep_random", "Retraining", "PruningPlan",
           "plan_data_pruning", "scored_epochs", "score_from_dynamics", "score_training_set",
           "run_data_pruning"]

# Offsets of config.seed * 1000 per random draw, so that no two draws share a stream.
(SUBSET_SEED, RANDOM_KEEP_SEED, SCORING_SEED, REFERENCE_SEED, RETRAIN_SEED, GNN_SEED,
 CCS_SEED) = range(1, 8)


# ---------------------------------------------------------------------------------------
# Which samples to keep
# ---------------------------------------------------------------------------------------


def keep_count(fraction: float, num_samples: int) -> int:
    """How many of ``num_samples`` survive removing ``fraction``: round((1 - fraction) * N).

    Halves round up; the count is clamped to 1..N. Rounding, not truncation: (1 - 0.9) *
    10 is 0.999... in floating point, and must keep 1.
    """
    return min(num_samples, max(1, math.floor((1 - fraction) * num_samples + 0.5)))


def keep_highest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices (ascending) of the ``count`` highest ``scores``; a tie goes to the lower index.

    ``scores`` is (N,) and must be free of NaN (every sample scored).
    """
    if scores.ndim != 1 or not 0 <= count <= len(scores):
        raise ValueError(f"count: need 0 <= count <= {len(scores)} for (N,) scores, got {count}")
    if torch.isnan(scores).any():
        raise ValueError("scores: NaN present; every sample needs a score")
    return pick(scores, count, largest=True).sort().values


def keep_random(num_samples: int, count: int, seed: int) -> torch.Tensor:
    """Indices (ascending) of ``count`` samples drawn at random: a prefix of a seeded permutation.

    The same seed gives nested sets for increasing counts.
    """
    return random_selection(num_samples, count, torch.Generator().manual_seed(seed)).sort().values


# ---------------------------------------------------------------------------------------
# The plan: what the run will train, embed and keep
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retraining:
    """One retraining: the fraction removed, how its kept set is chosen
    (``DataPruningConfig.selections``) and how many samples it keeps."""

    removed_fraction: float
    selection: str
    kept: int


@dataclass(frozen=True)
class PruningPlan:
    """What a data-pruning run does, read by the run itself and by the cost planner
    (``pf.experiments.cost``): the samples its scoring run trains on (``scored``, for
    ``scoring_epochs``), the samples the scoring network embeds (``embedded``: 0 when
    nothing reads features), whether a full reference run scores every sample too
    (``reference``), and its retrainings in order, each ``epochs`` long with
    ``evaluations`` test passes."""

    train_size: int
    scored: int
    scoring_epochs: int
    embedded: int
    reference: bool
    retrainings: tuple[Retraining, ...]
    epochs: int
    evaluations: int


def plan_data_pruning(config: DataPruningConfig, train_size: int) -> PruningPlan:
    """The plan of running ``config`` on ``train_size`` training samples."""
    subset = config.score_source == "subset"
    epochs = config.schedule().epochs
    return PruningPlan(
        train_size=train_size,
        scored=config.subset_size(train_size) if subset else train_size,
        scoring_epochs=config.score_schedule().epochs,
        embedded=train_size if config.needs_features() else 0,
        reference=config.needs_reference(),
        retrainings=tuple(Retraining(float(fraction), selection, keep_count(fraction, train_size))
                          for fraction in config.removed_fractions
                          for selection in config.selections()),
        epochs=epochs, evaluations=len(evaluated_epochs(epochs, config.eval_every)))


# ---------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------


def scored_epochs(config: DataPruningConfig) -> range | None:
    """The epochs of the scoring run that ``config.score`` reads: TDDS's span
    (``tdds_span``, ``tdds_span_epochs``; ``pf.scores.tdds_epochs``), None (all) otherwise."""
    if not SCORES[config.score].spanned:
        return None
    return tdds_epochs(config.score_schedule().epochs, config.tdds_span, config.tdds_span_epochs)


def score_from_dynamics(name: str, recorder: DynamicsRecorder) -> torch.Tensor:
    """The score ``name`` (du | tdds | el2n | forgetting) of every sample of a recorded run.

    ``recorder`` must keep what the score reads (``DynamicsRecorder.for_score(name)``):
    DU its ``true_probs``, TDDS its ``shifts`` (over the span it recorded), EL2N its
    per-epoch ``el2n`` (averaged over every recorded epoch), forgetting its ``correct``.
    (N,) float32, NaN for samples the run did not train on. High = keep, for all four.
    """
    if name not in SCORES:
        raise ValueError(f"score: unknown {name!r}; choose one of {', '.join(SCORES)}")
    score = SCORES[name]
    record = getattr(recorder, score.record)
    if record is None:
        raise ValueError(f"recorder: {name} needs the {score.record!r} record; "
                         f"record with DynamicsRecorder.for_score({name!r})")
    return score.compute(record)


def _recorded_run(config: DataPruningConfig, dataset: Dataset, init: torch.nn.Module,
                  indices: torch.Tensor, seed: int, desc: str,
                  progress: bool | None) -> tuple[torch.nn.Module, DynamicsRecorder, FitResult]:
    """Train a copy of ``init`` on ``indices`` with the scoring schedule, recording dynamics."""
    model = copy.deepcopy(init)
    # Only what the score reads, over the epochs it reads (pf.scores lists the memory).
    recorder = DynamicsRecorder.for_score(config.score, epochs=scored_epochs(config))
    result = fit(model, dataset, indices, config.score_schedule(),
                 device=dataset.train.device, seed=seed, record_curve=False,
                 progress=progress, desc=desc, recorder=recorder, **config.fit_options())
    return model, recorder, result


def _reference_run(config: DataPruningConfig, dataset: Dataset, init: torch.nn.Module,
                   progress: bool | None) -> tuple[torch.Tensor, dict, bool]:
    """Full-run scores of every training sample; the run's test accuracy, images trained
    and seconds; and whether both came from ``config.reference_cache`` (else they are
    computed now, and kept there when a cache is set)."""
    device = dataset.train.device
    num_samples = len(dataset.train)
    cached = load_reference(config, device.type, num_samples)
    if cached is not None:
        scores, run = cached
        return scores.to(device), run, True
    everything = torch.arange(num_samples, device=device)
    _, recorder, result = _recorded_run(config, dataset, init, everything,
                                        config.seed * 1000 + REFERENCE_SEED,
                                        f"reference {config.score}", progress)
    scores = score_from_dynamics(config.score, recorder)
    run = {"test_accuracy": result.test_accuracy, "images_seen": result.images_seen,
           "seconds": result.training_seconds}
    save_reference(config, device.type, num_samples, scores, run)
    return scores, run, False


def _synchronized_seconds(start: float, device: torch.device) -> float:
    """Seconds since ``start``, once the device's queued kernels have finished (CUDA runs
    them asynchronously: time them whole)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _correlations(estimate: torch.Tensor, truth: torch.Tensor) -> dict:
    """Pearson and Spearman of two (n,) score vectors; None where undefined (n < 2, constant)."""
    if len(estimate) < 2:
        return {"pearson": None, "spearman": None}
    values = {"pearson": pearson(estimate, truth), "spearman": spearman(estimate, truth)}
    return {key: None if math.isnan(value) else value for key, value in values.items()}


def score_training_set(config: DataPruningConfig, dataset: Dataset, init: torch.nn.Module,
                       progress: bool | None = None) -> dict:
    """Score every training sample as ``config`` says (see the module docstring).

    ``init`` is the network the scoring run (and the reference run) copy. Returns
    ``scores`` (N,) float32 on the data's device; ``scored_indices`` (the subset the run
    trained on; all samples for ``score_source="full"``); ``reference`` (full-run scores,
    or None); ``summary``, the ``ScoresRecord`` the run record stores; ``features`` (the
    scoring network's embedding of every sample, for a coreset rule that reads it, else
    None); and (MACs, seconds) of the two selection phases (``selector_training``,
    ``pool_scoring``) as a score round spends them (``score_costs``) and as a rule reading
    the features does (``feature_costs``).
    With ``config.reference_cache`` set, ``init`` must be ``config.arch`` initialised at
    ``config.seed`` (as ``run_data_pruning`` builds it): the cache is keyed on the config,
    not on the weights.
    """
    device = dataset.train.device
    num_samples = len(dataset.train)
    plan = plan_data_pruning(config, num_samples)
    seed = config.seed * 1000
    image_shape = dataset.train.image_shape
    forward = forward_macs(init, image_shape)
    subset = config.score_source == "subset"
    if subset:
        generator = torch.Generator().manual_seed(seed + SUBSET_SEED)
        scored = torch.randperm(num_samples, generator=generator)[:plan.scored]
        scored = scored.sort().values.to(device)
    else:
        scored = torch.arange(num_samples, device=device)

    model, recorder, run = _recorded_run(config, dataset, init, scored, seed + SCORING_SEED,
                                         f"score {config.score}", progress)
    start = time.perf_counter()
    raw = score_from_dynamics(config.score, recorder)
    del recorder  # (epochs, N[, C]): free it before the reference run allocates its own
    embeddings, embedding_seconds = None, 0.0
    if plan.embedded:
        _, embeddings = predict(model, dataset.train, dataset, features=True,
                                **config.predict_options())
        embedding_seconds = _synchronized_seconds(start, device)
    extrapolator = EXTRAPOLATORS[config.extrapolation] if subset else None
    if subset:
        scores = extrapolator.extrapolate(
            embeddings, dataset.train.labels, scored, raw[scored], k=config.knn_k,
            weighting=config.knn_weighting, epochs=config.gnn_epochs,
            num_classes=dataset.num_classes, seed=seed + GNN_SEED).float()
    else:
        scores = raw
    scoring_seconds = _synchronized_seconds(start, device)

    reference, reference_run, reused = None, None, False
    correlations = {"pearson": None, "spearman": None,
                    "pearson_scored": None, "spearman_scored": None}
    if plan.reference:
        reference, reference_run, reused = _reference_run(config, dataset, init, progress)
        unseen = torch.ones(num_samples, dtype=torch.bool, device=device)
        unseen[scored] = False
        correlations.update(_correlations(scores[unseen], reference[unseen]))
        scored_part = _correlations(scores[scored], reference[scored])
        correlations.update({f"{key}_scored": value for key, value in scored_part.items()})

    embedding_macs = forward * num_samples if embeddings is not None else 0
    macs = {"selector_training": training_macs(forward, run.images_seen),
            "pool_scoring": embedding_macs}
    seconds = {"selector_training": run.training_seconds, "pool_scoring": scoring_seconds}
    # What each keep rule spent: the scoring run, and the embedding where it read it.
    score_costs = ({**macs, "pool_scoring": embedding_macs if subset else 0},
                   {**seconds, "pool_scoring": scoring_seconds if subset else
                    scoring_seconds - embedding_seconds})
    feature_costs = ({**macs, "pool_scoring": embedding_macs},
                     {**seconds, "pool_scoring": embedding_seconds})
    summary = ScoresRecord(
        score=config.score, source=config.score_source, scored=len(scored),
        train_size=num_samples, scoring_test_accuracy=run.test_accuracy, macs=macs,
        seconds=seconds, extrapolation=config.extrapolation if subset else None,
        knn_k=config.knn_k if subset else None,
        # the settings its extrapolator reads; None for the other's and for full scoring
        **{name: getattr(config, name) if subset and name in extrapolator.settings else None
           for x in EXTRAPOLATORS.values() for name in x.settings},
        scoring_epochs=config.score_schedule().epochs, **config.span(),
        reference=reference is not None, reference_cached=reused,
        reference_test_accuracy=None if reference_run is None else reference_run["test_accuracy"],
        reference_macs=None if reference_run is None else training_macs(
            forward, reference_run["images_seen"]),
        # of the run that computed it, also when this run reused it from the cache
        reference_seconds=None if reference_run is None else reference_run["seconds"],
        # the scoring run's test evaluation, and the reference run's when this run trained it
        evaluation_macs=forward * len(dataset.test) * (
            1 + (reference_run is not None and not reused)),
        **correlations)
    summary.label = scoring_label(summary)  # how the run scored, as tables name it
    return {"scores": scores, "scored_indices": scored, "reference": reference,
            # kept (in the checkpoint too) only for a rule that reads them
            "summary": summary, "score_costs": score_costs,
            "features": embeddings if config.coresets_read_features() else None,
            "feature_costs": feature_costs}


# ---------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------


def _round_record(index: int, fraction: float, selection: str, kept: int, label: str, arch: str,
                  result: FitResult, target_macs: int, evaluation_macs: int,
                  selection_macs: dict, selection_seconds: dict) -> RoundRecord:
    """One fraction x selection as a round of the run record; the retraining's test
    evaluations are the round's ``evaluation`` (MACs and seconds, apart from its training's)."""
    macs = {**selection_macs, "data_selection": sum(selection_macs.values()),
            "target_training": target_macs, "evaluation": evaluation_macs}
    seconds = {**selection_seconds, "data_selection": sum(selection_seconds.values()),
               "target_training": result.training_seconds,
               "evaluation": result.evaluation_seconds}
    return RoundRecord(
        round=index, removed_fraction=fraction, selection=selection, labeled=kept, added=kept,
        label=label, selector=None,
        target=TargetRecord(arch=arch, init="scratch", kd=False,
                            test_accuracy=result.test_accuracy, curve=result.curve,
                            curve_epochs=result.curve_epochs, train_loss=result.train_loss),
        macs=macs, seconds=seconds, cpu_load=cpu_load())


def _kept_set(config: DataPruningConfig, dataset: Dataset, scoring: dict, selection: str,
              count: int) -> tuple[torch.Tensor, str, tuple[dict, dict]]:
    """The ``count`` samples ``selection`` keeps (ascending), its label, and the MACs and
    seconds per selection phase that chose them (nothing for a random draw)."""
    seed = config.seed * 1000
    if selection == "random":
        no_cost = ({"selector_training": 0, "pool_scoring": 0},
                   {"selector_training": 0.0, "pool_scoring": 0.0})
        kept = keep_random(len(dataset.train), count, seed + RANDOM_KEEP_SEED)
        return kept, RANDOM_LABEL, no_cost
    score_label = scoring["summary"].label
    if selection == "score":
        return keep_highest(scoring["scores"], count), score_label, scoring["score_costs"]
    if selection == "moderate":
        kept = moderate_keep(scoring["features"], dataset.train.labels, count, dataset.num_classes)
        return kept, CORESETS["moderate"].label, scoring["feature_costs"]
    generator = torch.Generator().manual_seed(seed + CCS_SEED)
    kept = ccs_keep(scoring["scores"], count, config.ccs_hard_cutoff, config.ccs_strata, generator)
    label = f"{CORESETS['ccs'].label} ({score_label}, cutoff {config.ccs_hard_cutoff:g})"
    return kept, label, scoring["score_costs"]


def run_data_pruning(config: DataPruningConfig, dataset: Dataset,
                     progress: bool | None = None, checkpoint: Checkpoint | None = None) -> dict:
    """Score, remove every fraction in ``config.removed_fractions`` and retrain (``dataset``
    on its device).

    Returns ``rounds`` (a ``RoundRecord`` per (fraction, selection), fraction-major, score
    before random, with ``removed_fraction`` and ``selection``), ``kept`` (each round's
    kept indices), ``networks``, ``scores`` (its ``ScoresRecord``), ``score_values`` (N
    floats), ``scored_indices`` and ``reference_scores`` (N floats or None). Raises
    ``ConfigError`` for another experiment's config or a size conflict. With a
    ``checkpoint`` (``pf.experiments.checkpoint``) the run saves after its scoring and
    after every retraining, and continues after the last one it saved.
    """
    if config.experiment != DATA_PRUNING:
        raise ConfigError(f"experiment: run_data_pruning runs {DATA_PRUNING}, "
                          f"got {config.experiment!r}")
    num_samples = len(dataset.train)
    check_sizes(config, num_samples)
    image_shape = dataset.train.image_shape
    device = dataset.train.device
    torch.manual_seed(config.seed)
    init = build_model(config.arch, dataset.num_classes, dataset.in_channels, config.dropout)
    target_forward = forward_macs(init, image_shape)
    network = NetworkRecord(config.arch, parameter_count(init), target_forward)
    # The scoring network is the target's architecture; collect() reads it as the selector.
    networks = {"target": network, "selector": NetworkRecord(**vars(network))}

    checkpoint = checkpoint or Checkpoint(None, config.to_dict())
    carried = checkpoint.load()
    if carried is None:
        carried = {"scoring": score_training_set(config, dataset, init, progress),
                   "rounds": [], "kept_sets": []}
        checkpoint.save(0, carried)
    scoring, rounds, kept_sets = carried["scoring"], carried["rounds"], carried["kept_sets"]
    retrainings = plan_data_pruning(config, num_samples).retrainings
    bar = tqdm(retrainings, desc=DATA_PRUNING, disable=None if progress is None else not progress,
               initial=len(rounds))
    # The rounds after the last one a checkpoint holds.
    for index, step in enumerate(retrainings[len(rounds):], start=len(rounds)):
        fraction, selection, count = step.removed_fraction, step.selection, step.kept
        kept, label, costs = _kept_set(config, dataset, scoring, selection, count)
        target = copy.deepcopy(init)
        result = fit(target, dataset, kept.to(device), config.schedule(), device=device,
                     seed=config.seed * 1000 + RETRAIN_SEED, progress=progress,
                     desc=f"{selection} @ {fraction:g}", **config.fit_options())
        rounds.append(_round_record(index, fraction, selection, count, label, config.arch, result,
                                    training_macs(target_forward, result.images_seen),
                                    target_forward * len(dataset.test) * len(result.curve),
                                    *costs))
        kept_sets.append(kept.tolist())
        checkpoint.save(len(rounds), carried)
        bar.update()
        bar.set_postfix(acc=f"{result.test_accuracy:.3f}")
    bar.close()
    reference = scoring["reference"]
    return {"rounds": rounds, "kept": kept_sets, "networks": networks,
            "scores": scoring["summary"], "score_values": scoring["scores"].tolist(),
            "scored_indices": scoring["scored_indices"].tolist(),
            "reference_scores": None if reference is None else reference.tolist()}
