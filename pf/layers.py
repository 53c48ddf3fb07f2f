"""The building blocks every network of pf shares: bias-free convolutions and the one
definition of a layer's initial weights."""

from __future__ import annotations

from torch import nn

__all__ = ["conv3x3", "conv1x1", "init_weights"]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free 3x3 convolution with 'same' padding (BatchNorm follows or precedes it)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free 1x1 convolution, used by bottlenecks and projection shortcuts."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def init_weights(module: nn.Module) -> None:
    """Draw a layer's initial weights: the one place that defines 'initialization'.

    Convolutions: Kaiming-normal, fan-out, ReLU gain (He et al. 2015). BatchNorm: weight
    1, bias 0, running statistics reset. Linear: PyTorch's default Kaiming-uniform
    (a=sqrt(5)) for the weight and uniform bias, as the CIFAR ResNets of SVP and
    torchvision keep. Fusion's ``rest="reinit"`` re-draws from this same function.
    """
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        module.reset_parameters()
    elif isinstance(module, nn.Linear):
        module.reset_parameters()
