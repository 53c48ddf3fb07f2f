"""Data-pruning scores from training dynamics: Dynamic Uncertainty, TDDS, EL2N, forgetting.

A ``DynamicsRecorder`` attached to ``pf.train.fit`` keeps, for every epoch and every
training sample, the softmax output (or only the true-class probability) and whether the
sample was classified correctly. It records from the logits the training step already
computed, so it costs no extra forward pass and no host sync: on the 2-core development
CPU ``record`` took 0.2-0.4 ms per batch of 128, under 0.2 % of a ResNet-20 training
step, and fit's time with a recorder was within run-to-run noise of its time without
(``benchmarks/bench_scores.py``). These are train-mode outputs on augmented inputs, taken
before the step's weight update, as the TDDS authors' code and the score-extrapolation
paper's Dynamic Uncertainty code record them. The scores are computed from the recorded
history, vectorised over samples and epochs:

    recorder, result = record_dynamics(model, dataset, torch.arange(50_000), schedule)
    du = dynamic_uncertainty(recorder.probs, recorder.labels)        # keep high DU
    td = tdds(recorder.probs)                                        # keep high TDDS
    e2 = el2n(recorder.probs, recorder.labels, epochs=range(20))
    fc = forgetting_counts(recorder.correct)

Every score is a float32 (N,) tensor, NaN for samples the run never trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pf.data import Dataset
from pf.train import FitResult, Schedule, fit

__all__ = [
    "DynamicsRecorder",
    "record_dynamics",
    "true_class_probs",
    "dynamic_uncertainty",
    "tdds",
    "el2n",
    "forgetting_counts",
]

DU_WINDOW = 10  # J, epochs per window (He et al. 2023)
TDDS_WINDOW = 10  # w, epochs per window (Zhang et al. 2024)
TDDS_DECAY = 0.9  # beta, weight of the newest window in the moving average
LOG_EPS = 1e-8  # added before log: probabilities stored in bf16/fp16 underflow to 0
SAMPLES_PER_CHUNK = 4096  # bounds the (epochs, samples, classes) temporaries of TDDS/EL2N
UNRECORDED = -1  # the value of ``correct`` where a sample was not trained on


# ---------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------


class DynamicsRecorder:
    """Per-sample, per-epoch softmax outputs of a training run, kept on the device.

    Pass it to ``pf.train.fit(..., recorder=recorder)``. ``fit`` calls ``begin``, which
    preallocates ``probs`` of shape (epochs, N, C), or (epochs, N) with
    ``true_class_only=True`` (C times less memory: CIFAR-100 over 200 epochs is 4 GB in
    fp32 with all classes), filled with NaN, and ``correct`` (epochs, N) int8 filled with
    -1; N is the size of the whole train split, so rows of samples outside the trained
    subset stay NaN / -1. Each step then writes its rows with ``index_copy_``: no host
    sync and no random numbers, so training is unchanged. ``dtype`` (float32, bfloat16
    or float16) is the storage type of ``probs``; the softmax itself is taken in fp32.

    The recorded outputs are those of the training step: train mode (batch-norm batch
    statistics, dropout), augmented inputs, weights before the step's update, as the
    TDDS authors' code and the score-extrapolation paper's DU code record them; a
    separate eval-mode pass would cost a forward pass over the subset every epoch. ``labels`` is the
    split's label tensor, for the scores that need the true class.
    """

    def __init__(self, true_class_only: bool = False, dtype: torch.dtype = torch.float32):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype: {dtype} not allowed; use float32, bfloat16 or float16")
        self.true_class_only, self.dtype = true_class_only, dtype
        self.probs: torch.Tensor | None = None
        self.correct: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None

    def begin(self, epochs: int, labels: torch.Tensor, num_classes: int) -> None:
        """Allocate the history for ``epochs`` epochs of the split labelled ``labels``."""
        n, device = len(labels), labels.device
        shape = (epochs, n) if self.true_class_only else (epochs, n, num_classes)
        self.probs = torch.full(shape, float("nan"), dtype=self.dtype, device=device)
        self.correct = torch.full((epochs, n), UNRECORDED, dtype=torch.int8, device=device)
        self.labels = labels

    def record(self, epoch: int, indices: torch.Tensor, logits: torch.Tensor,
               labels: torch.Tensor) -> None:
        """Store softmax(``logits``) of the split samples ``indices`` at ``epoch``."""
        with torch.no_grad():
            probs = F.softmax(logits.float(), dim=1)
            if self.true_class_only:
                probs = probs.gather(1, labels[:, None]).squeeze(1)
            self.probs[epoch].index_copy_(0, indices, probs.to(self.dtype))
            correct = (logits.argmax(1) == labels).to(torch.int8)
            self.correct[epoch].index_copy_(0, indices, correct)


def record_dynamics(model: nn.Module, dataset: Dataset, indices: torch.Tensor,
                    schedule: Schedule, *, true_class_only: bool = False,
                    dtype: torch.dtype = torch.float32,
                    **fit_kwargs) -> tuple[DynamicsRecorder, FitResult]:
    """Train ``model`` on ``dataset.train[indices]`` with ``pf.train.fit`` while recording.

    Returns the filled ``DynamicsRecorder`` and fit's result; ``fit_kwargs`` go to
    ``fit`` (device, seed, precision, ...). Scores of the full training set from a full
    run: ``record_dynamics(model, dataset, torch.arange(len(dataset.train)), schedule)``.
    """
    recorder = DynamicsRecorder(true_class_only=true_class_only, dtype=dtype)
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
    (E, N) true-class probabilities. High DU = keep.
    """
    p_true = true_class_probs(probs, labels)
    if not 2 <= window <= p_true.shape[0]:
        raise ValueError(f"window: {window} needs 2 <= window <= {p_true.shape[0]} (the epochs)")
    # unfold: (E - J + 1, N, J), every run of J consecutive epochs, without a copy.
    return p_true.unfold(0, window, 1).std(dim=2, correction=correction).mean(0)


