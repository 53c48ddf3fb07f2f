"""Selection strategies: the contract every registered strategy keeps (distinct picks,
count, determinism, device, declared inputs), then what each computes: direction,
tie-breaking, k-centers against a brute-force reference, norm-based sampling: its
distribution, diversity, restarts and labeled span."""

import dataclasses
import math

import pytest
import torch

from pf.experiments.config import ActiveLearningConfig
from pf.select import (MC_PROBS, PROBS_FEATURES, STRATEGIES, badge, bald, entropy,
                       k_centers,
                       least_confidence, margin, norm_gs, norm_sample, norm_top,
                       random_selection, select)

UNIFORM = [1 / 3, 1 / 3, 1 / 3]
CONFIDENT = [0.98, 0.01, 0.01]


def _distinct(picked, count):
    assert picked.dtype == torch.long and picked.shape == (count,)
    assert len(set(picked.tolist())) == count


# --- the contract, over the registry --------------------------------------------------

POOL = 40
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, CUDA])]


def _inputs(strategy, device, seed=0):
    """What ``strategy`` declares it reads, drawn from a seeded generator, on ``device``."""
    g = torch.Generator().manual_seed(100)
    given = {}
    if strategy.inputs == "probs":
        given["probs"] = torch.randn(POOL, 10, generator=g).softmax(1).to(device)
    elif strategy.inputs == MC_PROBS:
        given[MC_PROBS] = torch.randn(5, POOL, 10, generator=g).softmax(2).to(device)
    elif strategy.inputs == PROBS_FEATURES:
        given["probs"] = torch.randn(POOL, 10, generator=g).softmax(1).to(device)
        given["pool_features"] = torch.randn(POOL, 16, generator=g).relu().to(device)
    elif strategy.inputs == "features":
        given["pool_features"] = torch.randn(POOL, 16, generator=g).to(device)
    else:
        given["pool_size"] = POOL
    if strategy.labeled_aware:
        given["labeled_features"] = torch.randn(8, 16, generator=g).to(device)
    if strategy.needs_generator:
        given["generator"] = torch.Generator(device=device).manual_seed(seed)
    return given


def test_the_registry_is_what_config_accepts():
    fields = {f.name: f for f in dataclasses.fields(ActiveLearningConfig)}
    # the registry itself, so that a strategy registered later is a valid metric too
    assert fields["metric"].metadata["choices"] is STRATEGIES
    assert all(name == strategy.name for name, strategy in STRATEGIES.items())
    assert {s.inputs for s in STRATEGIES.values()} == {"none", "probs", MC_PROBS, "features",
                                                       PROBS_FEATURES}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_picks_count_distinct_positions_on_the_inputs_device(name, device):
    strategy = STRATEGIES[name]
    for count in (0, 1, 17, POOL):
        picked = select(name, count, **_inputs(strategy, device))
        assert picked.device.type == device
        _distinct(picked.cpu(), count)
        assert all(0 <= position < POOL for position in picked.tolist())
    assert sorted(picked.tolist()) == list(range(POOL))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_is_deterministic_given_its_inputs(name, device):
    strategy = STRATEGIES[name]
    first = select(name, 17, **_inputs(strategy, device))
    assert torch.equal(first, select(name, 17, **_inputs(strategy, device)))
    if strategy.needs_generator:  # another generator state: another draw
        assert not torch.equal(first, select(name, 17, **_inputs(strategy, device, seed=1)))
    elif device == "cuda":  # nothing random: the same positions as on the CPU
        assert first.tolist() == select(name, 17, **_inputs(strategy, "cpu")).tolist()


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_refuses_a_missing_declared_input_in_one_line(name):
    given = _inputs(STRATEGIES[name], "cpu")
    for missing in set(given) - {"labeled_features"}:  # None there means no labeled set yet
        with pytest.raises(ValueError) as error:
            select(name, 1, **{**given, missing: None})
        prefix = "select" if missing == "pool_size" else "metric"
        assert str(error.value).startswith(f"{prefix}: {name} needs {missing}")
        assert "\n" not in str(error.value)


