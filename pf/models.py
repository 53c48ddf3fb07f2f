"""The networks, built by registry name (``MODELS``): CIFAR ResNets, wide ResNets,
MobileNetV2 (``pf.mobilenet``), a small ViT (``pf.vit``) and torchvision's ResNet-50
(``pf.torchvision_models``).

Every network here follows He et al. (2016): a 3x3 stem, three stages of widths
16/32/64 (x4 for bottlenecks) at strides 1/2/2, global average pooling and one linear
classifier. ``resnet18`` is the exception: the ImageNet ResNet-18's four stages of two
basic blocks, widths 64/128/256/512 at strides 1/2/2/2, behind the same 3x3 stem (the
"ResNet-18 for CIFAR" that data-pruning papers train, 11.2M parameters). ``wrn16_4``
and ``wrn28_10`` are wide ResNets (pre-activation, widths x4 / x10). Where a block
changes the shape of the residual stream, the shortcut is a 1x1 convolution (+ BatchNorm
in post-activation nets) rather than the zero-padding "option A" shortcut: Torch-Pruning
can only couple the channels of the residual stream when both branches of every addition
are real layers, and PruneFuse prunes that stream.

    build_model("resnet56", num_classes=10, in_channels=3)   # 0.856M parameters

ReLUs and residual additions work in place on tensors that nothing else reads
(BatchNorm and convolution outputs, whose backward needs only their inputs; autograd
would raise if one did): on the 2-core development CPU a ResNet-20 training step took
206 ms instead of 241 ms (channels_last, batch 128), since fewer activations are allocated.

Each model exposes ``features(x)`` (the penultimate, pooled activations: the input of
the final linear layer, used by k-centers), ``dropout`` (before that layer; rate 0 unless
built with one, for BALD's Monte-Carlo dropout) and ``fc`` (that layer); ``forward(x)`` is
``fc(dropout(features(x)))``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pf.layers import conv1x1, conv3x3, init_weights
from pf.mobilenet import MobileNetV2
from pf.torchvision_models import resnet50
from pf.vit import vit_tiny_p4

__all__ = ["MODELS", "build_model", "CifarResNet"]

STAGE_WIDTHS = (16, 32, 64)
STAGE_STRIDES = (1, 2, 2)
RESNET18_WIDTHS = (64, 128, 256, 512)
RESNET18_STRIDES = (1, 2, 2, 2)


# ---------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Post-activation basic block: conv-BN-ReLU-conv-BN, add the shortcut, ReLU."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                conv1x1(in_channels, channels, stride), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu_(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu_(out.add_(self.shortcut(x)))


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al., ECCV 2016): BN-ReLU-conv twice, then add.

    A projection shortcut reads the pre-activated input, as in the original; it is a
    plain 1x1 convolution because the next block's BatchNorm normalises the sum.
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels)
        self.shortcut = None
        if stride != 1 or in_channels != channels:
            self.shortcut = conv1x1(in_channels, channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu_(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(torch.relu_(self.bn2(out)))
        return out.add_(identity)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: 1x1 reduce, 3x3, 1x1 expand (x4), each after BN-ReLU."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        out_channels = channels * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv1x1(in_channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2d(channels)
        self.conv3 = conv1x1(channels, out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv1x1(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu_(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(torch.relu_(self.bn2(out)))
        out = self.conv3(torch.relu_(self.bn3(out)))
        return out.add_(identity)


# ---------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------


class CifarResNet(nn.Module):
    """A CIFAR ResNet: a 3x3 stem (``stem_width`` channels, default ``widths[0]``), then
    one stage of ``blocks_per_stage`` blocks of one kind per entry of ``widths`` (named
    layer1, layer2, ...), pooling and a classifier."""

    def __init__(
        self,
        block: type[nn.Module],
        blocks_per_stage: int,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: tuple[int, ...] = STAGE_WIDTHS,
        strides: tuple[int, ...] = STAGE_STRIDES,
        dropout: float = 0.0,
        stem_width: int | None = None,
    ):
        super().__init__()
        self.preact = block is not BasicBlock
        stem_width = stem_width or widths[0]
        self.conv1 = conv3x3(in_channels, stem_width)
        # Post-activation nets normalise the stem; pre-activation nets normalise at the end.
        self.bn1 = nn.Identity() if self.preact else nn.BatchNorm2d(stem_width)
        self.stages, width_in = [], stem_width
        for number, (width, stride) in enumerate(zip(widths, strides), start=1):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(block(width_in, width, stride if i == 0 else 1))
                width_in = width * block.expansion
            self.add_module(f"layer{number}", nn.Sequential(*blocks))
            self.stages.append(f"layer{number}")
        self.bn_final = nn.BatchNorm2d(width_in) if self.preact else nn.Identity()
        # Before the classifier only (0: none, an identity that draws no random numbers);
        # Monte-Carlo dropout (BALD, pf.select) samples it over fixed features.
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width_in, num_classes)
        self.apply(init_weights)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the pooled activations that the classifier reads."""
        out = self.bn1(self.conv1(x))
        if not self.preact:
            out = torch.relu_(out)
        for stage in self.stages:
            out = getattr(self, stage)(out)
        if self.preact:
            out = torch.relu_(self.bn_final(out))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


