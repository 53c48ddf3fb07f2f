"""Score extrapolation: kNN against a brute-force reference, the GNN, and the correlations."""

import contextlib

import pytest
import torch
from scipy import stats

from pf.experiments.config import DataPruningConfig
from pf.extrapolate import (EXTRAPOLATORS, WEIGHTINGS, gnn_extrapolate, knn_extrapolate, pearson,
                            spearman)


def smooth_problem(num_samples: int, num_scored: int, seed: int = 0):
    """Gaussian embeddings in 8-d, a smooth score of them, a random scored subset, labels."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(num_samples, 8, generator=generator)
    direction = torch.randn(8, generator=generator)
    direction /= direction.norm()
    score = torch.sin(embeddings @ direction) + 0.5 * torch.cos(embeddings[:, 0])
    scored = torch.randperm(num_samples, generator=generator)[:num_scored]
    labels = (embeddings[:, 1] > 0).long() + (embeddings[:, 2] > 0).long()
    unscored = torch.ones(num_samples, dtype=torch.bool)
    unscored[scored] = False
    return embeddings, score, scored, labels, unscored


def brute_force_knn(embeddings, scored, scores, k, weighting):
    """The reference: every distance at once (cdist), topk, then the (weighted) mean."""
    distances, positions = torch.cdist(embeddings, embeddings[scored]).topk(k, dim=1, largest=False)
    weights = torch.ones_like(distances) if weighting == "mean" else torch.exp(-distances)
    estimate = (weights * scores[positions]).sum(1) / weights.sum(1)
    estimate[scored] = scores
    return estimate


# ----------------------------------------------------------------------------- kNN

@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_knn_recovers_a_smooth_score(weighting):
    embeddings, score, scored, _, unscored = smooth_problem(2000, 1000)
    estimate = knn_extrapolate(embeddings, scored, score[scored], k=10, weighting=weighting)
    assert estimate.shape == (2000,)
    assert torch.equal(estimate[scored], score[scored])
    assert pearson(estimate[unscored], score[unscored]) > 0.9


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("chunk_size", [1, 7, 256, 5000])
def test_knn_matches_brute_force(weighting, chunk_size):
    embeddings, score, scored, _, _ = smooth_problem(500, 120)
    embeddings, score = embeddings.double(), score.double()
    estimate = knn_extrapolate(embeddings, scored, score[scored], k=5, weighting=weighting,
                               chunk_size=chunk_size, dtype=torch.float64)
    reference = brute_force_knn(embeddings, scored, score[scored], 5, weighting)
    assert estimate.dtype == torch.float64
    torch.testing.assert_close(estimate, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 7, 5000])
def test_knn_finds_exactly_the_nearest_scored_sample(chunk_size):
    # With k = 1 and score = the scored sample's own position, the estimate IS the neighbour.
    embeddings, _, scored, _, _ = smooth_problem(500, 120)
    positions = torch.arange(120, dtype=torch.float64)
    estimate = knn_extrapolate(embeddings, scored, positions, k=1, chunk_size=chunk_size)
    nearest = torch.cdist(embeddings.double(), embeddings[scored].double()).argmin(1).double()
    assert torch.equal(estimate, nearest)


def test_knn_exp_weighting_survives_large_distances():
    # At distances of hundreds every exp(-distance) underflows in float32 (0 / 0); the
    # float64 reference does not underflow yet, and the float32 estimate must match it.
    embeddings, score, scored, _, _ = smooth_problem(300, 60)
    embeddings = embeddings * 100
    estimate = knn_extrapolate(embeddings, scored, score[scored], k=3, weighting="exp")
    reference = brute_force_knn(embeddings.double(), scored, score[scored].double(), 3, "exp")
    assert torch.isfinite(estimate).all()
    torch.testing.assert_close(estimate, reference.float(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("change, message", [
    (dict(weighting="median"), "weighting"),
    (dict(k=0), "k"),
    (dict(k=61), "k"),
    (dict(scored_indices=torch.tensor([0, 0, 1])), "distinct"),
    (dict(scored_indices=torch.tensor([0, 300])), "scored_indices"),
])
def test_knn_rejects_bad_arguments(change, message):
    embeddings, score, scored, _, _ = smooth_problem(300, 60)
    arguments = dict(embeddings=embeddings, scored_indices=scored, scores=score[scored])
    arguments.update(change)
    if "scored_indices" in change:
        arguments["scores"] = torch.zeros(len(change["scored_indices"]))
    with pytest.raises(ValueError, match=message):
        knn_extrapolate(**arguments)


# ----------------------------------------------------------------------------- GNN

GNN_ARGUMENTS = dict(k=10, hidden=(32, 16), epochs=80, lr=1e-2, seed=3)


@contextlib.contextmanager
def single_thread():
    """One torch thread: on these tiny graphs thread hand-offs cost more than they save
    (ten times over on a busy shared machine), and results depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _single_thread():
    """Every test here runs on one thread (after conftest has set its own count)."""
    with single_thread():
        yield