# --- what each strategy computes --------------------------------------------------------


def test_least_confidence_picks_the_smallest_top_probability():
    probs = torch.tensor([CONFIDENT, UNIFORM, [0.6, 0.3, 0.1], [0.8, 0.1, 0.1]])
    assert least_confidence(probs, 1).tolist() == [1]
    picked = least_confidence(probs, 3)
    _distinct(picked, 3)
    assert picked.tolist() == [1, 2, 3]  # max p: 1/3 < 0.6 < 0.8 < 0.98


def test_entropy_picks_the_largest_entropy_and_treats_0_log_0_as_0():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], UNIFORM, CONFIDENT])
    assert entropy(probs, 1).tolist() == [2]
    picked = entropy(probs, 4)
    _distinct(picked, 4)
    # Entropies: 0, log 2, log 3, ~0.11; a NaN from 0 log 0 would sort first.
    assert picked.tolist() == [2, 1, 3, 0]


def test_margin_picks_the_smallest_gap_between_the_top_two():
    probs = torch.tensor([[0.6, 0.1, 0.3], [0.5, 0.5, 0.0], [0.7, 0.2, 0.1], CONFIDENT])
    assert margin(probs, 1).tolist() == [1]
    picked = margin(probs, 3)
    _distinct(picked, 3)
    assert picked.tolist() == [1, 0, 2]  # margins 0, 0.3, 0.5, 0.97


@pytest.mark.parametrize("strategy", [least_confidence, entropy, margin])
def test_a_mixed_pool_gives_exactly_the_unconfident_rows(strategy):
    g = torch.Generator().manual_seed(0)
    unconfident = torch.randperm(200, generator=g)[:30]
    logits = torch.randn(200, 10, generator=g)
    logits[:, 0] += 8  # confident in class 0 ...
    logits[unconfident] = torch.randn(30, 10, generator=g) * 0.1  # ... except these rows
    picked = strategy(logits.softmax(1), 30)
    _distinct(picked, 30)
    assert set(picked.tolist()) == set(unconfident.tolist())


@pytest.mark.parametrize("strategy", [least_confidence, entropy, margin])
def test_equal_scores_go_to_the_lowest_positions(strategy):
    probs = torch.tensor([CONFIDENT] * 3 + [UNIFORM] * 5 + [CONFIDENT] * 2 + [UNIFORM] * 4)
    assert strategy(probs, 7).tolist() == [3, 4, 5, 6, 7, 10, 11]
    # All equal: the first positions, in order.
    assert strategy(torch.tensor([UNIFORM] * 6), 4).tolist() == [0, 1, 2, 3]


def test_scores_accept_bf16_and_float64():
    probs = torch.tensor([CONFIDENT, UNIFORM, [0.6, 0.3, 0.1]])
    for dtype in (torch.bfloat16, torch.float64):
        assert least_confidence(probs.to(dtype), 2).tolist() == [1, 2]


def test_k_centers_picks_the_farthest_point_first():
    labeled = torch.tensor([[0.0, 0.0]])
    pool = torch.tensor([[1.0, 0.0], [10.0, 10.0], [0.0, 3.0], [-5.0, 0.0], [9.0, 10.0]])
    # Nearest-center distances: 1, 200, 9, 25, 181; then (10, 10) takes (9, 10) away.
    assert k_centers(pool, labeled, 1).tolist() == [1]
    assert k_centers(pool, labeled, 5).tolist() == [1, 3, 2, 0, 4]


