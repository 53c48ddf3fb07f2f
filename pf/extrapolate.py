"""Score extrapolation (Schmidt, Dhungel et al., arXiv 2506.09010):
score a subset, predict the rest.

Given the embeddings of all N samples, the positions of the scored samples and their scores,
``knn_extrapolate`` (the mean score of the k nearest scored samples) or ``gnn_extrapolate``
(a GCN on the kNN graph, in plain PyTorch) predicts a score for every other sample;
``pearson`` and ``spearman`` compare the result with a full run's scores.

    scores_all = knn_extrapolate(features, scored, du_scores, k=10, weighting="exp")

Why it works this way: docs/internals.md, "pf.extrapolate".
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "WEIGHTINGS",
    "GNN_MIN_SCORED",
    "Extrapolator",
    "EXTRAPOLATORS",
    "knn_extrapolate",
    "gnn_extrapolate",
    "pearson",
    "spearman",
]

WEIGHTINGS = ("mean", "exp")  # kNN: plain mean, or weights exp(-distance)
# gnn_extrapolate validates on 10 % of the scored samples, at least 2: 20 scored at least.
GNN_MIN_SCORED = 20


# ----------------------------------------------------------------------------- checks

def _check_scored(num_samples: int, scored_indices: torch.Tensor, scores: torch.Tensor,
                  k: int) -> None:
    """Refuse a scored subset that is not a set of distinct positions with one score each."""
    if scored_indices.ndim != 1 or scores.ndim != 1 or len(scored_indices) != len(scores):
        raise ValueError(f"scores: need one score per scored index, got {tuple(scores.shape)} "
                         f"scores for {tuple(scored_indices.shape)} indices")
    if len(scored_indices) and not (0 <= int(scored_indices.min())
                                    and int(scored_indices.max()) < num_samples):
        raise ValueError(f"scored_indices: must lie in 0..{num_samples - 1}")
    if len(scored_indices.unique()) != len(scored_indices):
        raise ValueError("scored_indices: must be distinct")
    if not 1 <= k <= len(scored_indices):
        raise ValueError(f"k: need 1 <= k <= {len(scored_indices)} (the scored samples), got {k}")


# ----------------------------------------------------------------------------- neighbours

def _nearest(queries: torch.Tensor, keys: torch.Tensor, k: int, chunk_size: int,
             dtype: torch.dtype, skip_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest keys of every query: (positions into keys, Euclidean distances),
    nearest first.

    ``skip_self``: queries ARE the keys, and a query may not be its own neighbour.
    """
    # Centring on the keys' mean shrinks the norms, which reduces the cancellation in
    # |a|^2 + |b|^2 - 2 a.b (ReLU features are all non-negative, far from the origin).
    mean = keys.to(dtype).mean(0)
    keys = keys.to(dtype) - mean
    keys_sq = keys.square().sum(1)
    positions, distances = [], []
    for start in range(0, len(queries), chunk_size):
        block = queries[start:start + chunk_size].to(dtype) - mean
        squared = torch.addmm(block.square().sum(1, keepdim=True) + keys_sq, block, keys.T,
                              alpha=-2).clamp_(min=0)
        if skip_self:
            rows = torch.arange(len(block), device=block.device)
            squared[rows, start + rows] = float("inf")
        nearest = squared.topk(k, dim=1, largest=False)
        positions.append(nearest.indices)
        distances.append(nearest.values.sqrt())
    return torch.cat(positions), torch.cat(distances)


