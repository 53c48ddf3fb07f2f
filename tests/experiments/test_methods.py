"""The methods' per-round plan, synchronisation (T_sync) and warm-started selectors."""

import pytest
import torch

import pf.experiments.active_learning
from pf.experiments.active_learning import run_active_learning
from pf.experiments.config import ConfigError, make_config
from pf.fuse import fuse
from pf.experiments.methods import plan_rounds
from pf.models import build_model
from pf.prune import gather, prune_at_init

BUDGETS = [40, 80, 120, 160]


def _config(**overrides):
    return make_config("smoke", {"budgets": BUDGETS, "lr_schedule": [[1, 0.05]], **overrides})


def _plan(**overrides):
    return plan_rounds(_config(**overrides))


def test_without_sync_every_prunefuse_selector_starts_from_theta_p():
    plan = _plan()
    assert [r.selector for r in plan] == ["init"] * 4
    assert {r.origin for r in plan} == {None} and not any(r.syncs for r in plan)
    assert [r.picks for r in plan] == [40, 40, 40, 0]


@pytest.mark.parametrize("every, synced, origins", [
    (1, [False, True, True, True], [None, 0, 1, 2]),
    (2, [False, False, True, False], [None, None, 1, 1]),
    (3, [False, False, False, True], [None, None, None, 2]),
])
def test_sync_every_re_makes_the_selector_from_the_previous_target(every, synced, origins):
    plan = _plan(sync_every=every)
    assert [r.syncs for r in plan] == synced
    assert [r.origin for r in plan] == origins


def test_a_synced_targets_training_is_charged_once_at_the_first_pick_it_shapes():
    assert [r.charges_target for r in _plan(sync_every=1)] == [None, 0, 1, None]
    # Rounds 2 and 3 both descend from round 1's target: charged once, at round 2.
    assert [r.charges_target for r in _plan(sync_every=2)] == [None, None, 1, None]
    # The baseline's target selects: each one that picks is charged in its own round.
    assert [r.charges_target for r in _plan(method="baseline")] == [0, 1, 2, None]
    assert [r.charges_target for r in _plan(sync_every=1, metric="random")] == [None] * 4


def test_warm_selectors_continue_except_where_a_sync_restarts_them():
    assert [r.selector for r in _plan(selector_start="warm")] == ["init", "warm", "warm", "warm"]
    assert ([r.selector for r in _plan(selector_start="warm", sync_every=2)]
            == ["init", "warm", "synced", "warm"])
    assert ([r.selector for r in _plan(method="svp", selector_start="warm")]
            == ["init", "warm", "warm", None])  # SVP's last round needs no selector


@pytest.mark.parametrize("overrides, message", [
    ({"method": "svp", "sync_every": 1}, "sync_every: only prunefuse"),
    ({"method": "baseline", "sync_every": 2}, "sync_every: only prunefuse"),
    ({"method": "baseline", "selector_start": "warm"}, "selector_start: the baseline"),
    ({"sync_every": -1}, "sync_every: must be a whole number >= 0"),
    ({"selector_start": "hot"}, "selector_start: 'hot' is not one of init, warm"),
    ({"fuse_into": "theta"}, "fuse_into: 'theta' is not one of init, source"),
    ({"fuse_into": "source"}, "fuse_into: source .* needs sync_every >= 1"),
    ({"prune_steps": 0}, "prune_steps: must be a positive integer"),
    ({"eval_every": 0}, "eval_every: must be a positive integer"),
    ({"fusion_variant": "leading_conv", "rest": "zero"}, "rest: zero with fusion_variant"),
    ({"fusion_variant": "front"}, "fusion_variant: 'front' is not one of map, leading"),
])
def test_settings_a_method_cannot_honour_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _config(**overrides)


@pytest.fixture
def trainings(monkeypatch):
    """Every ``fit`` of a run: (description, weights before, weights after), on the CPU."""
    seen = []
    fit = pf.experiments.active_learning.fit

    def spy(model, *args, desc="", **kwargs):
        before = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        result = fit(model, *args, desc=desc, **kwargs)
        after = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        seen.append((desc, before, after))
        return result

    monkeypatch.setattr(pf.experiments.active_learning, "fit", spy)
    return seen


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sync_keeps_the_first_pick_then_selects_with_the_pruned_trained_target(synthetic,
                                                                              trainings):
    plain = run_active_learning(_config(), synthetic, progress=False)
    trainings.clear()
    synced = run_active_learning(_config(sync_every=1), synthetic, progress=False)
    assert synced["selected"][:2] == plain["selected"][:2]  # round 0's selector is theta_p
    assert synced["selected"][2:] != plain["selected"][2:]
    # Round 1's selector starts as round 0's trained target, indexed by its new map.
    by_desc = {desc: (before, after) for desc, before, after in trainings}
    target_0 = by_desc["target @ 40"][1]
    selector_1 = by_desc["selector @ 80"][0]
    record = synced["rounds"][1].selector
    assert record.start == "synced" and record.origin == "round 0 target"
    channel_map = synced["channel_maps"][record.channel_map]
    assert channel_map is not synced["channel_maps"][synced["rounds"][0].selector.channel_map]
    for name, tensor in selector_1.items():
        assert torch.equal(tensor, gather(target_0[name], channel_map["tensors"][name]["indices"]))
    assert synced["rounds"][1].seconds["selector_sync"] > 0


