"""CUDA graphs (pf.graphs): the fallback and the output copies on any machine, the
replays themselves on a GPU."""

import pytest
import torch

import pf.train
from pf.graphs import MIN_REPLAYS, GraphReplay
from pf.models import build_model
from pf.train import Schedule, fit, predict

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _doubled(x):
    return (2 * x,)


def test_too_few_batches_are_never_captured():
    replay = GraphReplay(_doubled, full_batches=MIN_REPLAYS - 1)
    x = torch.ones(3)
    assert torch.equal(replay(x)[0], 2 * x) and replay.graph is None


def test_a_failed_capture_warns_once_and_runs_without_graphs(monkeypatch):
    attempts = []

    def refuse():
        attempts.append(1)
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "Stream", refuse)
    replay = GraphReplay(_doubled, full_batches=MIN_REPLAYS)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed, running without graphs"):
        first = replay(torch.ones(3))[0]
    second = replay(torch.full((3,), 5.0))[0]
    assert torch.equal(first, torch.full((3,), 2.0)) and torch.equal(second, torch.full((3,), 10.0))
    assert len(attempts) == 1 and replay.graph is None


class OneOutputBuffer:
    """Stands in for a replayed graph on the CPU: every batch of the first batch's shape
    is written into the same output tensors, as a graph replay does."""

    def __init__(self, function, full_batches):
        self.function, self.outputs = function, None

    def __call__(self, x):
        outputs = self.function(x)
        if self.outputs is None:
            self.outputs = outputs
        elif outputs[0].shape != self.outputs[0].shape:
            return outputs
        for static, fresh in zip(self.outputs, outputs):
            static.copy_(fresh)
        return self.outputs


@pytest.mark.parametrize("features", [False, True])
def test_predict_keeps_each_batch_when_the_forward_reuses_its_outputs(synthetic, monkeypatch,
                                                                     features):
    torch.manual_seed(0)
    model = build_model("resnet8", synthetic.num_classes, synthetic.in_channels)
    expected = predict(model, synthetic.test, synthetic, batch_size=32, features=features,
                       cuda_graphs=False)
    monkeypatch.setattr(pf.train, "uses_graphs", lambda *_: True)
    monkeypatch.setattr(pf.train, "GraphReplay", OneOutputBuffer)
    replayed = predict(model, synthetic.test, synthetic, batch_size=32, features=features)
    for got, want in zip(*[(out if features else (out,)) for out in (replayed, expected)]):
        assert torch.equal(got, want)


@pytest.fixture
def _deterministic_cuda():
    """Deterministic cuDNN for the comparison, restored afterwards."""
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


@pytest.mark.parametrize("features", [False, True], ids=["logits", "features"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("arch", ["resnet20", "resnet56"])
@pytest.mark.usefixtures("_deterministic_cuda")
@pytest.mark.filterwarnings("error:CUDA graph capture failed")  # a fallback would compare nothing
@pytest.mark.gpu
@needs_cuda
def test_replayed_inference_gives_the_same_outputs_on_cuda(synthetic, arch, precision, features):
    torch.manual_seed(0)
    model = build_model(arch, synthetic.num_classes, synthetic.in_channels).cuda()
    data = synthetic.to("cuda")
    options = {"batch_size": 64, "precision": precision, "features": features}
    plain = predict(model, data.train, data, cuda_graphs=False, **options)
    replayed = predict(model, data.train, data, cuda_graphs=True, **options)
    for got, want in zip(*[(out if features else (out,)) for out in (replayed, plain)]):
        torch.testing.assert_close(got, want)


@pytest.mark.gpu
@pytest.mark.slow
@needs_cuda
def test_a_graph_is_captured_and_replayed_on_cuda():
    model = build_model("resnet20").cuda().eval()
    batches = [torch.randn(64, 3, 32, 32, device="cuda") for _ in range(MIN_REPLAYS)]

    @torch.no_grad()
    def forward(x):
        return (model(x),)

    replay = GraphReplay(forward, full_batches=len(batches))
    outputs = [replay(x)[0].clone() for x in batches]
    assert replay.graph is not None
    for x, got in zip(batches, outputs):
        torch.testing.assert_close(got, forward(x)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.slow
@needs_cuda
def test_compiled_training_with_cuda_graphs_trains_like_eager(synthetic):
    schedule = Schedule(((2, 0.05),), batch_size=64)
    results = {}
    for graphs in (False, True):
        torch.manual_seed(0)
        model = build_model("resnet8", synthetic.num_classes, synthetic.in_channels)
        results[graphs] = fit(model, synthetic, torch.arange(512), schedule, device="cuda",
                              seed=0, compile=graphs, cuda_graphs=graphs, progress=False)
    # bf16 autocast and fused kernels round differently: close, not bit for bit.
    assert results[True].train_loss == pytest.approx(results[False].train_loss, rel=0.05)
    assert results[True].test_accuracy == pytest.approx(results[False].test_accuracy, abs=0.05)