@pytest.fixture(scope="module")
def gnn_problem():
    """A 600-node smooth problem with 200 scored nodes, and one GNN run on it."""
    embeddings, score, scored, labels, unscored = smooth_problem(600, 200, seed=1)
    with single_thread():
        predicted = gnn_extrapolate(embeddings, labels, scored, score[scored], keep_scored=False,
                                    **GNN_ARGUMENTS)
    return embeddings, score, scored, labels, unscored, predicted


def test_gnn_beats_the_mean_predictor_on_unscored_nodes(gnn_problem):
    _, score, scored, _, unscored, predicted = gnn_problem
    mean_predictor_error = (score[unscored] - score[scored].mean()).square().mean()
    assert (predicted[unscored] - score[unscored]).square().mean() < 0.7 * mean_predictor_error
    assert pearson(predicted[unscored], score[unscored]) > 0.6


def test_gnn_is_deterministic_with_a_seed_and_leaves_the_global_rng_alone(gnn_problem):
    embeddings, score, scored, labels, _, predicted = gnn_problem
    rng_before = torch.get_rng_state()
    again = gnn_extrapolate(embeddings, labels, scored, score[scored], keep_scored=False,
                            **GNN_ARGUMENTS)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.equal(again, predicted)
    other_seed = gnn_extrapolate(embeddings, labels, scored, score[scored], keep_scored=False,
                                 **{**GNN_ARGUMENTS, "seed": 4, "epochs": 5})
    assert not torch.equal(other_seed, predicted)


def test_gnn_keeps_the_known_scores_by_default(gnn_problem):
    embeddings, score, scored, labels, unscored, predicted = gnn_problem
    kept = gnn_extrapolate(embeddings, labels, scored, score[scored], **GNN_ARGUMENTS)
    assert torch.equal(kept[scored], score[scored])
    assert torch.equal(kept[unscored], predicted[unscored])


def test_gnn_rejects_a_validation_split_too_small():
    embeddings, score, scored, labels, _ = smooth_problem(100, 10)
    with pytest.raises(ValueError, match="val_fraction"):
        gnn_extrapolate(embeddings, labels, scored, score[scored], epochs=1)


# ----------------------------------------------------------------------------- correlations

def test_pearson_matches_scipy():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(500, generator=generator)
    y = 0.5 * x + torch.randn(500, generator=generator)
    assert pearson(x, y) == pytest.approx(
        stats.pearsonr(x.double().numpy(), y.double().numpy()).statistic, abs=1e-12)


@pytest.mark.parametrize("with_ties", [False, True])
def test_spearman_matches_scipy(with_ties):
    generator = torch.Generator().manual_seed(1)
    if with_ties:
        x = torch.randint(0, 6, (400,), generator=generator).float()
        y = (x + torch.randint(0, 4, (400,), generator=generator)).double()
    else:
        x = torch.randn(400, generator=generator)
        y = x.exp() + torch.randn(400, generator=generator)
    expected = stats.spearmanr(x.double().numpy(), y.double().numpy()).statistic
    assert spearman(x, y) == pytest.approx(expected, abs=1e-12)


def test_correlations_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="correlation"):
        pearson(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="correlation"):
        spearman(torch.zeros(1), torch.zeros(1))


@pytest.mark.parametrize("name", list(EXTRAPOLATORS))
def test_every_registered_extrapolator_carries_scores_to_every_sample(name):
    extrapolator = EXTRAPOLATORS[name]
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(60, 4, generator=generator)
    scored = torch.arange(0, 60, 2)
    scores = embeddings[scored, 0].clone()
    estimate = extrapolator.extrapolate(embeddings, torch.zeros(60, dtype=torch.long), scored,
                                        scores, k=5, weighting="mean", epochs=5,
                                        num_classes=2, seed=0)
    assert estimate.shape == (60,) and torch.isfinite(estimate).all()
    assert torch.equal(estimate[scored].float(), scores)  # the scored keep their own
    assert extrapolator.problem(30, 60, 5) is None
    assert extrapolator.title("mean")
    assert all(hasattr(DataPruningConfig(), setting) for setting in extrapolator.settings)


def test_what_a_subset_rules_out_is_said_per_extrapolator():
    assert "knn_k: 40 exceeds the 30 scored" in EXTRAPOLATORS["knn"].problem(30, 60, 40)
    assert "gnn needs at least" in EXTRAPOLATORS["gnn"].problem(10, 60, 5)
    assert "knn_k < 60" in EXTRAPOLATORS["gnn"].problem(30, 60, 60)
