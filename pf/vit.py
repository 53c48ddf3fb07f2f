"""A small Vision Transformer for 32x32 images (Dosovitskiy et al., ICLR 2021), one of the
extended PruneFuse paper's networks.

Patches of 4x4 pixels (64 tokens and a class token), ``depth`` pre-norm blocks of
multi-head self-attention and a GELU MLP, the class token's final normalised embedding
as the penultimate features. ``vit_tiny_p4``: width 192, 6 blocks, 3 heads, MLP 384
(1.81 M parameters at 10 classes). It follows ``pf.models``' contract: ``features(x)``,
``dropout``, ``fc``.

Pruned by Torch-Pruning, the embedding width is cut everywhere at once (the patch
convolution, class token, position embedding, every normalisation, projection and MLP
output), each head keeps the same number of dimensions, and the MLP loses hidden units.
Two choices make the pruned network exactly the dense one restricted to its kept
channels, as fusion needs (``rest="zero"`` then reproduces it):
- attention scales by the dense head width's 1/sqrt(d) (a number fixed at construction),
  not by the width a head has after pruning;
- every normalisation is ``DenseWidthLayerNorm``: a LayerNorm whose mean and variance
  divide by the dense width, which a pruned copy keeps. In the dense network it is
  LayerNorm exactly; in a pruned one it is LayerNorm over the dense width with the
  removed channels at zero. A pruned plain LayerNorm would renormalise over fewer
  channels, and no placement of its weights in the dense network computes the same.
"""

from __future__ import annotations

import torch
from torch import nn

from pf.layers import init_weights

__all__ = ["DenseWidthLayerNorm", "Attention", "TransformerBlock", "VisionTransformer",
           "vit_tiny_p4"]


class DenseWidthLayerNorm(nn.LayerNorm):
    """LayerNorm over the last dimension whose statistics divide by ``dense_width`` (the
    width it was built with), whatever width pruning leaves it (see the module docstring)."""

    def __init__(self, width: int, eps: float = 1e-6):
        super().__init__(width, eps=eps)
        self.dense_width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.sum(-1, keepdim=True) / self.dense_width
        variance = x.square().sum(-1, keepdim=True) / self.dense_width - mean.square()
        return (x - mean) * torch.rsqrt(variance + self.eps) * self.weight + self.bias


class Attention(nn.Module):
    """Multi-head self-attention with one ``qkv`` projection (the q, k and v of every head,
    in that order) and an output ``proj``; ``num_heads`` and the layer names are timm's,
    which ``pf.prune`` reads."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (width // num_heads) ** -0.5  # the dense head width's, kept by pruning
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(
            2, 0, 3, 1, 4).unbind(0)
        out = nn.functional.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, -1))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + MLP(norm(x)) with a GELU."""

    def __init__(self, width: int, num_heads: int, mlp_width: int):
        super().__init__()
        self.norm1 = DenseWidthLayerNorm(width)
        self.attn = Attention(width, num_heads)
        self.norm2 = DenseWidthLayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_width), nn.GELU(),
                                 nn.Linear(mlp_width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """A ViT for ``image_size`` inputs in ``patch`` x ``patch`` tokens (see the module
    docstring). Weights: truncated normal (std 0.02) position embedding and class token,
    ``pf.layers.init_weights`` for the patch convolution and linear layers."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0,
                 image_size: int = 32, patch: int = 4, width: int = 192, depth: int = 6,
                 num_heads: int = 3, mlp_width: int = 384):
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, width, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + 1, width))
        self.blocks = nn.Sequential(*[TransformerBlock(width, num_heads, mlp_width)
                                      for _ in range(depth)])
        self.norm = DenseWidthLayerNorm(width)
        self.dropout = nn.Dropout(dropout)  # before the classifier only, as pf.models'
        self.fc = nn.Linear(width, num_classes)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the class token's final normalised embedding."""
        grid = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1),
                            grid.flatten(2).transpose(1, 2)], dim=1)
        tokens = self.blocks(tokens + self._position(grid.shape[-2:]))
        return self.norm(tokens)[:, 0]

    def _position(self, grid: torch.Size) -> torch.Tensor:
        """The position embedding for a ``grid`` of patches: as built for ``image_size``,
        else its patch part resized bilinearly (as timm does for other resolutions), so
        that the same network reads the 8x8 digits or 16x16 test images too."""
        built = int((self.pos_embed.shape[1] - 1) ** 0.5)
        if tuple(grid) == (built, built):
            return self.pos_embed
        patches = self.pos_embed[:, 1:].reshape(1, built, built, -1).permute(0, 3, 1, 2)
        patches = nn.functional.interpolate(patches, size=tuple(grid), mode="bilinear",
                                            align_corners=False)
        return torch.cat([self.pos_embed[:, :1], patches.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


def vit_tiny_p4(num_classes: int = 10, in_channels: int = 3,
                dropout: float = 0.0) -> VisionTransformer:
    """ViT for 32x32 images: 4x4 patches, width 192, 6 blocks, 3 heads, MLP 384."""
    return VisionTransformer(num_classes, in_channels, dropout)
