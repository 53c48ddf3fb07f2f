"""torchvision's ImageNet ResNet-50 in ``pf.models``' contract, the extended PruneFuse
paper's ImageNet-1K network.

torchvision builds and initialises the network (He et al. 2016, with its Kaiming-normal
fan-out convolutions and BatchNorm 1/0, as ``pf.layers.init_weights`` draws); this
wrapper moves its classifier out as ``fc`` behind a ``dropout``, so that ``features(x)``
is the pooled 2,048-dimensional penultimate activation every selection strategy reads.
Any input size works (the ImageNet stem downsamples by 32 before global pooling); a
stem for other than 3 input channels is a fresh 7x7 convolution of the same shape.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from pf.layers import init_weights

__all__ = ["TorchvisionResNet", "resnet50"]


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet with its classifier as ``fc`` (see the module docstring)."""

    def __init__(self, body: torchvision.models.ResNet, in_channels: int, dropout: float):
        super().__init__()
        if in_channels != body.conv1.in_channels:
            stem = body.conv1
            body.conv1 = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size,
                                   stem.stride, stem.padding, bias=False)
            init_weights(body.conv1)
        self.fc, body.fc = body.fc, nn.Identity()
        self.body = body
        self.dropout = nn.Dropout(dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the pooled activations that the classifier reads."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


def resnet50(num_classes: int = 10, in_channels: int = 3,
             dropout: float = 0.0) -> TorchvisionResNet:
    """torchvision's ResNet-50 (25.6 M parameters at 1,000 classes), freshly initialised."""
    return TorchvisionResNet(torchvision.models.resnet50(num_classes=num_classes), in_channels,
                             dropout)