def test_k_centers_never_repicks_labeled_points_or_repeats():
    labeled = torch.tensor([[0.0, 0.0], [4.0, 4.0]])
    pool = torch.tensor([[0.0, 0.0], [1.0, 1.0], [4.0, 4.0], [2.0, 2.0], [0.0, 0.0]])
    picked = k_centers(pool, labeled, 5)
    _distinct(picked, 5)
    # The copies of labeled points (distance 0) come last, lowest position first.
    assert picked[:2].tolist() == [3, 1] and picked[2:].tolist() == [0, 2, 4]


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_k_centers_sees_every_labeled_point_whatever_the_chunking(chunk_size):
    # The pool holds a copy of every labeled point plus 10 new ones: a labeled point that
    # a chunk skipped would leave its copy at a positive distance, picked among the first.
    g = torch.Generator().manual_seed(2)
    labeled = torch.randn(50, 4, generator=g)
    pool = torch.cat([labeled, torch.randn(10, 4, generator=g)])
    picked = k_centers(pool, labeled, 10, chunk_size=chunk_size)
    assert sorted(picked.tolist()) == list(range(50, 60))


def test_k_centers_without_labeled_points_starts_at_position_0():
    pool = torch.tensor([[5.0], [0.0], [100.0], [1.0]])
    assert k_centers(pool, None, 3).tolist() == [0, 2, 1]
    assert k_centers(pool, torch.empty(0, 1), 3).tolist() == [0, 2, 1]


def _brute_force_k_centers(pool, labeled, count):
    """The plainest greedy k-centers: the full nearest-center distance at every step."""
    chosen = []
    for _ in range(count):
        centers = torch.cat([labeled, pool[chosen]])
        nearest = torch.cdist(pool, centers).amin(1)
        nearest[chosen] = -1
        chosen.append(int(nearest.argmax()))
    return chosen


@pytest.fixture(scope="module")
def features():
    g = torch.Generator().manual_seed(0)
    pool, labeled = torch.randn(20_000, 64, generator=g), torch.randn(500, 64, generator=g)
    return pool, labeled, _brute_force_k_centers(pool.double(), labeled.double(), 50)


@pytest.mark.parametrize("chunk_size", [256, 7, 10_000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_k_centers_matches_brute_force(features, chunk_size, dtype):
    pool, labeled, expected = features
    assert k_centers(pool, labeled, 50, chunk_size=chunk_size, dtype=dtype).tolist() == expected


def test_k_centers_ignores_a_common_offset():
    # Non-negative features far from the origin, like post-ReLU penultimate features.
    g = torch.Generator().manual_seed(1)
    pool, labeled = torch.rand(2_000, 32, generator=g), torch.rand(100, 32, generator=g)
    expected = k_centers(pool, labeled, 20, dtype=torch.float64).tolist()
    assert k_centers(pool + 100, labeled + 100, 20).tolist() == expected


def test_bald_is_the_mutual_information_of_the_passes():
    half = [0.5, 0.5]
    # sample 0: both passes say 50/50 (unsure, but they agree): I = ln 2 - ln 2 = 0;
    # sample 1: the passes are sure of opposite classes: I = ln 2 - 0 = ln 2;
    # sample 2: one sure pass, one 50/50: H[mean (0.75, 0.25)] - (0 + ln 2) / 2
    mc = torch.tensor([[half, [1.0, 0.0], [1.0, 0.0]],
                       [half, [0.0, 1.0], half]])
    mixed = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) - math.log(2) / 2
    assert 0 < mixed < math.log(2)
    assert bald(mc, 3).tolist() == [1, 2, 0]
    assert select("bald", 1, mc_probs=mc).tolist() == [1]
    # the entropy of the mean ranks the agreeing 50/50 passes as high as the disagreeing
    # ones (ln 2 each), ahead of the mixed sample; the tie goes to the lower position
    assert select("mc_entropy", 3, mc_probs=mc).tolist() == [0, 1, 2]


def test_a_monte_carlo_strategy_costs_its_extra_classifier_passes():
    assert STRATEGIES["bald"].scoring_macs(1000, 64, mc_passes=20) == 1000 + 19 * 64
    assert STRATEGIES["least_confidence"].scoring_macs(1000, 64, mc_passes=20) == 1000


def _badge_reference(probs, features, count, generator):
    """BADGE as its paper writes it: explicit gradient embeddings, k-means++ seeding."""
    residual = probs - torch.nn.functional.one_hot(probs.argmax(1), probs.shape[1])
    embeddings = (residual[:, :, None] * features[:, None, :]).flatten(1)
    chosen = [int(embeddings.norm(dim=1).argmax())]
    for _ in range(count - 1):
        distances = torch.cdist(embeddings, embeddings[chosen]).amin(1).square()
        chosen.append(int(torch.multinomial(distances, 1, generator=generator)))
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_badge_is_k_means_plus_plus_over_gradient_embeddings(seed):
    g = torch.Generator().manual_seed(seed)
    probs = torch.randn(60, 4, generator=g, dtype=torch.float64).mul(2).softmax(1)
    features = torch.randn(60, 5, generator=g, dtype=torch.float64).relu()
    expected = _badge_reference(probs, features, 12, torch.Generator().manual_seed(7))
    picked = badge(probs, features, 12, torch.Generator().manual_seed(7), dtype=torch.float64)
    assert picked.tolist() == expected
    assert select("badge", 12, probs=probs, pool_features=features,
                  generator=torch.Generator().manual_seed(7)).tolist()[0] == expected[0]


def test_badge_starts_at_the_largest_gradient_and_never_repeats_a_point():
    # sample 1 is the least sure (largest |p - onehot|) with the largest features; samples
    # 2 and 3 are copies of samples 0 and 1: at distance 0 from a pick, drawn last
    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.9, 0.1], [0.5, 0.5], [0.7, 0.3]])
    features = torch.tensor([[1.0, 0.0], [3.0, 1.0], [1.0, 0.0], [3.0, 1.0], [0.0, 2.0]])
    for seed in range(5):
        picked = badge(probs, features, 5, torch.Generator().manual_seed(seed)).tolist()
        assert picked[0] == 1 and sorted(picked) == [0, 1, 2, 3, 4]
        assert picked.index(3) >= 2  # a copy of the first pick never comes second


