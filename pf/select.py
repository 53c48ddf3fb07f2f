"""Selection strategies for active learning: which pool samples get labeled next.

``STRATEGIES`` is the one registry of them (a new strategy is one entry); ``select`` runs one
by name. Every strategy returns positions INTO THE POOL (not dataset indices): a 1-D int64
tensor of exactly ``count`` distinct positions, on the input's device; among equal scores
the lower position wins.

    probs = predict(selector, dataset.train, dataset, pool).softmax(1)
    picked = pool[select("least_confidence", 1000, probs=probs)]

Why it works this way: docs/internals.md, "pf.select".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = [
    "RANDOM",
    "LEAST_CONFIDENCE",
    "Strategy",
    "STRATEGIES",
    "least_confidence",
    "entropy",
    "margin",
    "MC_PROBS",
    "bald",
    "mc_entropy",
    "random_selection",
    "pick",
    "k_centers",
    "PROBS_FEATURES",
    "badge",
    "norm_gs",
    "norm_sample",
    "norm_top",
    "select",
]


def _check_count(count: int, pool_size: int) -> None:
    """Refuse counts that cannot give ``count`` distinct positions."""
    if not 0 <= count <= pool_size:
        raise ValueError(f"count: cannot select {count} samples from a pool of {pool_size}; "
                         "need 0 <= count <= pool size")


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32, or float64 when it already is (bf16 scores would tie far too often)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def pick(scores: torch.Tensor, count: int, largest: bool) -> torch.Tensor:
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
    return pick(_at_least_float32(probs).amax(1), count, largest=False)


def entropy(probs: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` samples whose predictive entropy -sum_c p_c log p_c is LARGEST.

    ``probs`` is (pool, classes) softmax output, rows summing to 1; 0 log 0 counts as 0.
    """
    return pick(torch.special.entr(_at_least_float32(probs)).sum(1), count, largest=True)