def knn_extrapolate(embeddings: torch.Tensor, scored_indices: torch.Tensor, scores: torch.Tensor,
                    k: int = 10, weighting: str = "mean", chunk_size: int = 1024,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Scores for all N samples: the scored keep theirs, the rest average their k nearest scored.

    ``embeddings`` is (N, D); ``scored_indices`` (S,) distinct positions into it with
    ``scores`` (S,). Neighbours are searched among the scored samples only, by Euclidean
    distance (paper: k in 10, 20, 50, 100). ``weighting`` is one of ``WEIGHTINGS``:
    ``"mean"`` averages the k scores, ``"exp"`` weights each by exp(-distance).
    Unscored samples are compared with the scored ones ``chunk_size`` at a time (memory
    O(chunk_size x S)) in ``dtype`` (float64 for exactness). Returns an (N,) tensor on the
    embeddings' device, in the scores' dtype promoted to at least float32.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting: unknown {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    device = embeddings.device
    scored_indices = scored_indices.to(device)
    _check_scored(len(embeddings), scored_indices, scores, k)
    out_dtype = torch.promote_types(scores.dtype, torch.float32)
    result = torch.empty(len(embeddings), dtype=out_dtype, device=device)
    result[scored_indices] = scores.to(device=device, dtype=out_dtype)
    unscored = torch.ones(len(embeddings), dtype=torch.bool, device=device)
    unscored[scored_indices] = False
    unscored = unscored.nonzero().squeeze(1)
    if len(unscored) == 0:
        return result
    positions, distances = _nearest(embeddings[unscored], embeddings[scored_indices], k,
                                    chunk_size, dtype)
    neighbour_scores = scores.to(device=device, dtype=dtype)[positions]
    if weighting == "mean":
        estimate = neighbour_scores.mean(1)
    else:
        # exp(-d) underflows to 0 for every neighbour once d > ~100 (float32), giving 0/0;
        # shifting by the nearest distance scales all k weights alike and leaves the mean as is.
        weights = torch.exp(distances[:, :1] - distances)
        estimate = (weights * neighbour_scores).sum(1) / weights.sum(1)
    result[unscored] = estimate.to(out_dtype)
    return result


# ----------------------------------------------------------------------------- GNN

def _propagation_matrices(embeddings: torch.Tensor, k: int,
                          chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """P = D^-1/2 (A + I) D^-1/2 of the kNN graph over all samples, and P transposed (sparse CSR).

    Row i holds i itself (weight 1) and its k nearest other samples (weight
    exp(-distance / 2)); D holds the row sums of A + I.
    """
    num_nodes = len(embeddings)
    device = embeddings.device
    neighbours, distances = _nearest(embeddings, embeddings, k, chunk_size, torch.float32,
                                     skip_self=True)
    nodes = torch.arange(num_nodes, device=device)
    rows = torch.cat([nodes, nodes.repeat_interleave(k)])
    cols = torch.cat([nodes, neighbours.flatten()])
    weights = torch.cat([torch.ones(num_nodes, device=device), torch.exp(-distances.flatten() / 2)])
    inverse_sqrt_degree = torch.zeros(num_nodes, device=device).index_add_(0, rows, weights).rsqrt()
    values = inverse_sqrt_degree[rows] * weights * inverse_sqrt_degree[cols]
    propagation = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (num_nodes, num_nodes),
                                          check_invariants=True).coalesce()
    with warnings.catch_warnings():
        # CSR is "beta" in torch, but its product with a dense matrix is the fastest sparse
        # product on CPU and runs on CUDA through cuSPARSE.
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta state")
        return propagation.to_sparse_csr(), propagation.t().coalesce().to_sparse_csr()


class _Propagate(torch.autograd.Function):
    """P @ x with the gradient P^T @ grad from a transpose built once.

    Autograd through a sparse product would transpose P on every backward pass, which
    makes it several times slower than the product itself.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, propagation: torch.Tensor,
                transposed: torch.Tensor) -> torch.Tensor:
        ctx.transposed = transposed
        return propagation @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.transposed @ grad, None, None


class _GraphConvolution(nn.Module):
    """One GCN layer (Kipf & Welling): P (x W) + b, Glorot-initialised W, zero b."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        nn.init.xavier_uniform_(self.linear.weight)
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor, graph: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        # Transform first: the sparse product then runs on the narrower output width.
        return _Propagate.apply(self.linear(x), *graph) + self.bias


class _ScoreGCN(nn.Module):
    """GCN layers of the given widths, ReLU and dropout between them, one score per node."""

    def __init__(self, widths: list[int], dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(_GraphConvolution(a, b) for a, b in zip(widths, widths[1:]))
        self.dropout = dropout

    def forward(self, x: torch.Tensor, graph: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = F.dropout(F.relu(layer(x, graph)), self.dropout, self.training)
        return self.layers[-1](x, graph).squeeze(1)


def gnn_extrapolate(embeddings: torch.Tensor, labels: torch.Tensor, scored_indices: torch.Tensor,
                    scores: torch.Tensor, *, num_classes: int | None = None, k: int = 10,
                    hidden: tuple[int, ...] = (512, 256), dropout: float = 0.5,
                    epochs: int = 500, lr: float = 1e-3, val_fraction: float = 0.1,
                    seed: int = 0, keep_scored: bool = True,
                    chunk_size: int = 1024) -> torch.Tensor:
    """Scores for all N samples predicted by a GCN on the kNN graph of the embeddings.

    ``embeddings`` (N, D) and ``labels`` (N,) cover every sample; ``scored_indices`` (S,)
    are distinct positions with ``scores`` (S,). Graph: each node linked to its ``k``
    nearest others (paper: 10 or 20), weight exp(-distance / 2), normalised as
    D^-1/2 (A + I) D^-1/2. Node input: one-hot label (``num_classes``, default
    labels.max() + 1) then the embedding. Layers: ``hidden`` widths then 1, ReLU and
    ``dropout`` between. A seeded ``val_fraction`` of the scored nodes validates, the rest
    train with MSE, full batch, Adam at ``lr`` for ``epochs`` steps (one step = one epoch
    over the graph; 500 is our choice); the predictions of the epoch with the best
    validation Pearson correlation are returned. ``keep_scored`` (the paper's output)
    puts the known scores back at the scored positions; False returns the model's
    prediction for every node. Everything runs on the embeddings' device, in float32.
    The same ``seed`` gives the same result on CPU at a given thread count (the thread
    count changes the summation order); the caller's RNG state is untouched.
    """
    device = embeddings.device
    scored_indices = scored_indices.to(device)
    _check_scored(len(embeddings), scored_indices, scores, 1)
    if not 1 <= k < len(embeddings):
        raise ValueError(f"k: need 1 <= k < {len(embeddings)} (the samples), got {k}")
    num_validation = int(val_fraction * len(scored_indices))
    if not 2 <= num_validation < len(scored_indices):
        raise ValueError(f"val_fraction: {val_fraction} of {len(scored_indices)} scored samples "
                         "must leave at least 2 for validation and 1 for training")
    labels = labels.to(device=device, dtype=torch.long)
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    inputs = torch.cat([F.one_hot(labels, num_classes).float(), embeddings.float()], dim=1)
    graph = _propagation_matrices(embeddings, k, chunk_size)
    targets = scores.to(device=device, dtype=torch.float32)

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(scored_indices), generator=generator).to(device)
    validation, training = order[:num_validation], order[num_validation:]
    # Weight init and dropout draw from the global RNGs: seed a private copy of them.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = _ScoreGCN([inputs.shape[1], *hidden, 1], dropout).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        best_correlation = torch.tensor(float("-inf"), device=device)
        best_predictions = torch.zeros(len(embeddings), device=device)
        for _ in range(epochs):
            model.train()
            predictions = model(inputs, graph)
            loss = F.mse_loss(predictions[scored_indices[training]], targets[training])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            model.eval()
            with torch.no_grad():
                predictions = model(inputs, graph)
            # Compared on the device (no host sync per epoch); a constant prediction has
            # no correlation (NaN) and counts as -1, so the first epoch always registers.
            correlation = _pearson(predictions[scored_indices[validation]],
                                   targets[validation]).nan_to_num(-1.0)
            improved = correlation > best_correlation
            best_correlation = torch.where(improved, correlation, best_correlation)
            best_predictions = torch.where(improved, predictions, best_predictions)
    if keep_scored:
        best_predictions[scored_indices] = targets
    return best_predictions


# ----------------------------------------------------------------------------- correlations

def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    """Refuse inputs that are not two 1-D tensors of one length, at least 2."""
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
        raise ValueError(f"correlation: need two 1-D tensors of one length >= 2, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")


def _pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation as a 0-d tensor on the inputs' device, computed in float64."""
    x = x.double() - x.double().mean()
    y = y.double() - y.double().mean()
    return (x * y).sum() / (x.square().sum() * y.square().sum()).sqrt()


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of ``x`` (float64); tied values share the mean of the ranks they span."""
    order = x.argsort(stable=True)
    _, group, counts = x[order].unique_consecutive(return_inverse=True, return_counts=True)
    last_rank = counts.cumsum(0).double()
    ranks = torch.empty(len(x), dtype=torch.float64, device=x.device)
    ranks[order] = (last_rank - (counts - 1) / 2)[group]
    return ranks


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of two 1-D tensors of one length (computed in float64).

    NaN when either is constant (as scipy.stats.pearsonr).
    """
    _check_pair(x, y)
    return float(_pearson(x, y))


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation: Pearson of the ranks, tied values taking their average rank.

    Matches scipy.stats.spearmanr on inputs without NaN; NaN when either is constant.
    """
    _check_pair(x, y)
    return float(_pearson(_average_ranks(x), _average_ranks(y)))


# ---------------------------------------------------------------------------------------
# The registry: every extrapolator, by the name a config gives
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extrapolator:
    """A way to carry a scored subset's scores to every sample.

    ``extrapolate(embeddings, labels, scored_indices, scores, k=, weighting=, epochs=,
    num_classes=, seed=)`` returns the N scores (each reads what it needs of the keyword
    arguments); ``settings`` names the config fields besides ``knn_k`` it reads, which a
    record keeps; ``problem(scored, train_size, k)`` says what a subset of ``scored`` of
    ``train_size`` samples rules out for it, or None; ``title`` is what tables call it.
    """

    name: str
    title: Callable[[str], str]  # of the kNN weighting, which only kNN reads
    extrapolate: Callable[..., torch.Tensor]
    settings: tuple[str, ...]
    problem: Callable[[int, int, int], str | None]


def _knn(embeddings, labels, scored_indices, scores, *, k, weighting, **_) -> torch.Tensor:
    return knn_extrapolate(embeddings, scored_indices, scores, k=k, weighting=weighting)


def _gnn(embeddings, labels, scored_indices, scores, *, k, num_classes, epochs, seed,
         **_) -> torch.Tensor:
    return gnn_extrapolate(embeddings, labels, scored_indices, scores, num_classes=num_classes,
                           k=k, epochs=epochs, seed=seed)


def _knn_problem(scored: int, train_size: int, k: int) -> str | None:
    return f"knn_k: {k} exceeds the {scored} scored samples" if k > scored else None


def _gnn_problem(scored: int, train_size: int, k: int) -> str | None:
    if scored < GNN_MIN_SCORED:
        return f"score_subset: gnn needs at least {GNN_MIN_SCORED} scored samples, got {scored}"
    if k >= train_size:
        return f"knn_k: the gnn graph needs knn_k < {train_size} (the samples), got {k}"
    return None


EXTRAPOLATORS: dict[str, Extrapolator] = {x.name: x for x in (
    Extrapolator("knn", lambda weighting: "kNN-exp" if weighting == "exp" else "kNN", _knn,
                 ("knn_weighting",), _knn_problem),
    Extrapolator("gnn", lambda weighting: "GNN", _gnn, ("gnn_epochs",), _gnn_problem),
)}
