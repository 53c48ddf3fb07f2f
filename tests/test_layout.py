"""Every convolution of a network receives exactly the memory layout pf chose for that
network (``pf.layout``), in every phase: the training step, the test pass, pool scoring
and a distillation teacher's forward pass. These hold on every CPU kind: they check what
each layer receives, not whether a particular CPU crashes on the wrong layout (the
subprocess test at the end is the crash test, through ``pf run``)."""

import os
import subprocess
import sys
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from pf.data import Dataset, Split, load_dataset
from pf.fuse import fuse
from pf.layout import exact, layout_strides, memory_format_for, place
from pf.models import build_model
from pf.prune import prune_at_init
from pf.train import Schedule, fit, predict

CPU = torch.device("cpu")
RATIOS = [0.5, 0.6, 0.7, 0.8]


def _cifar_sized() -> Dataset:
    """64 + 32 random 32x32 RGB images, stored as the CIFAR loaders store theirs (NHWC
    storage permuted to NCHW, then made contiguous), augmented as CIFAR is."""
    generator = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        nhwc = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=generator)
        return Split(nhwc.permute(0, 3, 1, 2).contiguous(), torch.arange(n) % 10)

    return Dataset("cifar-sized", split(64), split(32), tuple(map(str, range(10))),
                   (0.5,) * 3, (0.25,) * 3, augment=True)


DATASETS = {"digits (1 channel, 8x8)": lambda: load_dataset("digits"),
            "CIFAR-sized (3 channels, 32x32)": _cifar_sized}


@contextmanager
def conv_inputs(*networks: nn.Module):
    """Check, for every convolution of ``networks``, that each input and the weight have
    the strides of the layout chosen for its network, at once: a mismatch raises before
    the layer runs (so a wrong layout fails the test before oneDNN could crash on its
    gradient). Yields a list of the convolutions that ran."""
    seen, handles = [], []
    for network in networks:
        chosen = memory_format_for(network, CPU)
        for name, module in network.named_modules():
            if isinstance(module, nn.Conv2d):
                def hook(conv, args, name=name, chosen=chosen):
                    for what, tensor in (("input", args[0]), ("weight", conv.weight)):
                        expected = layout_strides(tuple(tensor.shape), chosen)
                        assert tensor.stride() == expected, (
                            f"{name} {what}: strides {tensor.stride()}, {chosen} has {expected}")
                    seen.append(name)
                handles.append(module.register_forward_pre_hook(hook))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("data", list(DATASETS))
def test_every_convolution_receives_the_chosen_layout_in_every_phase(data, ratio):
    dataset = DATASETS[data]()
    torch.manual_seed(0)
    dense = build_model("resnet20", dataset.num_classes, dataset.in_channels)
    image_shape = tuple(dataset.train.images.shape[1:])
    selector, channel_map = prune_at_init(dense, ratio, input_shape=image_shape)
    labeled, pool = torch.arange(48), torch.arange(48, 64)
    schedule = Schedule(((1, 0.05),), batch_size=16)

    with conv_inputs(selector) as training:  # the selector's steps and its test pass
        fit(selector, dataset, labeled, schedule, device="cpu", progress=False)
    with conv_inputs(selector) as scoring:  # pool scoring, logits and features
        predict(selector, dataset.train, dataset, pool, batch_size=8, features=True)
    target = fuse(dense, selector, channel_map, "keep", seed=0)
    with conv_inputs(target, selector) as distilling:  # the fused target and its teacher
        fit(target, dataset, labeled, schedule, device="cpu", teacher=selector, progress=False)

    for phase in (training, scoring, distilling):
        assert phase, "no convolution ran"
    layouts = {memory_format_for(net, CPU) for net in (selector, target)}
    if ratio >= 0.6:  # a shortcut with < 8 input channels: the selector runs in NCHW
        assert layouts == {torch.contiguous_format, torch.channels_last}


def test_a_one_channel_batch_is_copied_into_unambiguous_nchw():
    # A digits batch: both "contiguous" and "channels_last", so asking changes nothing.
    batch = torch.randn(64, 8, 8, 1).permute(0, 3, 1, 2)
    assert batch.is_contiguous() and batch.is_contiguous(memory_format=torch.channels_last)
    assert batch.contiguous().stride() == (64, 1, 8, 1)
    nchw = exact(batch, torch.contiguous_format)
    assert nchw.stride() == (64, 64, 8, 1)
    torch.testing.assert_close(nchw, batch)
    assert exact(nchw, torch.contiguous_format) is nchw  # no copy when it has the layout
    assert exact(batch, torch.channels_last) is batch


def test_place_rewrites_weights_that_passed_for_either_layout():
    # A 1x1 convolution's weight made in channels_last: it passes for NCHW too.
    conv = nn.Conv2d(6, 12, 1, stride=2, bias=False)
    conv.weight.data = conv.weight.data.clone(memory_format=torch.channels_last)
    assert conv.weight.stride() == (6, 1, 6, 6) and conv.weight.is_contiguous()
    place(conv, CPU, torch.contiguous_format)
    assert conv.weight.stride() == (6, 1, 1, 1)
    before = conv.weight
    place(conv, CPU, torch.contiguous_format)
    assert conv.weight is before


def test_memory_format_is_nchw_only_for_networks_onednn_crashes_on():
    dense = build_model("resnet8", 10, 3)
    pruned, _ = prune_at_init(dense, 0.6, input_shape=(3, 16, 16))
    assert memory_format_for(dense, CPU) == torch.channels_last
    assert memory_format_for(pruned, CPU) == torch.contiguous_format
    assert memory_format_for(pruned, torch.device("cuda")) == torch.channels_last


# One thread on oneDNN's AVX2 code path (AMD EPYC; forced elsewhere by ONEDNN_MAX_CPU_ISA)
# aborted the demo's PruneFuse runs at p >= 0.6 in the selector's training: a digits batch
# passed for channels_last. A subprocess, so that a crash fails this test, not a worker.
@pytest.mark.slow
@pytest.mark.parametrize("ratio", [0.6, 0.7, 0.8])
def test_one_thread_demo_runs_of_pruned_selectors_do_not_crash_on_avx2(ratio, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    command = [sys.executable, "-m", "pf", "run", "--preset", "demo",
               "--set", "method=prunefuse", "--set", f"prune_ratio={ratio}",
               "--set", "budgets=[100,300]", "--set", "lr_schedule=[[1,0.01],[3,0.1]]",
               "--out", str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-500:]}"
    assert (tmp_path / "metrics.json").exists()