def test_warm_start_continues_from_the_previous_rounds_trained_selector(synthetic, trainings):
    run = run_active_learning(_config(selector_start="warm"), synthetic, progress=False)
    selectors = [(before, after) for desc, before, after in trainings if desc.startswith("sel")]
    assert len(selectors) == len(BUDGETS)
    for (_, trained), (start, _) in zip(selectors, selectors[1:]):
        assert _equal(start, trained)
    assert not _equal(selectors[0][0], selectors[1][0])
    assert [r.selector.start for r in run["rounds"]] == ["init", "warm", "warm", "warm"]


def test_fuse_into_source_fuses_a_synced_selector_into_the_target_it_came_from(synthetic,
                                                                              trainings):
    run = run_active_learning(_config(sync_every=1, fuse_into="source", budgets=[40, 80]),
                              synthetic, progress=False)
    assert [desc for desc, _, _ in trainings] == ["selector @ 40", "target @ 40",
                                                  "selector @ 80", "target @ 80"]
    target_0, selector_1, fused_1 = trainings[1][2], trainings[2][2], trainings[3][1]
    dense = build_model("resnet8", 10, 3)
    dense.load_state_dict(target_0)
    pruned = prune_at_init(dense, 0.5, input_shape=(3, 16, 16))[0]
    pruned.load_state_dict(selector_1)
    channel_map = run["channel_maps"][run["rounds"][1].selector.channel_map]
    # rest="keep": around the selector's channels, the trained target's weights, not theta's.
    assert _equal(fused_1, fuse(dense, pruned, channel_map, "keep").state_dict())


def test_the_authors_variant_prunes_in_steps_and_fuses_into_the_leading_block(synthetic,
                                                                              trainings):
    config = _config(budgets=[40], prune_steps=5, fusion_variant="leading_conv", rest="xavier")
    run = run_active_learning(config, synthetic, progress=False)
    assert [desc for desc, _, _ in trainings] == ["selector @ 40", "target @ 40"]
    torch.manual_seed(config.seed)
    theta = build_model("resnet8", 10, 3)
    pruned, channel_map = prune_at_init(theta, 0.5, input_shape=(3, 16, 16), seed=config.seed,
                                        steps=5)
    assert channel_map == run["channel_maps"]["channel_map.json"]
    assert channel_map != prune_at_init(theta, 0.5, input_shape=(3, 16, 16), seed=config.seed)[1]
    pruned.load_state_dict(trainings[0][2])
    expected = fuse(theta, pruned, channel_map, "xavier", seed=config.seed * 1000,
                    variant="leading_conv")
    assert _equal(trainings[1][1], expected.state_dict())


def test_data_selection_counts_the_same_work_in_macs_and_seconds(synthetic):
    # T_sync = 1: every pick after the first depends on a synced selector, whose target's
    # training (distilled: its teacher's forwards run inside its steps) is charged once.
    run = run_active_learning(_config(sync_every=1), synthetic, progress=False)
    rounds = run["rounds"]
    spent = {"macs": 0, "seconds": 0.0}
    for round_ in rounds:
        assert round_.macs["data_selection"] == spent["macs"]
        assert round_.seconds["data_selection"] == pytest.approx(spent["seconds"])
        for unit in spent:
            phases = getattr(round_, unit)
            spent[unit] += sum(phases[p] for p in ("selector_training", "selector_sync",
                                                   "pool_scoring"))
            if round_.selector.start == "synced":  # pruned from the previous round's target
                source = rounds[round_.round - 1]
                spent[unit] += getattr(source, unit)["target_training"]
                spent[unit] += source.macs["distillation"] if unit == "macs" else 0
    # Neither unit counts a test evaluation: it chooses nothing.
    assert all(r.seconds["evaluation"] > 0 and r.macs["evaluation"] > 0 for r in rounds)
