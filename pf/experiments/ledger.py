"""What an active-learning round computes, phase by phase, in images and MACs: one
arithmetic for the loop that records it (``pf.experiments.active_learning``), the planner
that plans it (``pf.experiments.cost``), the protocol's selection-cost table and the tests'
fake records; and how the data-selection cost of a labeled set adds up over rounds. A
data-pruning run's phases are counted from its plan (``pf.experiments.data_pruning``) here too.

A round's ``Work`` counts images: those the selector and the target trained on (a trained
image costs 3 forwards, as everywhere in pf), their test evaluations (passes over the test
set), the distillation teacher's forwards (one per image the target trains on) and the
pool images scored. ``Forwards`` holds the networks' MACs per image.

    macs = round_macs(Forwards(target, selector, scoring), Work(target_trained=..., ...))
"""

from __future__ import annotations

from dataclasses import dataclass

from pf.flops import training_macs

__all__ = ["ROUND_PHASES", "RUN_PHASES", "TRAINED_PHASES", "SELECTION_PHASES", "CHARGED_TARGET",
           "Forwards", "Work", "round_images", "round_macs", "charge_selection", "pruning_images",
           "pruning_macs"]

# The phases a round records, in the order its record lists them.
ROUND_PHASES = ("selector_training", "target_training", "selector_sync", "pool_scoring",
                "evaluation", "distillation")
# A run's phases: a round's, and data pruning's full reference run.
RUN_PHASES = (*ROUND_PHASES, "reference_scoring")
# The phases whose images are trained on (3 forwards each).
TRAINED_PHASES = ("selector_training", "target_training", "reference_scoring")
# What data selection spends in a round whose selector picks: its selector's phases ...
SELECTION_PHASES = ("selector_training", "selector_sync", "pool_scoring")
# ... and, once, the training of a target it depends on, in each unit the same work: the
# teacher's forwards run inside the training steps, so the seconds already hold them.
CHARGED_TARGET = {"macs": ("target_training", "distillation"), "seconds": ("target_training",)}


@dataclass(frozen=True)
class Forwards:
    """Forward MACs per image: the target's, the selector's, and what scoring one pool
    image costs with the run's metric (``pf.select.Strategy.scoring_macs``)."""

    target: int
    selector: int
    scoring: int


@dataclass(frozen=True)
class Work:
    """Images one round processes (``test_size``: images per test evaluation)."""

    selector_trained: int = 0
    selector_tests: int = 0
    target_trained: int = 0
    target_tests: int = 0
    distilled: bool = False
    scored: int = 0
    test_size: int = 0


def round_images(work: Work) -> dict[str, int]:
    """Images per phase (``ROUND_PHASES``); syncing a selector prunes, reading no data."""
    return {"selector_training": work.selector_trained,
            "target_training": work.target_trained,
            "selector_sync": 0,
            "pool_scoring": work.scored,
            "evaluation": work.test_size * (work.selector_tests + work.target_tests),
            "distillation": work.target_trained if work.distilled else 0}


def round_macs(forwards: Forwards, work: Work) -> dict[str, int]:
    """MACs per phase (``ROUND_PHASES``) of a round's ``work``."""
    return {"selector_training": training_macs(forwards.selector, work.selector_trained),
            "target_training": training_macs(forwards.target, work.target_trained),
            "selector_sync": 0,
            "pool_scoring": work.scored * forwards.scoring,
            "evaluation": work.test_size * (forwards.selector * work.selector_tests
                                            + forwards.target * work.target_tests),
            "distillation": forwards.selector * work.target_trained if work.distilled else 0}


def charge_selection(spent: float, unit: str, picked: dict, charged: dict | None) -> float:
    """``spent`` (data selection so far, in ``unit``: "macs" or "seconds") plus what chose
    the next labels in a round whose selector picked: its ``SELECTION_PHASES`` of
    ``picked`` (that round's phases), and the ``CHARGED_TARGET`` phases of ``charged``, the
    round whose target it depends on (the baseline's selecting target, a sync's source),
    counted once."""
    spent += sum(picked[phase] for phase in SELECTION_PHASES)
    if charged is not None:
        spent += sum(charged[phase] for phase in CHARGED_TARGET[unit])
    return spent


def pruning_images(plan, test_size: int, reference_reused: bool = False) -> dict[str, int]:
    """Images per phase (``RUN_PHASES``) of a data-pruning run's ``plan``
    (``pf.experiments.data_pruning.PruningPlan``): its scoring run (``selector_training``),
    the embedding (``pool_scoring``), the reference run unless ``reference_reused`` (found
    in its cache), the retrainings, and a test pass after each scoring run and at each of
    the retrainings' evaluated epochs."""
    reference = plan.reference and not reference_reused
    return {"selector_training": plan.scored * plan.scoring_epochs,
            "target_training": sum(step.kept for step in plan.retrainings) * plan.epochs,
            "selector_sync": 0,
            "pool_scoring": plan.embedded,
            "evaluation": test_size * (1 + reference
                                       + len(plan.retrainings) * plan.evaluations),
            "distillation": 0,
            "reference_scoring": plan.train_size * plan.scoring_epochs if reference else 0}


def pruning_macs(forward: int, images: dict[str, int]) -> dict[str, int]:
    """MACs per phase of a data-pruning run's ``images`` (``pruning_images``): its scoring
    network is the target's architecture, so every phase costs ``forward`` MACs per image,
    three times that for a trained one."""
    return {phase: training_macs(forward, count) if phase in TRAINED_PHASES else forward * count
            for phase, count in images.items()}
