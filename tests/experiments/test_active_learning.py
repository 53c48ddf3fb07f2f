"""The active-learning loop: budget accounting, determinism, phases and their MACs."""

import pytest
import torch

from pf.data import load_dataset
from pf.experiments.active_learning import _pool_subset, initial_networks, run_active_learning
from pf.experiments.config import METHODS, make_config
from pf.experiments.cost import selection_macs
from pf.flops import forward_macs
from pf.models import build_model
from pf.prune import prune_at_init

pytestmark = pytest.mark.slow  # runs the active-learning loop of every method

BUDGETS = [40, 100, 160, 200]


def _run(synthetic, **overrides):
    overrides = {"budgets": BUDGETS, "lr_schedule": [[1, 0.05]], **overrides}
    return run_active_learning(make_config("smoke", overrides), synthetic, progress=False)


@pytest.fixture(scope="module")
def runs(synthetic):
    """One run per method, shared by the accounting tests."""
    return {method: _run(synthetic, method=method) for method in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_labeled_counts_follow_the_budgets_without_repeats(runs, method):
    run = runs[method]
    assert [r.labeled for r in run["rounds"]] == BUDGETS
    labeled = [i for added in run["selected"] for i in added]
    assert len(labeled) == len(set(labeled)) == BUDGETS[-1]
    assert [len(a) for a in run["selected"]] == [BUDGETS[0]] + [b - a for a, b in
                                                                 zip(BUDGETS, BUDGETS[1:])]
    assert min(labeled) >= 0 and max(labeled) < 512


def test_every_method_starts_from_the_same_random_set(runs):
    first = {method: run["selected"][0] for method, run in runs.items()}
    assert first["baseline"] == first["svp"] == first["prunefuse"]


@pytest.mark.parametrize("metric", ["least_confidence", "entropy", "margin", "kcenters"])
def test_each_round_picks_only_from_the_pool(synthetic, metric):
    run = _run(synthetic, metric=metric, budgets=[40, 100, 160])
    seen = set()
    for added in run["selected"]:
        assert not seen & set(added)
        seen |= set(added)
    assert len(seen) == 160


@pytest.mark.parametrize("method, metric", [("prunefuse", "least_confidence"),
                                            ("svp", "kcenters"), ("baseline", "random")])
def test_the_same_seed_selects_the_same_indices(synthetic, method, metric):
    first, second = (_run(synthetic, method=method, metric=metric, budgets=[40, 100, 160])
                     for _ in range(2))
    assert first["selected"] == second["selected"]

    def accuracies(run):
        return [r.target.test_accuracy for r in run["rounds"]]

    assert accuracies(first) == accuracies(second)
    other = _run(synthetic, method=method, metric=metric, budgets=[40, 100, 160], seed=1)
    assert other["selected"] != first["selected"]


def test_norm_gs_labels_exact_budgets_without_repeats_and_reproducibly(synthetic):
    budgets = [40, 100, 160]
    first, second = (_run(synthetic, method="baseline", metric="norm_gs", budgets=budgets)
                     for _ in range(2))
    assert [len(added) for added in first["selected"]] == [40, 60, 60]
    labeled = [i for added in first["selected"] for i in added]
    assert len(set(labeled)) == len(labeled) == 160
    assert first["selected"] == second["selected"]
    # norm_gs scores the labeled set too (its span is removed from the pool first).
    forward = first["networks"]["selector"].forward_macs
    assert first["rounds"][0].macs["pool_scoring"] == forward * 512


def test_records_carry_accuracies_curves_and_phases(runs):
    for method, run in runs.items():
        for index, round_ in enumerate(run["rounds"]):
            target = round_.target
            assert (0 <= target.test_accuracy <= 1
                    and target.curve[-1] == target.test_accuracy)
            assert (round_.macs["target_training"] > 0
                    and round_.seconds["target_training"] > 0)
            last = index == len(BUDGETS) - 1
            assert (round_.macs["pool_scoring"] == 0) == last
            assert (round_.selector is None) == (last and method != "prunefuse")
    fused = runs["prunefuse"]["rounds"][-1].target
    assert fused.init == "fused" and fused.kd


@pytest.mark.parametrize("method", METHODS)
def test_rounds_record_their_test_evaluations_and_teacher_forwards(runs, method):
    run = runs[method]
    target, selector = (run["networks"][role].forward_macs for role in ("target", "selector"))
    for round_ in run["rounds"]:
        # 256 test images after each target epoch, and after a selector's one (last) epoch,
        # unless the baseline's target is its selector; the teacher sees each training image.
        trained_selector = round_.selector is not None and method != "baseline"
        evaluated = target * len(round_.target.curve) + selector * trained_selector
        assert round_.macs["evaluation"] == 256 * evaluated
        taught = selector * round_.labeled if round_.target.kd else 0
        assert round_.macs["distillation"] == taught
    assert any(r.macs["distillation"] for r in run["rounds"]) == (method == "prunefuse")
    assert runs["baseline"]["rounds"][0].selector.is_target


def test_data_selection_adds_the_selector_training_and_scoring_of_earlier_rounds(runs):
    rounds = runs["svp"]["rounds"]
    spent = 0
    for round_ in rounds:
        assert round_.macs["data_selection"] == spent
        spent += round_.macs["selector_training"] + round_.macs["pool_scoring"]
    # Round r trains on budgets[r] images (1 epoch) and scores the rest: the protocol sum.
    forward = runs["svp"]["networks"]["selector"].forward_macs
    assert [r.macs["data_selection"] for r in rounds] == selection_macs(forward, BUDGETS, 512, 1)


def test_prunefuse_selection_costs_about_the_square_of_the_kept_width(synthetic):
    # resnet20 on 16x16 inputs; selector and target train for the same epochs.
    costs = {}
    for method in ("baseline", "prunefuse"):
        run = _run(synthetic, method=method, arch="resnet20", prune_ratio=0.5, budgets=[40, 100])
        costs[method] = run["rounds"][-1].macs["data_selection"]
    assert costs["prunefuse"] / costs["baseline"] == pytest.approx(0.25, abs=0.02)


def test_ablation_switches_reach_the_target(synthetic):
    plain = _run(synthetic, fusion=False, kd=False, budgets=[40, 100])
    assert ({(r.target.init, r.target.kd) for r in plain["rounds"]}
            == {("scratch", False)})
    # The selection does not depend on how the target is trained.
    assert plain["selected"] == _run(synthetic, budgets=[40, 100])["selected"]


def test_random_metric_charges_no_selection(synthetic):
    run = _run(synthetic, method="prunefuse", metric="random", budgets=[40, 100, 160])
    assert [r.macs["data_selection"] for r in run["rounds"]] == [0, 0, 0]
    assert all(r.selector is not None for r in run["rounds"])  # fusion still needs it


def _weights(network: torch.nn.Module) -> torch.Tensor:
    return torch.cat([parameter.detach().flatten() for parameter in network.parameters()])


def test_the_svp_proxy_draws_from_its_own_stream_never_another_seeds_target(synthetic):
    def networks(seed):  # proxy and target of one architecture: their draws compare directly
        config = make_config("smoke", {"method": "svp", "proxy_arch": "resnet8", "seed": seed})
        return initial_networks(config, synthetic)

    target_0, proxy_0, _ = networks(0)
    after_target_0 = torch.rand(4)
    target_1, _, _ = networks(1)
    assert not torch.equal(_weights(proxy_0), _weights(target_1))  # seed + 1 made them equal
    assert not torch.equal(_weights(proxy_0), _weights(target_0))
    assert torch.equal(_weights(proxy_0), _weights(networks(0)[1]))
    # theta, and the global stream after it, are what torch.manual_seed(seed) gave before.
    torch.manual_seed(0)
    assert torch.equal(_weights(target_0), _weights(build_model("resnet8", 10, 3)))
    assert torch.equal(after_target_0, torch.rand(4))


def test_prunefuse_selects_with_the_seeded_target_pruned_at_init(synthetic):
    run = _run(synthetic, budgets=[40, 100])
    torch.manual_seed(0)
    pruned, channel_map = prune_at_init(build_model("resnet8", 10, 3), 0.5, "l2", (3, 16, 16))
    assert run["channel_maps"]["channel_map.json"]["tensors"] == channel_map["tensors"]
    assert run["networks"]["selector"].forward_macs == forward_macs(pruned, (3, 16, 16))
    assert run["networks"]["selector"].arch == "resnet8@p=0.5"


def test_a_pool_subset_is_a_seeded_sorted_draw_from_the_pool_each_round():
    config = make_config("smoke", {"pool_subset": 100})
    pool = torch.arange(3, 503, 2)  # 250 unlabeled indices
    drawn = _pool_subset(config, pool, 1)
    assert len(drawn) == 100 and set(drawn.tolist()) <= set(pool.tolist())
    assert torch.equal(drawn, drawn.sort().values)
    assert torch.equal(drawn, _pool_subset(config, pool, 1))
    assert not torch.equal(drawn, _pool_subset(config, pool, 2))  # a fresh draw each round
    assert torch.equal(_pool_subset(make_config("smoke"), pool, 1), pool)  # 0: the whole pool


@pytest.mark.slow  # two short runs
def test_with_a_pool_subset_every_round_picks_from_its_subset():
    config = make_config("smoke", {"method": "baseline", "pool_subset": 100,
                                   "lr_schedule": [[1, 0.05]]})
    dataset = load_dataset("synthetic")
    result = run_active_learning(config, dataset, progress=False)
    labeled = torch.zeros(len(dataset.train), dtype=torch.bool)
    labeled[result["selected"][0]] = True
    subset = _pool_subset(config, (~labeled).nonzero().squeeze(1), 1)
    assert set(result["selected"][1]) <= set(subset.tolist())
    whole = run_active_learning(make_config("smoke", {"method": "baseline",
                                                      "lr_schedule": [[1, 0.05]]}),
                                dataset, progress=False)
    assert result["selected"][1] != whole["selected"][1]
