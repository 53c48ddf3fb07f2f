"""Training: schedules, fit, evaluation, prediction, distillation and MC dropout, and
compiled training (torch.compile)."""

import json
import math

import pytest
import torch

from pf.models import build_model
from pf.train import (PAPER_SCHEDULE, Schedule, evaluate, evaluated_epochs, fit, kd_loss,
                      mc_dropout_probs, predict)

SHORT = Schedule(((4, 0.05),), batch_size=32)


def _fit(dataset, seed=0, schedule=SHORT, **kwargs):
    torch.manual_seed(seed)
    model = build_model("resnet8", dataset.num_classes, dataset.in_channels)
    result = fit(model, dataset, torch.arange(256), schedule, device="cpu", seed=seed, **kwargs)
    return model, result


def test_paper_schedule_is_svps():
    assert PAPER_SCHEDULE.epochs == 181
    assert [PAPER_SCHEDULE.lr_at(e) for e in (0, 1, 90, 91, 135, 136, 180)] == \
        [0.01, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    with pytest.raises(IndexError):
        PAPER_SCHEDULE.lr_at(181)


def test_linear_shape_ramps_between_the_pieces_rates_step_by_step():
    one_cycle = Schedule(((2, 0.1), (4, 0.02)), shape="linear")
    # from 0 to 0.1 over 2 epochs, then to 0.02 over 4; the rate after half of epoch 0 is
    # a quarter of the way up, the last step of a piece reaches its rate
    assert one_cycle.lr_at(0, 0.5) == pytest.approx(0.025)
    assert one_cycle.lr_at(1, 1.0) == pytest.approx(0.1)
    assert one_cycle.lr_at(2, 0.5) == pytest.approx(0.1 - 0.08 * 0.5 / 4)
    assert one_cycle.lr_at(5, 1.0) == pytest.approx(0.02)
    # a step schedule ignores where in the epoch the step is
    assert Schedule(((2, 0.1), (4, 0.02))).lr_at(2, 0.5) == 0.02
    with pytest.raises(ValueError, match="shape"):
        Schedule(((1, 0.1),), shape="cosine")


def test_fit_sets_the_linear_rate_at_every_step(synthetic, monkeypatch):
    rates = []
    step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    schedule = Schedule(((1, 0.08), (1, 0.04)), batch_size=64, shape="linear")
    _fit(synthetic, schedule=schedule, record_curve=False)  # 256 images: 4 steps an epoch
    assert rates == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.07, 0.06, 0.05, 0.04])


def test_loss_falls_and_accuracy_beats_chance(synthetic):
    model, result = _fit(synthetic)
    assert len(result.curve) == len(result.train_loss) == 4
    assert result.train_loss[-1] < 0.7 * result.train_loss[0]
    assert result.test_accuracy > 0.5  # ten classes: chance is 0.1
    assert result.test_accuracy == result.curve[-1]
    assert result.images_seen == 4 * 256
    assert evaluate(model, synthetic.test, synthetic) == pytest.approx(result.test_accuracy)


def test_same_seed_gives_identical_weights(synthetic):
    a, result_a = _fit(synthetic, seed=3)
    b, result_b = _fit(synthetic, seed=3)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert result_a.curve == result_b.curve
    c, _ = _fit(synthetic, seed=4)
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_eval_every_tests_every_kth_epoch_and_the_last_without_changing_training(synthetic):
    assert evaluated_epochs(7, 3) == [3, 6, 7] and evaluated_epochs(6, 3) == [3, 6]
    assert evaluated_epochs(4) == [1, 2, 3, 4] and evaluated_epochs(2, 5) == [2]
    every, result_every = _fit(synthetic, seed=3)
    sparse, result_sparse = _fit(synthetic, seed=3, eval_every=3)
    assert result_every.curve_epochs == [1, 2, 3, 4] and result_sparse.curve_epochs == [3, 4]
    assert result_sparse.curve == result_every.curve[2:]  # evaluating draws no randomness
    assert len(result_sparse.train_loss) == 4
    for (name, p), q in zip(every.state_dict().items(), sparse.state_dict().values()):
        assert torch.equal(p, q), name


def test_kd_loss_matches_hintons_formula_on_hand_made_logits():
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    teacher = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    labels = torch.tensor([0, 2])
    weight, t = 0.3, 2.0

    def softmax(row, temp):
        e = [math.exp(v / temp) for v in row]
        return [v / sum(e) for v in e]

    ce = kl = 0.0
    for s, q, y in zip(student.tolist(), teacher.tolist(), labels.tolist()):
        ce -= math.log(softmax(s, 1)[y]) / 2
        ps, pt = softmax(s, t), softmax(q, t)
        kl += sum(b * math.log(b / a) for a, b in zip(ps, pt)) / 2
    expected = (1 - weight) * ce + weight * t * t * kl
    assert kd_loss(student, teacher, labels, weight, t).item() == pytest.approx(expected, rel=1e-5)
    assert kd_loss(student, teacher, labels, 0.0, t).item() == pytest.approx(ce, rel=1e-5)


def test_distillation_from_a_teacher_trains(synthetic):
    teacher, _ = _fit(synthetic, seed=1)
    _, result = _fit(synthetic, seed=2, teacher=teacher, kd_weight=0.7)
    assert result.test_accuracy > 0.5
    assert not teacher.training  # the teacher is only ever evaluated


def test_predict_returns_logits_and_penultimate_features(synthetic):
    torch.manual_seed(0)
    model = build_model("resnet8", 10, 3)
    logits, features = predict(model, synthetic.train, synthetic, torch.arange(10, 50),
                               batch_size=16, features=True)
    assert logits.shape == (40, 10) and features.shape == (40, 64)
    assert not model.training
    torch.testing.assert_close(logits, predict(model, synthetic.train, synthetic,
                                               torch.arange(10, 50)))
    torch.testing.assert_close(model.fc(features), logits)