def margin(probs: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` samples whose margin p(top-1) - p(top-2) is SMALLEST.

    ``probs`` is (pool, classes) softmax output, rows summing to 1, with two classes or more.
    """
    if probs.shape[1] < 2:
        raise ValueError(f"margin: needs at least 2 classes, got {probs.shape[1]}")
    top2 = _at_least_float32(probs).topk(2, dim=1).values
    return pick(top2[:, 0] - top2[:, 1], count, largest=False)


def _mean_probs(mc_probs: torch.Tensor) -> torch.Tensor:
    """The Monte-Carlo mean of (passes, pool, classes) softmax rows, in at least float32."""
    if mc_probs.dim() != 3:
        raise ValueError(f"mc_probs: expected (passes, pool, classes), got "
                         f"{tuple(mc_probs.shape)}")
    return _at_least_float32(mc_probs).mean(0)


def bald(mc_probs: torch.Tensor, count: int) -> torch.Tensor:
    """BALD (Houlsby et al. 2011; Gal, Islam, Ghahramani 2017): the ``count`` samples whose
    mutual information between prediction and weights is LARGEST,
    I = H[mean_t p_t] - mean_t H[p_t],
    over T Monte-Carlo dropout passes: ``mc_probs`` is (T, pool, classes), rows summing to
    1. High when the passes agree on being unsure of nothing but disagree with each other;
    0 when every pass gives the same distribution. Entropies in nats, 0 log 0 = 0.
    """
    mean = _mean_probs(mc_probs)
    expected = torch.special.entr(_at_least_float32(mc_probs)).sum(2).mean(0)
    return pick(torch.special.entr(mean).sum(1) - expected, count, largest=True)


def mc_entropy(mc_probs: torch.Tensor, count: int) -> torch.Tensor:
    """Max entropy over Monte-Carlo dropout (Gal et al. 2017): the ``count`` samples whose
    entropy of the mean prediction H[mean_t p_t] is LARGEST; ``mc_probs`` as for ``bald``."""
    return pick(torch.special.entr(_mean_probs(mc_probs)).sum(1), count, largest=True)


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


# --- BADGE (Ash et al.) -----------------------------------------------------------------


def badge(probs: torch.Tensor, features: torch.Tensor, count: int, generator: torch.Generator,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """BADGE (Ash et al., ICLR 2020): k-means++ seeding over gradient embeddings.

    A sample's embedding is the gradient of the cross-entropy at its predicted label
    with respect to the classifier's weights, g = (p - onehot(argmax p)) outer h
    (``probs`` (pool, classes) softmax rows, ``features`` (pool, d) the classifier's
    input): large where the network is unsure, pointing where its features do. The first
    pick is the largest embedding (lowest position on ties), as in the authors' code;
    each next one is drawn with probability proportional to its squared distance to the
    nearest pick so far (k-means++), from ``generator`` on the inputs' device, so a pick
    is never drawn twice. Should every unpicked sample sit on a pick (distance 0), the
    rest are taken in a uniformly random order.

    The embeddings (pool x classes x d) are never built: distances factor,
    |g_i - g_j|^2 = |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 (a_i . a_j)(h_i . h_j) with
    a = p - onehot, so memory is O(pool x (classes + d)) (a 50,000-image pool of 10
    classes and 64 features: 15 MB) and each pick one pass over the pool. Computed in
    ``dtype``; one host sync per pick (the restart test).
    """
    _check_count(count, len(probs))
    if len(features) != len(probs):
        raise ValueError(f"badge: {len(probs)} probability rows but {len(features)} feature rows")
    probs, features = probs.to(dtype), features.to(dtype)
    residual = probs - torch.nn.functional.one_hot(probs.argmax(1), probs.shape[1]).to(dtype)
    squared = residual.square().sum(1) * features.square().sum(1)  # |g|^2 per sample
    nearest = torch.full_like(squared, float("inf"))
    taken = torch.zeros(len(probs), dtype=torch.bool, device=probs.device)
    chosen = torch.empty(count, dtype=torch.long, device=probs.device)
    index = squared.argmax().view(1) if count else None
    for step in range(count):
        if step:
            weights = nearest.masked_fill(taken, 0)
            if not weights.any():  # every unpicked sample equals a pick
                chosen[step:] = _random_order((~taken).nonzero().squeeze(1), count - step,
                                              generator)
                break
            index = torch.multinomial(weights, 1, generator=generator)
        chosen[step] = index[0]
        taken[index] = True
        cross = (residual @ residual[index[0]]) * (features @ features[index[0]])
        torch.minimum(nearest, (squared + squared[index] - 2 * cross).clamp_(min=0), out=nearest)
    return chosen


# --- norm-based diverse selection (Bar & Giryes) -------------------------------------


def norm_top(features: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` samples whose feature L2 norm is LARGEST (lower position on ties).

    ``features`` is (pool, dim), un-normalized. The deterministic ablation of
    ``norm_gs``: no sampling, no orthogonalization.
    """
    return pick(_at_least_float32(features).norm(dim=1), count, largest=True)


def _random_order(positions: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` of ``positions`` in a uniformly random order: for samples no norm can rank."""
    order = torch.randperm(len(positions), generator=generator, device=generator.device)[:count]
    return positions[order.to(positions.device)]


def norm_sample(features: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` samples drawn without replacement with probability proportional to the
    feature L2 norm, p_i = ||F_i|| / sum_j ||F_j|| over the samples not yet drawn.

    ``features`` is (pool, dim), un-normalized; ``generator`` lives on its device. The
    ablation of ``norm_gs`` without orthogonalization. Samples whose features are all
    zero have probability 0: they come last, in a uniformly random order.
    """
    _check_count(count, len(features))
    norms = _at_least_float32(features).norm(dim=1)
    drawable = min(count, int(torch.count_nonzero(norms)))
    drawn = norms.new_empty(0, dtype=torch.long)
    if drawable:
        drawn = torch.multinomial(norms, drawable, replacement=False, generator=generator)
    zero = (norms == 0).nonzero().squeeze(1)
    return torch.cat([drawn, _random_order(zero, count - drawable, generator)])


def _orthonormal_span(vectors: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Orthonormal rows spanning the rows of ``vectors``, without the directions whose
    singular value is at most ``tolerance`` times the largest (numerically absent)."""
    if len(vectors) == 0:
        return vectors.new_zeros(0, vectors.shape[1])
    _, values, directions = torch.linalg.svd(vectors, full_matrices=False)
    return directions[values > tolerance * values[0]]


def _remove_span(vectors: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """The rows of ``vectors`` minus their projection on the orthonormal rows of ``basis``.

    Two passes of classical Gram-Schmidt: one pass leaves an error proportional to the
    rounding of its own coefficients, which a second pass removes ("twice is enough").
    """
    for _ in range(2):
        vectors = vectors - (vectors @ basis.T) @ basis
    return vectors


def _new_norms(residual: torch.Tensor, norms: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Residual norms, with those at most ``tolerance`` x the sample's own norm set to 0:
    that much is rounding left by the projections, not a new direction."""
    left = residual.norm(dim=1)
    return left.masked_fill_(left <= tolerance * norms, 0)


def norm_gs(features: torch.Tensor, count: int, generator: torch.Generator,
            labeled_features: torch.Tensor | None = None, tolerance: float = 1e-3,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Norm-based sampling with Gram-Schmidt orthogonalization (Bar & Giryes).

    ``features`` is (pool, dim), UN-normalized (e.g. penultimate ReLU features).
    Each of ``count`` steps draws one sample with probability proportional to the norm
    of its residual (what its features hold outside the span covered so far), appends
    the chosen residual's direction to an explicit orthonormal basis, and removes that
    direction from every residual. At the start the residuals are the features
    themselves, so the first draw is p_i = ||F_i|| / sum_j ||F_j||.

    Numerics: a residual norm at most ``tolerance`` times the sample's own feature norm
    counts as 0 (the sample lies in the covered span); each new direction is
    re-orthogonalized against the basis in two classical Gram-Schmidt passes, so the
    basis stays orthonormal to rounding; the chosen sample's residual is set to 0 so it
    is never drawn again. Computed in ``dtype``.

    Restart (our choice; the paper only says one is needed): when no unchosen sample
    has a residual left, because the picks span the features (a budget above their
    rank, at most ``dim``) or the basis has ``dim`` vectors, the basis is emptied and
    the residuals are reset to the original features of the unchosen samples; sampling
    goes on, each restart a fresh diverse sweep. Should only all-zero features remain,
    they are taken in a uniformly random order.

    ``labeled_features`` (our choice, as for k-centers): the span of the labeled set
    is covered from the start, so a pool sample lying in it has residual 0 and is drawn
    only after a restart. The span keeps the labeled set's singular directions above
    ``tolerance`` times its largest singular value. A labeled set that spans all
    ``dim`` dimensions (as soon as it has ``dim`` generic samples) leaves no residual:
    the first step restarts, and the selection equals the one without it.

    Cost: O(count x pool x dim) time, O(pool x dim) memory, no pool x pool matrix;
    everything stays on the features' device (with ``generator`` there too), with one
    host sync per step (the restart test).
    """
    _check_count(count, len(features))
    device = features.device
    original = features.to(dtype)
    size, dim = original.shape
    norms = original.norm(dim=1)
    basis = original.new_zeros(dim, dim)  # rows [0, used) are orthonormal; the rest unused
    used = 0
    if labeled_features is not None:
        if labeled_features.shape[1:] != (dim,):
            raise ValueError(f"labeled_features: expected (n, {dim}) like the pool features, "
                             f"got {tuple(labeled_features.shape)}")
        span = _orthonormal_span(labeled_features.to(device, dtype), tolerance)
        used = len(span)
        basis[:used] = span
    residual = _remove_span(original, basis[:used])
    taken = torch.zeros(size, dtype=torch.bool, device=device)
    chosen = torch.empty(count, dtype=torch.long, device=device)
    for step in range(count):
        weights = _new_norms(residual, norms, tolerance)
        if used == dim or not weights.any():
            # The covered span holds every unchosen sample: restart the sweep.
            used = 0
            residual = original.masked_fill(taken[:, None], 0)
            weights = _new_norms(residual, norms, tolerance)
            if not weights.any():  # only all-zero features are left: nothing ranks them
                remaining = (~taken).nonzero().squeeze(1)
                chosen[step:] = _random_order(remaining, count - step, generator)
                break
        index = torch.multinomial(weights, 1, generator=generator)
        chosen[step] = index[0]
        taken[index] = True
        direction = _remove_span(residual[index], basis[:used])[0]
        direction /= direction.norm()
        basis[used] = direction
        used += 1
        residual.addr_(residual @ direction, direction, alpha=-1)
        residual.index_fill_(0, index, 0)  # exactly 0, whatever the rounding: never drawn again
    return chosen


# --- the registry --------------------------------------------------------------------


@dataclass(frozen=True)
class Strategy:
    """One selection strategy: its function and what that function reads.

    ``select`` calls ``function(first, count=count, ...)`` where ``first`` is, by
    ``inputs``: the pool size ("none": nothing about the samples is read), the softmax
    rows ("probs") or the pool's UN-normalized penultimate features ("features"). It
    adds ``labeled_features=`` when ``labeled_aware`` (the labeled set's features, which
    the pool is measured against, so a round embeds every training image) and
    ``generator=`` when ``needs_generator`` (a ``torch.Generator`` on the input's device).
    ``label`` is the short name figure titles and legends show (tables keep ``name``),
    ``color`` the colour figures draw it in. "mc_probs" strategies read the softmax rows of
    T Monte-Carlo dropout passes, (T, pool, classes) (``pf.train.mc_dropout_probs``);
    "probs+features" ones the softmax rows first and the features as ``features=``.
    """

    name: str
    function: Callable[..., torch.Tensor]
    inputs: str
    labeled_aware: bool
    needs_generator: bool
    label: str
    color: str

    @property
    def reads_network(self) -> bool:
        """Whether picking reads a network's outputs (so that a selector is needed)."""
        return self.inputs != "none"

    def scoring_macs(self, forward_macs: int, classifier_macs: int, mc_passes: int) -> int:
        """MACs of scoring one pool image: one forward pass of the selector, and for a
        Monte-Carlo strategy ``mc_passes`` classifier passes over its features instead of
        the one (dropout sits before the classifier, so the features are computed once)."""
        if self.inputs == MC_PROBS:
            return forward_macs + (mc_passes - 1) * classifier_macs
        return forward_macs


RANDOM, LEAST_CONFIDENCE = "random", "least_confidence"  # the floor; the paper's default
MC_PROBS = "mc_probs"  # the input of the Monte-Carlo dropout strategies
PROBS_FEATURES = "probs+features"  # the input of BADGE: softmax rows and their features
# select()'s arguments that carry each kind of input
INPUT_ARGUMENTS = {"probs": ("probs",), MC_PROBS: (MC_PROBS,), "features": ("pool_features",),
                   PROBS_FEATURES: ("probs", "pool_features")}
STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    # name, function, inputs, labeled_aware, needs_generator, label, color
    Strategy(RANDOM, random_selection, "none", False, True, "random", "0.45"),
    Strategy(LEAST_CONFIDENCE, least_confidence, "probs", False, False, "least confidence",
             "tab:blue"),
    Strategy("entropy", entropy, "probs", False, False, "entropy", "tab:cyan"),
    Strategy("margin", margin, "probs", False, False, "margin", "tab:olive"),
    Strategy("bald", bald, MC_PROBS, False, False, "BALD", "tab:pink"),
    Strategy("mc_entropy", mc_entropy, MC_PROBS, False, False, "entropy (MC dropout)",
             "tab:orange"),
    Strategy("kcenters", k_centers, "features", True, False, "k-centers", "tab:green"),
    Strategy("badge", badge, PROBS_FEATURES, False, True, "BADGE", "tab:gray"),
    Strategy("norm_gs", norm_gs, "features", True, True, "norm + Gram-Schmidt", "tab:red"),
    Strategy("norm_top", norm_top, "features", False, False, "top norm", "tab:purple"),
    Strategy("norm_sample", norm_sample, "features", False, True, "norm sampling", "tab:brown"),
)}


def _pool_size(metric: str, pool_size: int | None, *tensors: torch.Tensor | None) -> int:
    """The pool size: ``pool_size`` or the length of the given tensors, which must agree."""
    sizes = {len(t) for t in tensors if t is not None}
    if pool_size is not None:
        sizes.add(pool_size)
    if len(sizes) > 1:
        raise ValueError(f"select: the pool sizes disagree ({sorted(sizes)}); pass one pool")
    if not sizes:
        raise ValueError(f"select: {metric} needs pool_size, probs or pool_features to know "
                         "the pool")
    return sizes.pop()


def select(metric: str, count: int, *, probs: torch.Tensor | None = None,
           mc_probs: torch.Tensor | None = None, pool_features: torch.Tensor | None = None,
           labeled_features: torch.Tensor | None = None,
           generator: torch.Generator | None = None, pool_size: int | None = None) -> torch.Tensor:
    """``count`` pool positions chosen by ``metric``, a name in ``STRATEGIES``.

    What the entry declares is required: ``probs`` (softmax outputs), ``mc_probs``
    (those of T Monte-Carlo dropout passes, (T, pool, classes)), ``pool_features``
    (un-normalized), or both ``probs`` and ``pool_features`` (BADGE) by its ``inputs``,
    and ``generator`` (on their
    device) when it ``needs_generator``. A strategy of ``inputs="none"`` takes the pool
    size from ``pool_size``, ``probs`` or ``pool_features``. ``labeled_features`` is
    passed only to a ``labeled_aware`` strategy, and may be None (no labeled set yet);
    the others ignore it.
    An unknown metric, a missing input, or a count outside 0..pool size raises
    ``ValueError`` with a one-line message.
    """
    if metric not in STRATEGIES:
        raise ValueError(f"metric: unknown metric {metric!r}; "
                         f"choose one of {', '.join(STRATEGIES)}")
    strategy = STRATEGIES[metric]
    given = {"probs": probs, MC_PROBS: mc_probs, "pool_features": pool_features,
             "generator": generator}
    arguments = INPUT_ARGUMENTS.get(strategy.inputs, ())  # none: it reads no samples
    required = [*arguments, *(["generator"] if strategy.needs_generator else [])]
    for name in required:
        if given[name] is None:
            raise ValueError(f"metric: {metric} needs {name}")
    if not arguments:
        first = _pool_size(metric, pool_size, probs, pool_features)
    else:
        first = given[arguments[0]]
    extra = {"features": pool_features} if strategy.inputs == PROBS_FEATURES else {}
    if strategy.labeled_aware:
        extra["labeled_features"] = labeled_features
    if strategy.needs_generator:
        extra["generator"] = generator
    return strategy.function(first, count=count, **extra)