def test_select_dispatches_by_name():
    probs = torch.tensor([CONFIDENT, [0.4, 0.35, 0.25], [0.5, 0.5, 0.0], [0.6, 0.3, 0.1]])
    points = torch.tensor([[0.0], [1.0], [7.0], [3.0]])
    assert tuple(STRATEGIES) == ("random", "least_confidence", "entropy", "margin", "bald",
                                 "mc_entropy", "kcenters", "badge", "norm_gs", "norm_top",
                                 "norm_sample")
    assert select("least_confidence", 1, probs=probs).tolist() == [1]
    assert select("entropy", 1, probs=probs).tolist() == [1]
    assert select("margin", 1, probs=probs).tolist() == [2]
    assert select("kcenters", 2, pool_features=points,
                  labeled_features=points[:1]).tolist() == [2, 3]

    def g():
        return torch.Generator().manual_seed(3)

    expected = random_selection(4, 2, g())
    assert torch.equal(select("random", 2, probs=probs, generator=g()), expected)
    assert torch.equal(select("random", 2, pool_size=4, generator=g()), expected)
    assert select("random", 0, pool_size=4, generator=g()).shape == (0,)
    assert select("norm_top", 2, pool_features=points, labeled_features=points).tolist() == [2, 3]
    assert torch.equal(select("norm_sample", 2, pool_features=points, generator=g()),
                       norm_sample(points, 2, g()))
    assert torch.equal(select("norm_gs", 2, pool_features=points, labeled_features=points[:1],
                              generator=g()), norm_gs(points, 2, g(), labeled_features=points[:1]))


