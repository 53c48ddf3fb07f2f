"""The coreset keep rules (pf.coresets) on hand-computed cases, and in a data-pruning run."""

import pytest
import torch

from pf.coresets import ccs_keep, ccs_strata, class_medians, moderate_keep
from pf.experiments.config import ConfigError, make_config


# ---------------------------------------------------------------------------------------
# Moderate coreset
# ---------------------------------------------------------------------------------------


def test_class_medians_are_element_wise_and_average_the_two_middle_values():
    features = torch.tensor([[0., 0.], [2., 4.], [10., 1.], [1., 1.], [3., 5.]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    medians = class_medians(features, labels, num_classes=3)
    assert medians.tolist() == [[2., 1.], [2., 3.], [0., 0.]]  # class 2 absent: zeros


# Class 0 (median 2) at 0, 1, 2, 3, 10; class 1 (median 5) at 5, 5, 7. Distances by index:
# 2, 1, 0, 1, 8, 0, 0, 2; by rank: 2, 5, 6 (0), 1, 3 (1), 0, 7 (2), 4 (8).
MODERATE_FEATURES = torch.tensor([[0.], [1.], [2.], [3.], [10.], [5.], [5.], [7.]])
MODERATE_LABELS = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("count, expected", [
    (4, [0, 1, 3, 6]),  # ranks 2..5 of 8
    (2, [1, 3]),  # ranks 3..4
    (1, [1]),  # rank 3 (the lower middle)
    (8, list(range(8))),
    (0, []),
])
def test_moderate_keeps_the_distances_in_the_middle_of_the_order(count, expected):
    kept = moderate_keep(MODERATE_FEATURES, MODERATE_LABELS, count, num_classes=2)
    assert kept.tolist() == expected


def test_moderate_refuses_an_impossible_count():
    with pytest.raises(ValueError, match="count: need 0 <= count <= 8, got 9"):
        moderate_keep(MODERATE_FEATURES, MODERATE_LABELS, 9, num_classes=2)


# ---------------------------------------------------------------------------------------
# CCS
# ---------------------------------------------------------------------------------------


def test_ccs_strata_have_equal_width_and_the_maximum_in_the_last():
    assert ccs_strata(torch.tensor([0., 0.25, 0.5, 0.74, 1.]), 4).tolist() == [0, 1, 2, 2, 3]
    assert ccs_strata(torch.tensor([3., 3., 3.]), 4).tolist() == [0, 0, 0]


# Scores 1 (x6), 5 (x2), 9 (x2): with 2 strata over [1, 9], bin 0 holds indices 0-5 and
# bin 1 indices 6-9.
CCS_SCORES = torch.tensor([1., 1., 1., 1., 1., 1., 5., 5., 9., 9.])


def _ccs(count, cutoff, strata=2, seed=0):
    return ccs_keep(CCS_SCORES, count, cutoff, strata, torch.Generator().manual_seed(seed))


def test_ccs_fills_the_smaller_stratum_first_and_splits_evenly():
    kept = set(_ccs(6, 0.0).tolist())  # bin 1 (4) takes 6 // 2 = 3, bin 0 the other 3
    assert len(kept & set(range(6))) == 3 and len(kept & set(range(6, 10))) == 3
    kept = set(_ccs(9, 0.0).tolist())  # bin 1 takes all 4 (9 // 2), bin 0 the other 5
    assert set(range(6, 10)) <= kept and len(kept) == 9


def test_ccs_drops_the_hardest_first_and_restratifies_the_rest():
    # Cutoff 0.2 drops indices 8, 9; over [1, 5] bin 1 is {6, 7}: 4 // 2 = 2 from each.
    kept = _ccs(4, 0.2).tolist()
    assert {6, 7} <= set(kept) and not {8, 9} & set(kept) and len(kept) == 4


def test_ccs_never_drops_so_many_that_the_budget_cannot_be_filled():
    kept = _ccs(8, 0.5).tolist()  # 0.5 would drop 5; at most 10 - 8 = 2 go
    assert kept == sorted(kept) and len(set(kept)) == 8 and not {8, 9} & set(kept)


def test_ccs_breaks_ties_among_the_hardest_by_the_lower_index():
    equal = torch.ones(10)
    kept = ccs_keep(equal, 8, 0.2, 50, torch.Generator().manual_seed(0))
    assert kept.tolist() == list(range(2, 10))


def test_ccs_draws_within_strata_with_its_generator():
    assert _ccs(6, 0.0, seed=1).tolist() == _ccs(6, 0.0, seed=1).tolist()
    draws = {tuple(_ccs(6, 0.0, seed=seed).tolist()) for seed in range(5)}
    assert len(draws) > 1


# ---------------------------------------------------------------------------------------
# In a data-pruning run
# ---------------------------------------------------------------------------------------

CORESET_RUN = {"experiment": "data_pruning", "removed_fractions": [0.5], "score": "el2n",
               "lr_schedule": [[1, 0.05]], "coresets": ["moderate", "ccs"],
               "ccs_strata": 5}


@pytest.mark.slow  # runs data pruning
def test_a_run_keeps_a_set_per_coreset_rule_and_charges_what_each_read(synthetic):
    from pf.experiments.data_pruning import CCS_SEED, run_data_pruning
    from pf.flops import forward_macs
    from pf.models import build_model

    config = make_config("smoke", CORESET_RUN)
    run = run_data_pruning(config, synthetic, progress=False)
    rounds = run["rounds"]
    assert [r.selection for r in rounds] == ["score", "moderate", "ccs", "random"]
    assert [r.label for r in rounds] == ["EL2N, full run", "Moderate coreset",
                                         "CCS (EL2N, full run, cutoff 0.1)", "random"]
    assert all(len(set(kept)) == len(kept) == 256 for kept in run["kept"])
    generator = torch.Generator().manual_seed(config.seed * 1000 + CCS_SEED)
    expected = ccs_keep(torch.tensor(run["score_values"]), 256, 0.1, 5, generator)
    assert run["kept"][2] == expected.tolist()
    model = build_model("resnet8", synthetic.num_classes, synthetic.in_channels)
    forward = forward_macs(model, tuple(synthetic.train.images.shape[1:]))
    embedding = forward * 512  # only Moderate reads the features of a full-source run
    assert [r.macs["pool_scoring"] for r in rounds] == [0, embedding, 0, 0]
    assert run["scores"].macs["pool_scoring"] == embedding
    assert rounds[0].macs["selector_training"] == rounds[1].macs["selector_training"] > 0


@pytest.mark.parametrize("overrides, message", [
    ({"coresets": ["kcenters"]}, "coresets: expected distinct names from moderate, ccs"),
    ({"coresets": ["ccs", "ccs"]}, "coresets: expected distinct names from moderate, ccs"),
    ({"ccs_hard_cutoff": 1.0}, "ccs_hard_cutoff: must lie in [0, 1)"),
    ({"ccs_strata": 0}, "ccs_strata: must be a positive integer"),
])
def test_bad_coreset_parameters_name_themselves_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config("smoke", {"experiment": "data_pruning", "score": "el2n", **overrides})
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
