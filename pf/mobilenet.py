"""MobileNetV2 for 32x32 images (Sandler et al., CVPR 2018), one of the extended
PruneFuse paper's networks.

The ImageNet network's inverted residual blocks (1x1 expansion, 3x3 depthwise, 1x1
linear projection; the residual where the shape stays) and widths, with the two changes
CIFAR versions make so that a 32x32 image is not pooled away: a stride-1 stem and a
stride-1 second stage, leaving 4x4 maps before the last 1x1 convolution (2.24 M
parameters for 10 classes). ReLU6 as in the paper. It follows ``pf.models``' contract:
``features(x)``, ``dropout``, ``fc``.

Torch-Pruning prunes it as a dependency graph: an expansion's channels couple with the
depthwise convolution's (groups follow), and the residual stream couples the
projections of every block of a stage.
"""

from __future__ import annotations

import torch
from torch import nn

from pf.layers import conv1x1, conv3x3, init_weights

__all__ = ["InvertedResidual", "MobileNetV2", "MOBILENET_V2_STAGES"]

# (expansion t, output channels c, blocks n, first block's stride s), the paper's Table 2
# with the second stage at stride 1 for 32x32 inputs.
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
STEM_WIDTH, LAST_WIDTH = 32, 1280


class InvertedResidual(nn.Module):
    """1x1 expansion (unless t = 1), 3x3 depthwise, 1x1 linear projection, each with
    BatchNorm (ReLU6 after the first two); adds the input where the shape stays."""

    def __init__(self, in_channels: int, channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        layers = []
        if expansion != 1:
            layers += [conv1x1(in_channels, hidden), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden,
                             bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
                   conv1x1(hidden, channels), nn.BatchNorm2d(channels)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 for 32x32 inputs (see the module docstring)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        self.stem = nn.Sequential(conv3x3(in_channels, STEM_WIDTH), nn.BatchNorm2d(STEM_WIDTH),
                                  nn.ReLU6())
        blocks, width = [], STEM_WIDTH
        for expansion, channels, count, stride in MOBILENET_V2_STAGES:
            for i in range(count):
                blocks.append(InvertedResidual(width, channels, stride if i == 0 else 1,
                                               expansion))
                width = channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(conv1x1(width, LAST_WIDTH), nn.BatchNorm2d(LAST_WIDTH),
                                  nn.ReLU6())
        self.dropout = nn.Dropout(dropout)  # before the classifier only, as pf.models'
        self.fc = nn.Linear(LAST_WIDTH, num_classes)
        self.apply(init_weights)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the pooled activations that the classifier reads."""
        out = self.head(self.blocks(self.stem(x)))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))