@pytest.mark.parametrize("metric, kwargs, message", [
    ("coreset", {}, "metric: unknown metric 'coreset'; choose one of random, least_confidence, "
                    "entropy, margin, bald, mc_entropy, kcenters, badge, norm_gs, norm_top, "
                    "norm_sample"),
    ("badge", {"generator": torch.Generator()}, "metric: badge needs pool_features"),
    ("bald", {}, "metric: bald needs mc_probs"),
    ("entropy", {"count": 5}, "count: cannot select 5 samples from a pool of 4"),
    ("margin", {"count": -1}, "count: cannot select -1 samples from a pool of 4"),
    ("kcenters", {"count": 5, "pool_features": torch.zeros(4, 2)}, "count: cannot select 5"),
    ("random", {"count": 5, "generator": torch.Generator()}, "count: cannot select 5"),
    ("norm_gs", {"count": 5, "pool_features": torch.ones(4, 2), "generator": torch.Generator()},
     "count: cannot select 5"),
])
def test_select_rejects_bad_requests_in_one_line(metric, kwargs, message):
    kwargs = {"count": 1, "probs": torch.full((4, 3), 1 / 3), **kwargs}
    with pytest.raises(ValueError) as error:
        select(metric, **kwargs)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_margin_needs_two_classes():
    with pytest.raises(ValueError, match="margin: needs at least 2 classes"):
        margin(torch.ones(3, 1), 1)


def _seeded(seed):
    return torch.Generator().manual_seed(seed)


def _rank(rows):
    return int(torch.linalg.matrix_rank(rows.double()))


def test_norm_top_picks_exactly_the_largest_norms():
    points = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, -6.0], [5.0, 0.0], [0.0, 0.0],
                           [-2.0, 2.0]])
    # Norms 5, 1, 6, 5, 0, 2.8: the tie at 5 goes to the lower position.
    assert norm_top(points, 4).tolist() == [2, 0, 3, 5]
    assert norm_top(points.bfloat16(), 6).tolist() == [2, 0, 3, 5, 1, 4]


def test_norm_sample_draws_in_proportion_to_the_norm():
    points = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, -4.0]])
    g = _seeded(0)
    draws = torch.cat([norm_sample(points, 1, g) for _ in range(4000)])
    frequency = torch.bincount(draws, minlength=4) / len(draws)
    # p = norm / 10; the binomial std is at most 0.008 here, the bound is 0.03.
    assert torch.allclose(frequency, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.03)


def test_norm_sample_draws_zero_features_last():
    points = torch.cat([torch.zeros(5, 3), torch.randn(5, 3, generator=_seeded(1))])
    picked = norm_sample(points, 10, _seeded(2))
    _distinct(picked, 10)
    assert sorted(picked[:5].tolist()) == [5, 6, 7, 8, 9]


def test_norm_gs_draws_the_dominant_norm_first_far_more_often_than_chance():
    g = _seeded(3)
    points = torch.nn.functional.normalize(torch.randn(100, 8, generator=g), dim=1)
    points[0] *= 100  # p(first pick = 0) = 100 / 199 ~ 0.50; chance is 1 / 100
    firsts = [norm_gs(points, 1, _seeded(seed)).item() for seed in range(200)]
    assert 80 <= firsts.count(0) <= 120  # binomial(200, 0.5): mean 100, std 7


def test_norm_gs_picks_independent_features_up_to_the_dimension():
    points = torch.randn(300, 16, generator=_seeded(4)).relu()  # non-negative, like ReLU features
    for seed in range(5):
        picked = norm_gs(points, 16, _seeded(seed))
        _distinct(picked, 16)
        assert _rank(points[picked]) == 16


def _copies_of_directions(directions=10, copies=20, dim=16):
    """``copies`` rescaled copies of each of ``directions`` random directions, and their labels."""
    g = _seeded(5)
    base = torch.randn(directions, dim, generator=g)
    scale = 0.5 + 1.5 * torch.rand(directions * copies, 1, generator=g)
    label = torch.arange(directions).repeat(copies)
    return base[label] * scale, label


def test_norm_gs_takes_one_sample_per_direction_then_restarts():
    points, direction = _copies_of_directions()
    for seed in range(5):
        picked = norm_gs(points, 30, _seeded(seed))
        _distinct(picked, 30)
        # Rank 10 < dim 16: ten picks exhaust the span, then each restart sweeps it again.
        for sweep in picked.view(3, 10):
            assert sorted(direction[sweep].tolist()) == list(range(10))
    # Without orthogonalization a copy of an already drawn direction is drawn again.
    assert len(set(direction[norm_sample(points, 10, _seeded(0))].tolist())) < 10


