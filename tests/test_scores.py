import copy
import math

import pytest
import torch

from pf.batches import Batches
from pf.models import build_model
from pf.scores import (RECORDS, SCORES, DynamicsRecorder, dynamic_uncertainty, el2n, el2n_per_epoch,
                       forgetting_counts, prediction_shifts, record_dynamics, tdds, tdds_epochs,
                       tdds_from_shifts, true_class_probs)
from pf.train import Schedule, fit

SHORT = Schedule(((2, 0.05),), batch_size=32)


def _random_history(epochs=13, n=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(epochs, n, classes, generator=g), dim=2)
    labels = torch.randint(classes, (n,), generator=g)
    return probs, labels


# ---------------------------------------------------------------------------------------
# The formulas, against plain loops
# ---------------------------------------------------------------------------------------


def _std(values, correction):
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - correction))


@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("window", [2, 5, 13])
def test_dynamic_uncertainty_matches_a_loop(window, correction):
    probs, labels = _random_history()
    p = probs.tolist()
    expected = []
    for n, y in enumerate(labels.tolist()):
        series = [p[t][n][y] for t in range(len(p))]
        stds = [_std(series[k:k + window], correction) for k in range(len(p) - window + 1)]
        expected.append(sum(stds) / len(stds))
    got = dynamic_uncertainty(probs, labels, window=window, correction=correction)
    torch.testing.assert_close(got, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    # A true-class-only history gives the same score.
    torch.testing.assert_close(
        dynamic_uncertainty(true_class_probs(probs, labels), window=window,
                            correction=correction), got)


@pytest.mark.parametrize("window,decay", [(10, 0.9), (4, 0.5), (13, 0.9), (2, 0.3)])
def test_tdds_matches_a_loop_with_the_ema_recursion(window, decay):
    probs, _ = _random_history()
    p, eps = probs.tolist(), 1e-8
    epochs, n, classes = probs.shape
    expected = []
    for i in range(n):
        g = [sum(abs(p[t + 1][i][c] * (math.log(p[t + 1][i][c] + eps) - math.log(p[t][i][c] + eps)))
                 for c in range(classes)) for t in range(epochs - 1)]
        ema = 0.0
        for k in range(epochs - window + 1):
            span = g[k:k + window - 1]
            mean = sum(span) / len(span)
            ema = decay * math.sqrt(sum((v - mean) ** 2 for v in span)) + (1 - decay) * ema
        expected.append(ema)
    torch.testing.assert_close(tdds(probs, window=window, decay=decay), torch.tensor(expected),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("epochs", [None, [1, 4, 7], slice(0, 3)])
def test_el2n_matches_a_loop(epochs):
    probs, labels = _random_history()
    p = probs.tolist()
    chosen = list(range(len(p)))[epochs] if isinstance(epochs, slice) else (
        epochs or list(range(len(p))))
    expected = []
    for n, y in enumerate(labels.tolist()):
        norms = [math.sqrt(sum((p[t][n][c] - (c == y)) ** 2 for c in range(probs.shape[2])))
                 for t in chosen]
        expected.append(sum(norms) / len(norms))
    torch.testing.assert_close(el2n(probs, labels, epochs=epochs), torch.tensor(expected),
                               rtol=1e-5, atol=1e-6)


def test_forgetting_counts_match_a_loop():
    g = torch.Generator().manual_seed(1)
    correct = (torch.rand(12, 8, generator=g) < 0.6).to(torch.int8)
    correct[:, 2] = 0  # never learned
    correct[:, 3] = 1  # learned at once, never forgotten
    correct[5, 6] = -1  # one unrecorded epoch
    expected = []
    for n in range(correct.shape[1]):
        column = correct[:, n].tolist()
        if -1 in column:
            expected.append(float("nan"))
        elif 1 not in column:
            expected.append(float(len(column)))
        else:
            expected.append(float(sum(a == 1 and b == 0 for a, b in zip(column, column[1:]))))
    got = forgetting_counts(correct)
    torch.testing.assert_close(got, torch.tensor(expected), equal_nan=True)
    assert got[2] == 12 and got[3] == 0 and got[2] > got[[0, 1, 4, 5, 7]].max()
    assert forgetting_counts(correct.bool(), never_learned=99.0)[2] == 99


def test_an_oscillating_sample_outranks_a_stable_one():
    epochs = 20
    stable = torch.linspace(0.6, 0.95, epochs)  # learned smoothly, true class is 0
    # Flips between right and wrong with uneven swings: TDDS scores the variation of the
    # change g_t, which a swing of constant size would not have.
    swing = torch.rand(epochs, generator=torch.Generator().manual_seed(0)) * 0.35
    oscillating = 0.5 + torch.tensor([1.0, -1.0] * (epochs // 2)) * (0.1 + swing)
    probs = torch.zeros(epochs, 2, 3)
    for i, p_true in enumerate((stable, oscillating)):
        probs[:, i, 0] = p_true
        probs[:, i, 1] = (1 - p_true) * 0.8
        probs[:, i, 2] = (1 - p_true) * 0.2
    labels = torch.zeros(2, dtype=torch.long)
    correct = (probs.argmax(2) == labels).to(torch.int8)
    for score in (dynamic_uncertainty(probs, labels), tdds(probs), el2n(probs, labels),
                  forgetting_counts(correct)):
        assert score[1] > score[0]


def test_bad_windows_and_histories_are_refused():
    probs, labels = _random_history(epochs=5)
    with pytest.raises(ValueError, match="window"):
        dynamic_uncertainty(probs, labels, window=6)
    with pytest.raises(ValueError, match="window"):
        tdds(probs, window=1)
    with pytest.raises(ValueError, match="labels"):
        dynamic_uncertainty(probs)
    with pytest.raises(ValueError, match="full softmax"):
        tdds(true_class_probs(probs, labels))
    with pytest.raises(ValueError, match="dtype"):
        DynamicsRecorder(dtype=torch.int8)
    with pytest.raises(ValueError, match="keep"):
        DynamicsRecorder(keep=("probs", "logits"))
    with pytest.raises(ValueError, match="epochs"):
        DynamicsRecorder(epochs=range(0, 10, 2))
    with pytest.raises(ValueError, match="score"):
        DynamicsRecorder.for_score("aum")
    labels = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="beyond the run's 5 epochs"):
        DynamicsRecorder(epochs=range(3, 6)).begin(5, labels, 3)
    with pytest.raises(ValueError, match="shifts need at least 2 epochs"):
        DynamicsRecorder.for_score("tdds", epochs=range(4, 5)).begin(5, labels, 3)


# ---------------------------------------------------------------------------------------
# TDDS's span
# ---------------------------------------------------------------------------------------


def test_tdds_epochs_are_the_first_or_last_of_the_run_and_last_by_default():
    assert tdds_epochs(181) == range(171, 181)
    assert tdds_epochs(181, "first") == range(10)
    assert tdds_epochs(30, "last", 12) == range(18, 30)
    assert tdds_epochs(12, "first", 12) == tdds_epochs(12, "last", 12) == range(12)
    with pytest.raises(ValueError, match="span: 'middle' is not one of last, first"):
        tdds_epochs(30, "middle")
    with pytest.raises(ValueError, match="length: 31 needs 2 <= length <= 30"):
        tdds_epochs(30, "last", 31)


def test_tdds_from_shifts_is_tdds_and_scores_only_the_epochs_it_is_given():
    probs, _ = _random_history(epochs=15)
    shifts = prediction_shifts(probs)
    assert shifts.shape == (14, 6)
    torch.testing.assert_close(tdds_from_shifts(shifts, window=4), tdds(probs, window=4))
    # One 10-epoch window per span: the first and last 10 of 15 epochs score differently.
    first, last = tdds(probs[:10]), tdds(probs[-10:])
    assert not torch.allclose(first, last)
    torch.testing.assert_close(tdds_from_shifts(shifts[:9]), first)
    torch.testing.assert_close(tdds_from_shifts(shifts[-9:]), last)


# ---------------------------------------------------------------------------------------
# Lean records: what one score needs, nothing more
# ---------------------------------------------------------------------------------------

FEED_SHAPE = (15, 40, 7)  # epochs, samples, classes


def _feed(recorders, dtype=torch.float32, seed=0):
    """Drive ``recorders`` as fit does: every epoch the same 30 of 40 samples in a fresh
    shuffled order, in batches of 8 (a short last one), with random logits."""
    epochs, n, classes = FEED_SHAPE
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (n,), generator=g)
    trained = torch.randperm(n, generator=g)[:30]
    logits = 4 * torch.randn(epochs, n, classes, generator=g)
    for recorder in recorders:
        recorder.begin(epochs, labels, classes)
    for epoch in range(epochs):
        order = trained[torch.randperm(len(trained), generator=g)]
        for idx in order.split(8):
            for recorder in recorders:
                recorder.record(epoch, idx, logits[epoch, idx], labels[idx])
    return labels, trained


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_each_lean_record_gives_the_score_of_the_full_history(dtype):
    full = DynamicsRecorder(keep=("probs", "correct"), dtype=dtype)
    lean = {score: DynamicsRecorder.for_score(score, dtype=dtype)
            for score in ("du", "tdds", "el2n", "forgetting")}
    labels, trained = _feed([full, *lean.values()], dtype)
    epochs, n, classes = FEED_SHAPE
    exact = {"rtol": 0, "atol": 0, "equal_nan": True}
    close = {"rtol": 1e-5, "atol": 1e-6, "equal_nan": True}  # fp32 rounding, batched differently
    torch.testing.assert_close(dynamic_uncertainty(lean["du"].true_probs),
                               dynamic_uncertainty(full.probs, labels), **exact)
    torch.testing.assert_close(forgetting_counts(lean["forgetting"].correct),
                               forgetting_counts(full.correct), **exact)
    torch.testing.assert_close(lean["el2n"].el2n.mean(0), el2n(full.probs, labels), **close)
    torch.testing.assert_close(lean["el2n"].el2n, el2n_per_epoch(full.probs, labels), **close)
    torch.testing.assert_close(tdds_from_shifts(lean["tdds"].shifts), tdds(full.probs), **close)
    assert tdds(full.probs)[trained].isfinite().all()  # so NaN == NaN is not all it checks

    # Each keeps one record, of the expected (smaller) shape.
    shapes = {"du": ("true_probs", (epochs, n)), "forgetting": ("correct", (epochs, n)),
              "el2n": ("el2n", (epochs, n)), "tdds": ("shifts", (epochs - 1, n))}
    for score, (name, shape) in shapes.items():
        kept = {record: getattr(lean[score], record) for record in RECORDS
                if getattr(lean[score], record) is not None}
        assert list(kept) == [name] and kept[name].shape == shape, score
    assert full.probs.shape == (epochs, n, classes)
    assert lean["forgetting"].correct.dtype == torch.int8
    assert lean["du"].true_probs.dtype == dtype
    assert lean["el2n"].el2n.dtype == lean["tdds"].shifts.dtype == torch.float32


@pytest.mark.parametrize("span", ["first", "last"])
def test_a_recorder_over_tdds_span_keeps_only_those_epochs(span):
    epochs = tdds_epochs(FEED_SHAPE[0], span)
    full = DynamicsRecorder()
    spanned = DynamicsRecorder(keep=("probs", "correct"), epochs=epochs)
    lean = DynamicsRecorder.for_score("tdds", epochs=epochs)
    _feed([full, spanned, lean])
    assert spanned.probs.shape == (10, *FEED_SHAPE[1:]) and lean.shifts.shape == (9, 40)
    assert torch.equal(spanned.probs.nan_to_num(), full.probs[epochs].nan_to_num())
    assert torch.equal(spanned.correct, full.correct[epochs])
    torch.testing.assert_close(tdds_from_shifts(lean.shifts), tdds(full.probs[epochs]),
                               rtol=1e-5, atol=1e-6, equal_nan=True)


# ---------------------------------------------------------------------------------------
# The recorder inside fit
# ---------------------------------------------------------------------------------------


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("resnet8", 10, 3)


def test_recorder_fills_the_trained_rows_only(synthetic):
    subset = torch.arange(1, 512, 7)  # 73 samples, scattered, with a short last batch
    recorder, _ = record_dynamics(_model(), synthetic, subset, SHORT, device="cpu",
                                  record_curve=False)
    n = len(synthetic.train)
    assert recorder.probs.shape == (2, n, 10) and recorder.probs.dtype == torch.float32
    assert recorder.correct.shape == (2, n) and recorder.labels is synthetic.train.labels
    others = torch.ones(n, dtype=torch.bool)
    others[subset] = False
    assert recorder.probs[:, others].isnan().all()
    assert (recorder.correct[:, others] == -1).all()
    trained = recorder.probs[:, subset]
    assert trained.isfinite().all()
    torch.testing.assert_close(trained.sum(2), torch.ones(2, len(subset)))
    predicted = trained.argmax(2) == synthetic.train.labels[subset]
    assert torch.equal(recorder.correct[:, subset], predicted.to(torch.int8))
    scores = dynamic_uncertainty(recorder.probs, recorder.labels, window=2)
    assert scores[subset].isfinite().all() and scores[others].isnan().all()
    assert forgetting_counts(recorder.correct)[others].isnan().all()


def test_recorded_probs_are_the_training_steps_softmax(synthetic):
    """One epoch in one shuffled batch: the record must be the pre-update, train-mode
    softmax of exactly those samples, row by row."""
    subset = torch.randperm(512, generator=torch.Generator().manual_seed(0))[:64]
    model = _model()
    initial = copy.deepcopy(model).train()
    recorder = DynamicsRecorder()
    fit(model, synthetic, subset, Schedule(((1, 0.5),), batch_size=64), device="cpu",
        record_curve=False, recorder=recorder)
    x, _ = next(iter(Batches(synthetic.train, subset, 64, synthetic)))  # subset order
    with torch.no_grad():
        before = torch.softmax(initial(x), dim=1)
        after = torch.softmax(model.train()(x), dim=1)
    torch.testing.assert_close(recorder.probs[0, subset], before, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(after, before, atol=1e-3)  # so the check above can fail


def test_recording_does_not_change_training(synthetic):
    subset = torch.arange(96)
    runs = []
    for recorder in (None, DynamicsRecorder(),
                     DynamicsRecorder(keep=("true_probs", "correct"), dtype=torch.bfloat16),
                     DynamicsRecorder.for_score("tdds", epochs=range(2))):
        model = _model(seed=3)
        result = fit(model, synthetic, subset, SHORT, device="cpu", seed=3, recorder=recorder,
                     record_curve=False)
        runs.append((model, result, recorder))
    (plain, plain_result, _), *recorded = runs
    for model, result, _ in recorded:
        for (name, p), q in zip(plain.state_dict().items(), model.state_dict().values()):
            assert torch.equal(p, q), name
        assert result.curve == plain_result.curve
        assert result.train_loss == plain_result.train_loss
    full, true_only, shifts = (run[2] for run in recorded)
    assert true_only.true_probs.shape == (2, 512) and true_only.true_probs.dtype == torch.bfloat16
    assert true_only.probs is None
    torch.testing.assert_close(true_only.true_probs[:, subset].float(),
                               true_class_probs(full.probs, full.labels)[:, subset],
                               rtol=1e-2, atol=4e-3)
    assert torch.equal(true_only.correct, full.correct)
    torch.testing.assert_close(shifts.shifts, prediction_shifts(full.probs), equal_nan=True)


@pytest.mark.parametrize("name", list(SCORES))
def test_every_registered_score_is_a_config_value_recorded_lean_and_titled(name):
    from pf.experiments.config import make_config
    from pf.experiments.record import SCORE_TITLES

    score = SCORES[name]
    assert DynamicsRecorder.for_score(name).keep == (score.record,) and score.record in RECORDS
    assert name in SCORE_TITLES
    schedule = [[max(score.window, 10), 0.1]]
    config = make_config("smoke", {"experiment": "data_pruning", "score": name,
                                   "score_lr_schedule": schedule})
    assert (config.span()["tdds_span"] is not None) == score.spanned


def test_score_titles_name_the_registered_scores_only():
    from pf.experiments.record import SCORE_TITLES

    assert set(SCORE_TITLES) == set(SCORES)