def _factory(block: type[nn.Module], depth: int) -> Callable[..., CifarResNet]:
    layers_per_block = 3 if block is PreActBottleneck else 2
    blocks_per_stage, remainder = divmod(depth - 2, 3 * layers_per_block)
    assert remainder == 0, f"depth {depth} does not fit {block.__name__}"
    return lambda num_classes=10, in_channels=3, dropout=0.0: CifarResNet(
        block, blocks_per_stage, num_classes, in_channels, dropout=dropout
    )


def _wide(depth: int, widen: int) -> Callable[..., CifarResNet]:
    """WRN-depth-widen (Zagoruyko & Komodakis, BMVC 2016): pre-activation basic blocks,
    (depth - 4) / 6 per stage, widths 16/32/64 times ``widen`` behind a 16-channel stem
    (no dropout between a block's convolutions: the CIFAR-10 setting without it)."""
    blocks_per_stage, remainder = divmod(depth - 4, 6)
    assert remainder == 0, f"depth {depth} does not fit a wide ResNet"
    widths = tuple(width * widen for width in STAGE_WIDTHS)
    return lambda num_classes=10, in_channels=3, dropout=0.0: CifarResNet(
        PreActBlock, blocks_per_stage, num_classes, in_channels, widths, dropout=dropout,
        stem_width=STAGE_WIDTHS[0])


MODELS: dict[str, Callable[..., nn.Module]] = {
    **{f"resnet{d}": _factory(BasicBlock, d) for d in (8, 14, 20, 32, 56, 110)},
    **{f"preact{d}": _factory(PreActBlock, d) for d in (8, 14, 20, 32, 56, 110)},
    "preact164": _factory(PreActBottleneck, 164),
    "resnet18": lambda num_classes=10, in_channels=3, dropout=0.0: CifarResNet(
        BasicBlock, 2, num_classes, in_channels, RESNET18_WIDTHS, RESNET18_STRIDES, dropout),
    "wrn16_4": _wide(16, 4),
    "wrn28_10": _wide(28, 10),
    "mobilenetv2": MobileNetV2,
    "resnet50": resnet50,  # torchvision's, for ImageNet (pf.torchvision_models)
    "vit_tiny_p4": vit_tiny_p4,  # a ViT for 32x32 images, 4x4 patches (pf.vit)
}


def build_model(name: str, num_classes: int = 10, in_channels: int = 3,
                dropout: float = 0.0) -> nn.Module:
    """Build a freshly initialised network from its registry name (see ``MODELS``), with
    dropout at rate ``dropout`` before its classifier (0: none)."""
    if name not in MODELS:
        raise ValueError(f"arch: unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](num_classes=num_classes, in_channels=in_channels, dropout=dropout)
