"""Selection strategies for active learning: which pool samples get labeled next.

Every strategy returns positions INTO THE POOL (0..len(pool)-1 of the tensors it was
given, not dataset indices): a 1-D int64 tensor of exactly ``count`` distinct positions,
on the input's device. Ties are broken deterministically: among equal scores the lower
position wins, so a run is reproducible on any device.

    probs = predict(selector, dataset.train, dataset, pool).softmax(1)
    picked = pool[select("least_confidence", 1000, probs=probs)]
    picked = pool[select("kcenters", 1000, pool_features=f_pool, labeled_features=f_lab)]

The uncertainty scores (least confidence, entropy, margin) take softmax outputs, one row
per pool sample, each summing to 1; they are computed in at least float32.
"""

from __future__ import annotations

import torch

__all__ = [
    "METRICS",
    "least_confidence",
    "entropy",
    "margin",
    "random_selection",
    "k_centers",
    "select",
]

METRICS = ("random", "least_confidence", "entropy", "margin", "kcenters")


def _check_count(count: int, pool_size: int) -> None:
    """Refuse counts that cannot give ``count`` distinct positions."""
    if not 0 <= count <= pool_size:
        raise ValueError(f"count: cannot select {count} samples from a pool of {pool_size}; "
                         "need 0 <= count <= pool size")


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32, or float64 when it already is (bf16 scores would tie far too often)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _pick(scores: torch.Tensor, count: int, largest: bool) -> torch.Tensor:
    """The positions of the ``count`` largest (or smallest) scores, lower position first on ties.

    A stable sort keeps equal scores in position order in either direction; ``topk``
    makes no such promise.
    """
    _check_count(count, len(scores))
    return torch.sort(scores, descending=largest, stable=True).indices[:count]


def least_confidence(probs: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` samples whose top class probability max_c p_c is SMALLEST.

    ``probs`` is (pool, classes) softmax output, rows summing to 1.
    """
    return _pick(_at_least_float32(probs).amax(1), count, largest=False)


def entropy(probs: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` samples whose predictive entropy -sum_c p_c log p_c is LARGEST.

    ``probs`` is (pool, classes) softmax output, rows summing to 1; 0 log 0 counts as 0.
    """
    return _pick(torch.special.entr(_at_least_float32(probs)).sum(1), count, largest=True)


def margin(probs: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` samples whose margin p(top-1) - p(top-2) is SMALLEST.

    ``probs`` is (pool, classes) softmax output, rows summing to 1, with two classes or more.
    """
    if probs.shape[1] < 2:
        raise ValueError(f"margin: needs at least 2 classes, got {probs.shape[1]}")
    top2 = _at_least_float32(probs).topk(2, dim=1).values
    return _pick(top2[:, 0] - top2[:, 1], count, largest=False)


def random_selection(pool_size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` positions drawn uniformly without replacement, on the generator's device.

    The same generator state gives the same positions (``torch.randperm``).
    """
    _check_count(count, pool_size)
    return torch.randperm(pool_size, generator=generator, device=generator.device)[:count]


def k_centers(pool_features: torch.Tensor, labeled_features: torch.Tensor | None, count: int,
              chunk_size: int = 256, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Greedy k-centers (Sener & Savarese, 2018) over squared Euclidean distances.

    The labeled points are the initial centers. Each of ``count`` steps picks the pool
    point FARTHEST from its nearest center (lowest position on ties), makes it a center
    and updates every pool point's distance to its nearest center. With no labeled
    points every distance starts at +inf, so the first pick is position 0: our choice
    (the pool's order is the caller's, typically a seeded shuffle).
    A pool point that equals a labeled point is at distance 0, so it is picked last.

    No N x N matrix is built: the labeled set is compared with the pool ``chunk_size``
    rows at a time (memory O(pool x chunk_size)), and each step costs one
    matrix-vector product. Distances are computed in ``dtype`` (float32, or float64
    for exactness) as |a|^2 + |b|^2 - 2 a.b, clamped at 0. The loop never waits for
    the host: the chosen position stays a device tensor.
    """
    _check_count(count, len(pool_features))
    device = pool_features.device
    # Distances do not change under translation; centring on the pool mean keeps the
    # norms small, which reduces the cancellation in |a|^2 + |b|^2 - 2 a.b (penultimate
    # ReLU features are all non-negative, far from the origin).
    pool = pool_features.to(dtype)
    mean = pool.mean(0)
    pool = pool - mean
    pool_sq = pool.square().sum(1)
    nearest = torch.full((len(pool),), float("inf"), dtype=dtype, device=device)
    if labeled_features is not None:
        labeled = labeled_features.to(device=device, dtype=dtype) - mean
        for start in range(0, len(labeled), chunk_size):
            block = labeled[start:start + chunk_size]
            # (block x pool) squared distances, then the nearest block row for each pool point.
            dist = torch.addmm(block.square().sum(1, keepdim=True) + pool_sq, block, pool.T,
                               alpha=-2)
            torch.minimum(nearest, dist.amin(0), out=nearest)
        nearest.clamp_(min=0)

    chosen = torch.empty(count, dtype=torch.long, device=device)
    for step in range(count):
        # argmax returns the first maximum: the lowest position wins a tie.
        index = nearest.argmax().view(1)
        chosen[step] = index[0]
        # Chosen points drop to -inf, below every real distance, so none is picked twice.
        nearest.index_fill_(0, index, float("-inf"))
        center = pool.index_select(0, index)[0]
        dist = torch.addmv(pool_sq + pool_sq.index_select(0, index), pool, center, alpha=-2)
        torch.minimum(nearest, dist.clamp_(min=0), out=nearest)
    return chosen


def _pool_size(pool_size: int | None, *tensors: torch.Tensor | None) -> int:
    """The pool size: ``pool_size`` or the length of the given tensors, which must agree."""
    sizes = {len(t) for t in tensors if t is not None}
    if pool_size is not None:
        sizes.add(pool_size)
    if len(sizes) > 1:
        raise ValueError(f"select: the pool sizes disagree ({sorted(sizes)}); pass one pool")
    if not sizes:
        raise ValueError("select: random needs pool_size, probs or pool_features to know the pool")
    return sizes.pop()


def select(metric: str, count: int, *, probs: torch.Tensor | None = None,
           pool_features: torch.Tensor | None = None,
           labeled_features: torch.Tensor | None = None,
           generator: torch.Generator | None = None, pool_size: int | None = None) -> torch.Tensor:
    """``count`` pool positions chosen by ``metric``, one of ``METRICS``.

    ``random`` needs ``generator`` and takes the pool size from ``pool_size``, ``probs``
    or ``pool_features``; ``least_confidence``, ``entropy`` and ``margin`` need ``probs``
    (softmax outputs); ``kcenters`` needs ``pool_features`` and takes
    ``labeled_features`` as its initial centers (None: no labeled set yet).
    An unknown metric, a missing input, or a count outside 0..pool size raises
    ``ValueError`` with a one-line message.
    """
    if metric not in METRICS:
        raise ValueError(f"metric: unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    needs = {"random": ("generator", generator), "kcenters": ("pool_features", pool_features)}
    name, value = needs.get(metric, ("probs", probs))
    if value is None:
        raise ValueError(f"metric: {metric} needs {name}")
    if metric == "random":
        return random_selection(_pool_size(pool_size, probs, pool_features), count, generator)
    if metric == "kcenters":
        return k_centers(pool_features, labeled_features, count)
    strategy = {"least_confidence": least_confidence, "entropy": entropy, "margin": margin}
    return strategy[metric](probs, count)
