"""Data-pruning scores from training dynamics: Dynamic Uncertainty, TDDS, EL2N, forgetting.

A ``DynamicsRecorder`` attached to ``pf.train.fit`` (``record_dynamics`` trains with one)
keeps, for every epoch and training sample, what the scores are computed from; one made by
``DynamicsRecorder.for_score`` keeps only what its score reads, in fp32 bytes per sample
per epoch: du 4, forgetting 1, el2n 4, tdds 4 per span epoch plus 4 C once, against
4 C + 1 for the full history (C classes). ``SCORES`` names each score and the record it
reads; every score is a float32 (N,) tensor, NaN for samples the run never trained on.

    recorder, result = record_dynamics(model, dataset, torch.arange(50_000), schedule)
    du = dynamic_uncertainty(recorder.probs, recorder.labels)        # keep high DU

Why it works this way: docs/internals.md, "pf.scores".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pf.data import Dataset
from pf.train import FitResult, Schedule, fit

__all__ = [
    "RECORDS",
    "Score",
    "SCORES",
    "TDDS_SPANS",
    "DynamicsRecorder",
    "record_dynamics",
    "true_class_probs",
    "dynamic_uncertainty",
    "tdds_epochs",
    "prediction_shifts",
    "tdds_from_shifts",
    "tdds",
    "el2n_per_epoch",
    "el2n",
    "forgetting_counts",
]

DU_WINDOW = 10  # J, epochs per window (He et al. 2023)
TDDS_WINDOW = 10  # w, epochs per window (Zhang et al. 2024)
TDDS_DECAY = 0.9  # beta, weight of the newest window in the moving average
TDDS_SPANS = ("last", "first")  # which end of the run TDDS scores (see tdds_epochs)
TDDS_SPAN = "last"  # the default span: the score-extrapolation paper's code
TDDS_SPAN_EPOCHS = 10  # epochs TDDS scores: the TDDS authors' trajectory_len default
LOG_EPS = 1e-8  # added before log: probabilities stored in bf16/fp16 underflow to 0
SAMPLES_PER_CHUNK = 4096  # bounds the (epochs, samples, classes) temporaries of TDDS/EL2N
UNRECORDED = -1  # the value of ``correct`` where a sample was not trained on
RECORDS = ("probs", "true_probs", "correct", "el2n", "shifts")  # what a recorder can keep
STORAGE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


# ---------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------


class DynamicsRecorder:
    """Per-sample, per-epoch training dynamics of a run, kept on the device.

    Pass it to ``pf.train.fit(..., recorder=recorder)``. ``fit`` calls ``begin``, which
    preallocates, for the kept ``epochs`` (default: every epoch of the run; E of them)
    and every sample of the train split (N; rows of samples outside the trained subset
    stay NaN, or -1 in ``correct``), the records named in ``keep`` (``RECORDS``):

    - ``probs``: (E, N, C) softmax outputs, in ``dtype``;
    - ``true_probs``: (E, N) true-class probabilities, in ``dtype`` (what DU reads);
    - ``correct``: (E, N) int8, 1 / 0 for a right / wrong prediction (forgetting);
    - ``el2n``: (E, N) fp32, ||softmax - one_hot(y)||_2 of each epoch (EL2N);
    - ``shifts``: (E - 1, N) fp32, TDDS's g_t between consecutive kept epochs (see
      ``prediction_shifts``); it keeps the previous epoch's softmax, (N, C) in ``dtype``,
      to compute them, never the whole history.

    Records not kept are None. ``for_score`` builds the recorder one score needs; the
    module docstring lists the memory of each. Each step writes its rows with
    ``index_copy_``: no host sync and no random numbers, so training is unchanged.
    ``dtype`` (float32, bfloat16 or float16) is the storage type of the softmax values
    (``probs``, ``true_probs`` and the previous epoch's softmax); the softmax is taken in
    fp32 and rounded to ``dtype`` before anything is derived from it, so a lean record
    equals what the same record computed from a full ``probs`` history in ``dtype`` gives.
    ``shifts`` assume every sample is trained at most once per epoch (fit's batches of
    distinct indices are).

    The recorded outputs are those of the training step: train mode (batch-norm batch
    statistics, dropout), augmented inputs, weights before the step's update, as the
    TDDS authors' code and the score-extrapolation paper's DU code record them; a
    separate eval-mode pass would cost a forward pass over the subset every epoch.
    ``labels`` is the split's label tensor, for the scores that need the true class.
    """

    def __init__(self, keep: Iterable[str] = ("probs", "correct"),
                 dtype: torch.dtype = torch.float32, epochs: range | None = None):
        keep = tuple(keep)
        unknown = [name for name in keep if name not in RECORDS]
        if unknown or not keep:
            raise ValueError(f"keep: {list(keep)} not allowed; choose from {', '.join(RECORDS)}")
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"dtype: {dtype} not allowed; use float32, bfloat16 or float16")
        if epochs is not None and (epochs.step != 1 or not epochs or epochs.start < 0):
            raise ValueError(f"epochs: {epochs} must be a non-empty range of consecutive "
                             f"epochs from 0 on")
        self.keep, self.dtype, self._asked_epochs = keep, dtype, epochs
        self.epochs: range | None = None  # the kept epochs of the run, known at begin
        self.probs: torch.Tensor | None = None
        self.true_probs: torch.Tensor | None = None
        self.correct: torch.Tensor | None = None
        self.el2n: torch.Tensor | None = None
        self.shifts: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self._previous: torch.Tensor | None = None  # the last kept epoch's softmax, for shifts

    @classmethod
    def for_score(cls, score: str, epochs: range | None = None,
                  dtype: torch.dtype = torch.float32) -> DynamicsRecorder:
        """A recorder that keeps only what ``score`` (du | tdds | el2n | forgetting) reads,
        over ``epochs`` of the run (default: all; TDDS's span: ``tdds_epochs``)."""
        if score not in SCORES:
            raise ValueError(f"score: unknown {score!r}; choose one of {', '.join(SCORES)}")
        return cls(keep=(SCORES[score].record,), dtype=dtype, epochs=epochs)

    def begin(self, epochs: int, labels: torch.Tensor, num_classes: int) -> None:
        """Allocate the records for a run of ``epochs`` epochs on the split labelled ``labels``."""
        self.epochs = range(epochs) if self._asked_epochs is None else self._asked_epochs
        if self.epochs.stop > epochs:
            raise ValueError(f"epochs: {self.epochs} lies beyond the run's {epochs} epochs")
        if "shifts" in self.keep and len(self.epochs) < 2:
            raise ValueError(f"epochs: shifts need at least 2 epochs, got {self.epochs}")
        n, device, kept = len(labels), labels.device, len(self.epochs)

        def nan(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.full(shape, float("nan"), dtype=dtype, device=device)

        self.labels = labels
        if "probs" in self.keep:
            self.probs = nan(kept, n, num_classes, dtype=self.dtype)
        if "true_probs" in self.keep:
            self.true_probs = nan(kept, n, dtype=self.dtype)
        if "correct" in self.keep:
            self.correct = torch.full((kept, n), UNRECORDED, dtype=torch.int8, device=device)
        if "el2n" in self.keep:
            self.el2n = nan(kept, n)
        if "shifts" in self.keep:
            self.shifts = nan(kept - 1, n)
            self._previous = nan(n, num_classes, dtype=self.dtype)

    def record(self, epoch: int, indices: torch.Tensor, logits: torch.Tensor,
               labels: torch.Tensor) -> None:
        """Store what ``keep`` names for the split samples ``indices`` at ``epoch``."""
        if epoch not in self.epochs:
            return
        row = epoch - self.epochs.start
        with torch.no_grad():
            probs = F.softmax(logits.float(), dim=1).to(self.dtype)
            if self.probs is not None:
                self.probs[row].index_copy_(0, indices, probs)
            if self.true_probs is not None:
                true_probs = probs.gather(1, labels[:, None]).squeeze(1)
                self.true_probs[row].index_copy_(0, indices, true_probs)
            if self.correct is not None:
                correct = (logits.argmax(1) == labels).to(torch.int8)
                self.correct[row].index_copy_(0, indices, correct)
            if self.el2n is not None:
                self.el2n[row].index_copy_(0, indices, _distance_to_one_hot(probs, labels))
            if self.shifts is not None:
                if row > 0:
                    shift = _shift(self._previous[indices], probs, LOG_EPS)
                    self.shifts[row - 1].index_copy_(0, indices, shift)
                self._previous.index_copy_(0, indices, probs)


def record_dynamics(model: nn.Module, dataset: Dataset, indices: torch.Tensor,
                    schedule: Schedule, *, keep: Iterable[str] = ("probs", "correct"),
                    dtype: torch.dtype = torch.float32, epochs: range | None = None,
                    **fit_kwargs) -> tuple[DynamicsRecorder, FitResult]:
    """Train ``model`` on ``dataset.train[indices]`` with ``pf.train.fit`` while recording.

    Returns the filled ``DynamicsRecorder(keep, dtype, epochs)`` and fit's result;
    ``fit_kwargs`` go to ``fit`` (device, seed, precision, ...). Scores of the full
    training set from a full run:
    ``record_dynamics(model, dataset, torch.arange(len(dataset.train)), schedule)``.
    """
    recorder = DynamicsRecorder(keep=keep, dtype=dtype, epochs=epochs)
    result = fit(model, dataset, indices, schedule, recorder=recorder, **fit_kwargs)
    return recorder, result


# ---------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------


def true_class_probs(probs: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """P_t(y | x) as fp32 (epochs, N): gathered from (epochs, N, C), or (epochs, N) as is."""
    if probs.dim() == 2:
        return probs.float()
    if labels is None:
        raise ValueError("labels: needed to pick the true class out of a full softmax history")
    index = labels.to(probs.device).view(1, -1, 1).expand(probs.shape[0], -1, 1)
    return probs.gather(2, index).squeeze(2).float()


def dynamic_uncertainty(probs: torch.Tensor, labels: torch.Tensor | None = None,
                        window: int = DU_WINDOW, correction: int = 0) -> torch.Tensor:
    """Dynamic Uncertainty (He et al. 2023): mean over sliding windows of std(P_t(y|x)).

    For every window of ``window`` (J) consecutive epochs k..k+J-1 (all E - J + 1 of
    them) take the standard deviation of the true-class probability; DU is the mean of
    these. ``correction=0`` is the population std (divide by J), as the score-
    extrapolation paper's code computes it; ``correction=1`` the sample std (divide by
    J - 1). The two differ by the constant factor sqrt(J / (J - 1)), so rankings and
    correlations do not depend on the choice. ``probs``: (E, N, C) with ``labels``, or
    (E, N) true-class probabilities (a recorder's ``true_probs``). High DU = keep.
    """
    p_true = true_class_probs(probs, labels)
    if not 2 <= window <= p_true.shape[0]:
        raise ValueError(f"window: {window} needs 2 <= window <= {p_true.shape[0]} (the epochs)")
    # unfold: (E - J + 1, N, J), every run of J consecutive epochs, without a copy.
    return p_true.unfold(0, window, 1).std(dim=2, correction=correction).mean(0)


def tdds_epochs(total: int, span: str = TDDS_SPAN, length: int = TDDS_SPAN_EPOCHS) -> range:
    """The epochs of a ``total``-epoch run that TDDS scores: the ``span`` end's ``length``.

    The TDDS authors' code scores the FIRST ``trajectory_len`` epochs (10 by default),
    ``span="first"``; the score-extrapolation paper's code (arXiv 2506.09010) the LAST
    10, ``span="last"``, our default: pf's data-pruning experiment reproduces that paper
    (its public code switches from the first to the last epochs on purpose), and "last"
    is also what pf scored before the span existed (every epoch, where the EMA gives the
    newest window 90 % of the weight). ``length = total`` scores the whole run. The spans
    rank samples very differently: on a recorded 25-epoch run the all-epoch score had
    Spearman 0.999 with last-10 TDDS and 0.114 with first-10.
    """
    if span not in TDDS_SPANS:
        raise ValueError(f"span: {span!r} is not one of {', '.join(TDDS_SPANS)}")
    if not 2 <= length <= total:
        raise ValueError(f"length: {length} needs 2 <= length <= {total} (the run's epochs)")
    return range(length) if span == "first" else range(total - length, total)


def _shift(before: torch.Tensor, after: torch.Tensor, eps: float) -> torch.Tensor:
    """g = sum_c |after_c (log(after_c + eps) - log(before_c + eps))| over the last dim."""
    after = after.float()
    return (after * ((after + eps).log() - (before.float() + eps).log())).abs().sum(-1)


def prediction_shifts(probs: torch.Tensor, eps: float = LOG_EPS) -> torch.Tensor:
    """TDDS's per-epoch change g_t (E - 1, N) fp32 of an (E, N, C) softmax history.

    g_t = sum_c |p_{t+1,c} (log(p_{t+1,c} + eps) - log(p_{t,c} + eps))| for t = 0..E-2,
    the KL-like term of Zhang et al. A recorder's ``shifts`` hold the same values.
    """
    if probs.dim() != 3:
        raise ValueError("probs: TDDS needs the full softmax history (epochs, N, C)")
    return torch.cat([_shift(part[:-1], part[1:], eps)
                      for part in probs.split(SAMPLES_PER_CHUNK, dim=1)], dim=1)


def tdds_from_shifts(shifts: torch.Tensor, window: int = TDDS_WINDOW,
                     decay: float = TDDS_DECAY) -> torch.Tensor:
    """TDDS from the (E - 1, N) changes g_t of E epochs (``prediction_shifts``, or a
    recorder's ``shifts``); see ``tdds``."""
    epochs = shifts.shape[0] + 1
    if not 2 <= window <= epochs:
        raise ValueError(f"window: {window} needs 2 <= window <= {epochs} (the epochs)")
    # Window k's age is K - 1 - k: the newest window has age 0 and weighs ``decay``.
    age = torch.arange(epochs - window, -1, -1, device=shifts.device)
    weights = (decay * (1 - decay) ** age.double()).float()[:, None]

    def score(part: torch.Tensor) -> torch.Tensor:
        spans = part.float().unfold(0, window - 1, 1)
        return (weights * (spans - spans.mean(2, keepdim=True)).norm(dim=2)).sum(0)

    return torch.cat([score(part) for part in shifts.split(SAMPLES_PER_CHUNK, dim=1)])


def tdds(probs: torch.Tensor, window: int = TDDS_WINDOW, decay: float = TDDS_DECAY,
         eps: float = LOG_EPS) -> torch.Tensor:
    """Temporal Dual-Depth Score (Zhang et al., CVPR 2024) from (E, N, C) softmax outputs.

    g_t = sum_c |p_{t+1,c} (log(p_{t+1,c} + eps) - log(p_{t,c} + eps))| for t = 0..E-2.
    A window of ``window`` (w) epochs k..k+w-1 holds the w - 1 values g_k..g_{k+w-2};
    D_k is the L2 norm of their deviations from their mean. The K = E - w + 1 windows
    are combined by the exponential moving average m_k = decay * D_k + (1 - decay) *
    m_{k-1}, m_{-1} = 0, i.e. TDDS = sum_k decay * (1 - decay)^(K-1-k) * D_k: the newest
    window weighs ``decay`` (0.9), each older one 1 - decay times less, as the authors'
    code does. It scores every epoch it is given: pass the span ``tdds_epochs`` picks
    (``probs[tdds_epochs(len(probs))]``, the last 10 epochs by default; with w = 10 that
    is one window). High TDDS = keep.
    """
    return tdds_from_shifts(prediction_shifts(probs, eps), window, decay)


def _distance_to_one_hot(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """||probs - one_hot(labels)||_2 over the last (class) dim, in fp32."""
    return (probs.float() - F.one_hot(labels, probs.shape[-1]).float()).norm(dim=-1)


def el2n_per_epoch(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """||softmax - one_hot(y)||_2 of every epoch and sample, (E, N) fp32, from (E, N, C)
    outputs; a recorder's ``el2n`` holds the same values."""
    if probs.dim() != 3:
        raise ValueError("probs: EL2N needs the full softmax history (epochs, N, C)")
    labels = labels.to(probs.device)
    return torch.cat([_distance_to_one_hot(p, y) for p, y in
                      zip(probs.split(SAMPLES_PER_CHUNK, dim=1), labels.split(SAMPLES_PER_CHUNK))],
                     dim=1)


def el2n(probs: torch.Tensor, labels: torch.Tensor,
         epochs: Sequence[int] | slice | None = None) -> torch.Tensor:
    """EL2N (Paul et al. 2021): ||softmax - one_hot(y)||_2, averaged over ``epochs``.

    ``epochs`` picks the recorded epochs to average (default: all). The original takes
    an early epoch (e.g. 20 of 200) and averages over several independently trained
    runs: average this score over several recorders for that. From a recorder's
    per-epoch ``el2n`` (E, N) the score is ``recorder.el2n[epochs].mean(0)``. High EL2N
    = keep.
    """
    if probs.dim() != 3:
        raise ValueError("probs: EL2N needs the full softmax history (epochs, N, C)")
    chosen = probs if epochs is None else probs[
        epochs if isinstance(epochs, slice) else list(epochs)]
    return el2n_per_epoch(chosen, labels).mean(0)


def forgetting_counts(correct: torch.Tensor, never_learned: float | None = None) -> torch.Tensor:
    """Forgetting events (Toneva et al. 2019) from (E, N) correctness, 1 / 0 per epoch.

    An event is a sample going from correctly to incorrectly classified between
    consecutive recorded epochs. Toneva et al. rank never-learned samples (never correct)
    as forgotten infinitely often; we give them ``never_learned``, by default E, more
    than the at most E // 2 events a learned sample can have, so they still rank first
    but the score stays finite for regression and correlation. Samples with an
    unrecorded epoch (``DynamicsRecorder.correct`` == -1) score NaN. High count = keep.
    """
    correct = correct.to(torch.int8)
    events = ((correct[:-1] == 1) & (correct[1:] == 0)).sum(0).float()
    learned = (correct == 1).any(0)
    cap = float(correct.shape[0]) if never_learned is None else float(never_learned)
    counts = torch.where(learned, events, torch.full_like(events, cap))
    return counts.masked_fill((correct == UNRECORDED).any(0), float("nan"))


# ---------------------------------------------------------------------------------------
# The registry: every score, by the name a config gives
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """A training-dynamics score: the recorder's ``record`` it reads, how ``compute`` turns
    that record into one value per sample (high = keep), the epochs a scoring run needs at
    least (``window``; 0: any), and whether it reads only a span of the run's epochs
    (``spanned``: TDDS, over ``tdds_span_epochs`` epochs; ``tdds_epochs``)."""

    name: str
    record: str
    compute: Callable[[torch.Tensor], torch.Tensor]
    window: int = 0
    spanned: bool = False


SCORES: dict[str, Score] = {score.name: score for score in (
    Score("du", "true_probs", dynamic_uncertainty, window=DU_WINDOW),
    Score("tdds", "shifts", tdds_from_shifts, window=TDDS_WINDOW, spanned=True),
    Score("el2n", "el2n", lambda per_epoch: per_epoch.mean(0)),  # over every recorded epoch
    Score("forgetting", "correct", forgetting_counts),
)}
