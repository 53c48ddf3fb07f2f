"""Coreset keep rules for data pruning: which ``count`` training samples to keep.

The data-pruning experiment (``pf.experiments.data_pruning``) keeps the highest-scored
samples; these two rules from the coreset-selection literature run beside it, as the
extended PruneFuse paper compares against them:

- ``moderate``, Moderate coreset (Xia et al., ICLR 2023): every sample's distance, in
  the scoring network's penultimate features, to its class prototype; keep the samples
  whose distance is nearest the median distance. The prototype is the element-wise
  median of the class's features, as the authors' public code computes it (the paper
  writes "class centre"). "Nearest the median" is taken by rank: the ``count`` samples
  in the middle of the distance order over the whole training set, as many below the
  median as above.
- ``ccs``, coverage-centric coreset selection (Zheng et al., ICLR 2023, Algorithm 1):
  drop the ``hard_cutoff`` fraction of hardest samples (highest score), split the
  rest's score range into ``strata`` bins of equal width, and fill the budget from the
  bins evenly, smallest bin first: each takes all it has or an equal share of what is
  left to fill, drawn at random within the bin.

Our choices where the papers leave room: CCS tunes its cutoff per pruning rate by grid
search; one ``hard_cutoff`` serves every rate here (a sweep over it does the tuning),
and the cutoff never drops so many that the budget cannot be filled (at most N - count).
Both rules return ascending indices; ties in distance or score go to the lower index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pf.select import pick

__all__ = ["CoresetRule", "CORESETS", "class_medians", "moderate_keep", "ccs_strata",
           "ccs_keep"]


@dataclass(frozen=True)
class CoresetRule:
    """A keep rule: its name in configs, how legends name it and what it reads
    (``features``: the scoring network's penultimate features; else the scores)."""

    name: str
    label: str
    features: bool


CORESETS = {rule.name: rule for rule in (
    CoresetRule("moderate", "Moderate coreset", features=True),
    CoresetRule("ccs", "CCS", features=False),
)}


def class_medians(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, D): each class's element-wise median feature vector (the mean of the
    two middle values for an even count, as numpy's median; zeros for an absent class)."""
    medians = features.new_zeros(num_classes, features.shape[1])
    for label in range(num_classes):
        members = features[labels == label].sort(dim=0).values
        if len(members):
            n = len(members)
            medians[label] = (members[(n - 1) // 2] + members[n // 2]) / 2
    return medians


def moderate_keep(features: torch.Tensor, labels: torch.Tensor, count: int,
                  num_classes: int) -> torch.Tensor:
    """Moderate coreset: the ``count`` samples whose distance to their class's median
    feature vector is nearest the median distance (by rank; see the module docstring).

    ``features`` is (N, D), ``labels`` (N,). Returns (count,) ascending indices.
    """
    if not 0 <= count <= len(features):
        raise ValueError(f"count: need 0 <= count <= {len(features)}, got {count}")
    features = features.float()
    prototypes = class_medians(features, labels, num_classes)
    distances = (features - prototypes[labels]).norm(dim=1)
    order = distances.argsort(stable=True)  # equal distances: the lower index first
    start = (len(features) - count) // 2
    return order[start:start + count].sort().values


def ccs_strata(scores: torch.Tensor, strata: int) -> torch.Tensor:
    """Each score's bin among ``strata`` of equal width over [min, max] (the maximum in the
    last bin; every score in bin 0 when all are equal). (n,) long."""
    low, high = scores.min(), scores.max()
    if high == low:
        return torch.zeros(len(scores), dtype=torch.long)
    bins = ((scores - low) / (high - low) * strata).long()
    return bins.clamp(max=strata - 1)


def ccs_keep(scores: torch.Tensor, count: int, hard_cutoff: float, strata: int,
             generator: torch.Generator) -> torch.Tensor:
    """CCS: drop the ``hard_cutoff`` fraction of highest ``scores`` (rounded half up, at
    most N - count), then fill ``count`` evenly over ``strata`` equal-width score bins,
    smallest bin first, drawing within a bin with ``generator``.

    ``scores`` is (N,), high = hard (every ``pf.scores`` score). Returns (count,)
    ascending indices.
    """
    num_samples = len(scores)
    if not 0 <= count <= num_samples:
        raise ValueError(f"count: need 0 <= count <= {num_samples}, got {count}")
    scores = scores.detach().float().cpu()
    dropped = min(math.floor(hard_cutoff * num_samples + 0.5), num_samples - count)
    hardest = pick(scores, dropped, largest=True)
    remaining = torch.ones(num_samples, dtype=torch.bool)
    remaining[hardest] = False
    candidates = remaining.nonzero().squeeze(1)
    if count == 0:
        return candidates[:0]
    bins = ccs_strata(scores[candidates], strata)
    members = [candidates[bins == b] for b in range(strata)]
    members = sorted((m for m in members if len(m)), key=len)  # stable: equal sizes by bin
    kept, left = [], count
    for position, stratum in enumerate(members):
        share = min(len(stratum), left // (len(members) - position))
        kept.append(stratum[torch.randperm(len(stratum), generator=generator)[:share]])
        left -= share
    return torch.cat(kept).sort().values
