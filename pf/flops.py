"""Forward cost of a network in MACs, counted with fvcore.

fvcore counts one multiply-add as one "flop", so its numbers are MACs; FLOPs are twice
as many. We count convolutions, linear layers and attention's two matrix products only
(BatchNorm, ReLU, pooling and additions excluded), the convention of the PruneFuse and
SVP papers: ResNet-56 with 1x1 shortcuts costs 125.75 M MACs per 32x32 image. fvcore's
own default total (which adds BatchNorm) is available as ``fvcore_default_macs``, and
PyTorch's own FlopCounterMode (which counts 2 per MAC, but not CPU attention) as the
cross-check ``flop_counter_macs``. fvcore traces with torch.jit, so counting happens on
an uncompiled copy in eval mode, on the CPU.

Costs of a run's phases follow from the per-image forward cost: training one image costs
3 forwards (forward + backward's two products), scoring one pool image costs 1. What a
whole run or protocol will cost is planned in ``pf.experiments.cost``.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
from torch import nn

# fvcore touches torch.jit.script at import, which recent torch flags as deprecated.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_analysis import JitModelAnalysis
    from fvcore.nn.jit_handles import addmm_flop_jit, conv_flop_jit, linear_flop_jit

__all__ = ["UNIT", "forward_macs", "fvcore_default_macs", "flop_counter_macs",
           "classifier_macs", "parameter_count", "training_macs"]

UNIT = "MACs (1 multiply-add = 1; FLOPs = 2 x MACs)"


def _counting_copy(model: nn.Module) -> nn.Module:
    """An uncompiled fp32 CPU copy in eval mode: what every count runs on."""
    return copy.deepcopy(getattr(model, "_orig_mod", model)).float().cpu().eval()


def _traced(model: nn.Module, input_shape: tuple[int, ...], analysis_class, handles=None):
    """Run an fvcore analysis of one (1, *input_shape) input."""
    analysis = analysis_class(_counting_copy(model), (torch.zeros(1, *input_shape),))
    if handles:
        analysis.set_op_handle(*handles)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit tracer warnings say nothing about the count
        return analysis.total()


def forward_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass of one (C, H, W) input: convolutions and linear layers only.

    A bare ``JitModelAnalysis`` starts with no op handles, so registering only the
    conv/linear ones excludes everything else (``set_op_handle(op, None)`` on
    ``FlopCountAnalysis`` does not drop BatchNorm).
    """
    handles = ("aten::_convolution", conv_flop_jit, "aten::addmm", addmm_flop_jit,
               "aten::linear", linear_flop_jit,
               "aten::scaled_dot_product_attention", attention_flop_jit)
    return int(_traced(model, tuple(input_shape), JitModelAnalysis, handles))


def attention_flop_jit(inputs: list, outputs: list) -> int:
    """fvcore handle of ``scaled_dot_product_attention``: the two products q k^T and
    (attention) v, (..., N, d) x (..., M, d) and (..., N, M) x (..., M, d_v) MACs
    (fvcore has none; a transformer's attention is a matrix product, as a layer is)."""
    query, key, value = (input_.type().sizes() for input_ in inputs[:3])
    heads = math.prod(query[:-2])
    return heads * query[-2] * key[-2] * (query[-1] + value[-1])


def fvcore_default_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """fvcore's default per-image total (convolutions, linear layers and BatchNorm)."""
    return int(_traced(model, tuple(input_shape), FlopCountAnalysis))


def flop_counter_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """PyTorch's ``FlopCounterMode`` count of one forward pass, halved to MACs (cross-check)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        _counting_copy(model)(torch.zeros(1, *input_shape))
    return counter.get_total_flops() // 2


def classifier_macs(model: nn.Module) -> int:
    """MACs per image of ``model.fc``, its final linear layer (in x out, as fvcore counts
    a linear layer): what a Monte-Carlo dropout pass over fixed features costs."""
    return model.fc.in_features * model.fc.out_features


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def training_macs(forward: int, images_seen: int) -> int:
    """MACs of training on ``images_seen`` images (epochs x set size): 3 forwards each."""
    return 3 * forward * images_seen
