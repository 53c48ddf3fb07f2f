import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pf.flops import forward_macs, fvcore_default_macs
from pf.models import build_model


def test_resnet56_conv_and_linear_macs_match_the_published_count():
    assert forward_macs(build_model("resnet56"), (3, 32, 32)) == pytest.approx(125.75e6, rel=1e-3)


@pytest.mark.parametrize("name, shape", [("resnet20", (3, 32, 32)), ("preact20", (1, 8, 8))])
def test_fvcore_macs_are_half_of_pytorchs_flops(name, shape):
    model = build_model(name, in_channels=shape[0]).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *shape))
    assert forward_macs(model, shape) == counter.get_total_flops() / 2


def test_fvcores_default_also_counts_batchnorm():
    model = build_model("resnet20")
    assert fvcore_default_macs(model, (3, 32, 32)) > forward_macs(model, (3, 32, 32))