def tdds(probs: torch.Tensor, window: int = TDDS_WINDOW, decay: float = TDDS_DECAY,
         eps: float = LOG_EPS) -> torch.Tensor:
    """Temporal Dual-Depth Score (Zhang et al., CVPR 2024) from (E, N, C) softmax outputs.

    g_t = sum_c |p_{t+1,c} (log(p_{t+1,c} + eps) - log(p_{t,c} + eps))| for t = 0..E-2.
    A window of ``window`` (w) epochs k..k+w-1 holds the w - 1 values g_k..g_{k+w-2};
    D_k is the L2 norm of their deviations from their mean. The K = E - w + 1 windows
    are combined by the exponential moving average m_k = decay * D_k + (1 - decay) *
    m_{k-1}, m_{-1} = 0, i.e. TDDS = sum_k decay * (1 - decay)^(K-1-k) * D_k: the newest
    window weighs ``decay`` (0.9), each older one 1 - decay times less, as the authors'
    code does. The original scores only the first epochs of training (its
    ``trajectory_len``): pass ``probs[:epochs]`` for that. High TDDS = keep.
    """
    if probs.dim() != 3:
        raise ValueError("probs: TDDS needs the full softmax history (epochs, N, C)")
    if not 2 <= window <= probs.shape[0]:
        raise ValueError(f"window: {window} needs 2 <= window <= {probs.shape[0]} (the epochs)")
    # Window k's age is K - 1 - k: the newest window has age 0 and weighs ``decay``.
    age = torch.arange(probs.shape[0] - window, -1, -1, device=probs.device)
    weights = (decay * (1 - decay) ** age.double()).float()[:, None]

    def score(part: torch.Tensor) -> torch.Tensor:
        log_p = (part.float() + eps).log()
        g = (part[1:].float() * (log_p[1:] - log_p[:-1])).abs().sum(2)
        spans = g.unfold(0, window - 1, 1)
        return (weights * (spans - spans.mean(2, keepdim=True)).norm(dim=2)).sum(0)

    return torch.cat([score(part) for part in probs.split(SAMPLES_PER_CHUNK, dim=1)])


def el2n(probs: torch.Tensor, labels: torch.Tensor,
         epochs: Sequence[int] | slice | None = None) -> torch.Tensor:
    """EL2N (Paul et al. 2021): ||softmax - one_hot(y)||_2, averaged over ``epochs``.

    ``epochs`` picks the recorded epochs to average (default: all). The original takes
    an early epoch (e.g. 20 of 200) and averages over several independently trained
    runs: average this score over several recorders for that. High EL2N = keep.
    """
    if probs.dim() != 3:
        raise ValueError("probs: EL2N needs the full softmax history (epochs, N, C)")
    chosen = probs if epochs is None else probs[
        epochs if isinstance(epochs, slice) else list(epochs)]
    labels = labels.to(probs.device)

    def score(part: torch.Tensor, part_labels: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(part_labels, part.shape[2]).float()
        return (part.float() - one_hot).norm(dim=2).mean(0)

    return torch.cat([score(p, y) for p, y in zip(chosen.split(SAMPLES_PER_CHUNK, dim=1),
                                                  labels.split(SAMPLES_PER_CHUNK))])


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