def test_norm_gs_restarts_beyond_the_dimension():
    points = torch.randn(100, 4, generator=_seeded(6))
    picked = norm_gs(points, 50, _seeded(7))
    _distinct(picked, 50)
    # Every restart starts a fresh sweep of 4 independent picks.
    assert all(_rank(points[sweep]) == 4 for sweep in picked[:48].view(12, 4))
    assert sorted(norm_gs(points, 100, _seeded(8)).tolist()) == list(range(100))


def test_norm_gs_takes_zero_features_last_and_never_repeats():
    points = torch.cat([torch.zeros(5, 3), torch.randn(5, 3, generator=_seeded(9)),
                        torch.ones(4, 3)])  # duplicates: residual 0 after the first
    picked = norm_gs(points, 14, _seeded(10))
    _distinct(picked, 14)
    assert sorted(picked[-5:].tolist()) == [0, 1, 2, 3, 4]


def test_norm_gs_draws_pool_points_in_the_labeled_span_only_after_a_restart():
    e = torch.eye(4)
    labeled = torch.stack([e[0] + e[1], e[0] - e[1]])  # spans e0, e1
    pool = torch.stack([10 * e[0] + 7 * e[1], e[2], 0.5 * e[3], e[2] + e[3], 3 * e[0]])
    in_span = {0, 4}
    for seed in range(50):
        picked = norm_gs(pool, 5, _seeded(seed), labeled_features=labeled).tolist()
        # Residuals 0, 1, 0.5, 1.4, 0: two picks cover e2, e3; the rest come after the restart.
        assert not in_span & set(picked[:2]) and sorted(picked) == [0, 1, 2, 3, 4]
    # Without the labeled set the large in-span point usually comes first.
    firsts = [norm_gs(pool, 1, _seeded(seed)).item() for seed in range(50)]
    assert firsts.count(0) > 25


def test_norm_gs_treats_rounding_in_the_labeled_span_as_zero():
    g = _seeded(12)
    labeled = torch.randn(3, 6, generator=g)
    # Combinations of labeled rows (exact in the span but for float32 rounding), 10x larger.
    in_span = 10 * torch.randn(20, 3, generator=g) @ labeled
    pool = torch.cat([in_span, torch.randn(3, 6, generator=g)])
    for seed in range(10):
        picked = norm_gs(pool, 3, _seeded(seed), labeled_features=labeled)
        assert sorted(picked.tolist()) == [20, 21, 22]


def test_norm_gs_ignores_a_labeled_set_that_spans_every_dimension():
    points = torch.randn(200, 4, generator=_seeded(13))
    labeled = torch.randn(50, 4, generator=_seeded(14))
    for seed in range(3):
        assert torch.equal(norm_gs(points, 10, _seeded(seed), labeled_features=labeled),
                           norm_gs(points, 10, _seeded(seed)))
    assert torch.equal(norm_gs(points, 10, _seeded(0), labeled_features=torch.empty(0, 4)),
                       norm_gs(points, 10, _seeded(0)))


def test_norm_gs_rejects_labeled_features_of_another_width():
    with pytest.raises(ValueError, match=r"labeled_features: expected \(n, 4\)"):
        norm_gs(torch.ones(5, 4), 2, _seeded(0), labeled_features=torch.ones(3, 5))


@pytest.mark.gpu
@CUDA
def test_norm_gs_on_cuda_completes_the_labeled_span():
    points = torch.randn(2_000, 32, generator=_seeded(15))
    generator = torch.Generator(device="cuda").manual_seed(1)
    picked = norm_gs(points.cuda(), 32, generator, labeled_features=points[:8].cuda()).cpu()
    assert _rank(points[torch.cat([torch.arange(8), picked[:24]])]) == 32


@pytest.mark.gpu
@CUDA
def test_k_centers_on_cuda_matches_brute_force(features):
    pool, labeled, expected = features
    picked = k_centers(pool.cuda(), labeled.cuda(), 50)
    assert picked.device.type == "cuda" and picked.tolist() == expected