@pytest.fixture
def _restore_determinism(monkeypatch):
    """set_determinism changes process-wide switches: put them back after the test."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.utils.deterministic.fill_uninitialized_memory)
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
    torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
    torch.utils.deterministic.fill_uninitialized_memory = saved[4]


def test_deterministic_cuda_settings(_restore_determinism):
    import os

    from pf.train import CUBLAS_WORKSPACE, set_determinism

    set_determinism(True, torch.device("cuda"))  # only switches: no CUDA device needed
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()  # never stops a run
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
    set_determinism(False, torch.device("cuda"))
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    assert not torch.are_deterministic_algorithms_enabled()


def test_determinism_leaves_the_cpu_alone(_restore_determinism):
    from pf.train import set_determinism

    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    set_determinism(True, torch.device("cpu"))
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_seed_selects_the_same_samples_on_cuda(tmp_path):
    from pf.experiments.config import make_config
    from pf.experiments.run import run_experiment

    config = make_config("smoke", {"device": "cuda", "method": "prunefuse"})
    runs = [run_experiment(config, tmp_path / str(i), progress=False) for i in range(2)]
    selected = [json.loads((tmp_path / str(i) / "selected.json").read_text()) for i in range(2)]
    assert selected[0] == selected[1]
    assert [r.target.curve for r in runs[0].rounds] == \
        [r.target.curve for r in runs[1].rounds]


def test_monte_carlo_dropout_passes_drop_features_before_the_classifier():
    model = build_model("resnet8", dropout=0.5)
    with torch.no_grad():
        model.fc.weight.copy_(torch.eye(10, 64)[:, :64])  # logit c reads feature c
        model.fc.bias.zero_()
    features = torch.zeros(3, 64)
    features[:, :2] = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 3.0]])

    def passes(seed):
        return mc_dropout_probs(model, features, 6, torch.Generator().manual_seed(seed))

    probs = passes(0)
    assert probs.shape == (6, 3, 10) and torch.allclose(probs.sum(2), torch.ones(6, 3))
    assert torch.equal(probs, passes(0)) and not torch.equal(probs, passes(1))
    # every pass keeps each feature (scaled by 2) or drops it: its logits are one of those
    for sample in range(3):
        outcomes = [torch.softmax(torch.cat([features[sample, :2] * torch.tensor(kept),
                                             torch.zeros(8)]), 0)
                    for kept in ((0.0, 0.0), (2.0, 0.0), (0.0, 2.0), (2.0, 2.0))]
        for row in probs[:, sample]:
            assert any(torch.allclose(row, outcome, atol=1e-6) for outcome in outcomes)
    with pytest.raises(ValueError, match="dropout: Monte-Carlo dropout needs a rate"):
        mc_dropout_probs(build_model("resnet8"), features, 2, torch.Generator())


# ---------------------------------------------------------------------------------------
# compile=True (torch.compile; the setting that meets the CPU speed target)
# ---------------------------------------------------------------------------------------

COMPILES = pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile missing")


@pytest.mark.slow  # compiles networks
@COMPILES
def test_compiled_training_matches_eager_training(synthetic):
    schedule = Schedule(((2, 0.05),), batch_size=64)
    indices = torch.arange(256)
    trained = {}
    for compile in (False, True):
        torch.manual_seed(0)
        model = build_model("resnet8", synthetic.num_classes, synthetic.in_channels)
        result = fit(model, synthetic, indices, schedule, device="cpu", seed=0,
                     compile=compile, progress=False)
        trained[compile] = model.state_dict(), result
    (eager_weights, eager), (compiled_weights, compiled) = trained[False], trained[True]
    # Fused kernels round differently, so equal up to float error, not bit for bit.
    assert compiled.train_loss == pytest.approx(eager.train_loss, rel=1e-3)
    assert compiled.test_accuracy == pytest.approx(eager.test_accuracy, abs=0.02)
    for name, weight in eager_weights.items():
        torch.testing.assert_close(compiled_weights[name], weight, rtol=1e-3, atol=1e-3,
                                   msg=lambda text, name=name: f"{name}: {text}")


@pytest.mark.slow  # compiles networks
@COMPILES
def test_runs_in_one_process_stay_compiled(monkeypatch, caplog):
    """Five compiled runs of different networks (a notebook session) never hit dynamo's
    recompile limit, after which training would silently run eager; every run compiles
    its own graphs. The eager backend keeps this fast: guards and recompiles are dynamo's."""
    import functools

    from torch._dynamo.utils import counters

    from pf.experiments.config import make_config
    from pf.experiments.run import run_experiment

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    runs = [{"method": "prunefuse", "prune_ratio": 0.5},
            {"method": "prunefuse", "prune_ratio": 0.7},
            {"method": "baseline", "arch": "resnet14"},
            {"method": "svp", "arch": "resnet14", "proxy_arch": "resnet8"},
            {"method": "prunefuse", "arch": "preact8"}]
    graphs = []
    with caplog.at_level("WARNING", logger="torch._dynamo"):
        for overrides in runs:
            before = counters["stats"]["unique_graphs"]
            run_experiment(make_config("smoke", {**overrides, "compile": True}), progress=False)
            graphs.append(counters["stats"]["unique_graphs"] - before)
    assert not [r for r in caplog.records if "recompile_limit" in r.getMessage()]
    assert all(count > 0 for count in graphs), graphs
