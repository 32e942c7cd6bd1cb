"""R3GAN's baseline networks (Huang et al., NeurIPS 2024, "The GAN is dead; long live the GAN!"), by resolution.

Both networks are stacks of stages, one per resolution, of ResNeXt-style residual blocks: a 1x1 conv that
widens the channels by `expansion`, a grouped 3x3 conv (`group_size` channels per group), a 1x1 conv back,
leaky ReLU (with its own bias) between them. No normalisation layers: the residual branches start small
instead (fix-up style: each branch's last conv starts at zero and the others are scaled down by the number of
blocks, so the network starts close to its skip path). Between stages a 1x1 conv changes the width and a
[1, 2, 1] low-pass filter resamples by 2 (anti-aliased). G starts from a learned 4x4 basis scaled per channel by
a linear map of z (and the class embedding); D ends with a depthwise 4x4 conv to one vector per image and a
linear logit, plus the projection of the class (Miyato & Koyama 2018). No tanh: G's output is clamped to
[-1, 1] where samples become images.

The recipe it is meant for is R3GAN's: the relativistic pairing loss (`train.loss: rpgan`) with R1 and R2
(`train.r1`, `train.r2`), Adam with beta1 0 and an EMA of G. From 32 to 256 px.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganforge.models.base import (
    DOutput,
    FamilyConfig,
    ModelSpec,
    class_weights,
    doubling_widths,
    judged,
    labels,
    register,
    unpack,
)


class R3GANConfig(FamilyConfig):
    """`train.model` of family r3gan (images): widths, blocks per stage, the blocks' shape, packing."""

    kind: ClassVar[str] = "image"
    # R3GAN's: the relativistic pairing loss with R1 and R2 (same gamma), Adam (0, 0.99), EMA
    recipe: ClassVar[dict[str, Any]] = {
        "loss": "rpgan", "r1.weight": 0.1, "r2.weight": 0.1, "beta1": 0.0, "beta2": 0.99, "ema_decay": 0.999,
    }  # fmt: skip
    family: Literal["r3gan"] = "r3gan"
    z_dim: int = Field(64, ge=1, le=4096)  # latent size
    width: int = Field(64, ge=8, le=2048)  # channels of the highest-resolution stage (doubling towards 4x4)
    max_channels: int = Field(256, ge=8, le=4096)  # cap on channels per stage
    blocks: int = Field(2, ge=1, le=16)  # residual blocks per stage
    expansion: int = Field(2, ge=1, le=8)  # inverted bottleneck: a block widens its channels by this inside
    group_size: int = Field(16, ge=1, le=1024)  # channels per group of the grouped 3x3 conv
    embed_dim: int = Field(64, ge=1, le=4096)  # class embedding size (conditional models)
    pack: int = Field(1, ge=1, le=8)  # PacGAN: D judges groups of this many same-class images (1 = off)

    def latent_dim(self, frames: int) -> int:
        return self.z_dim


def _widths(resolution: int, width: int, max_channels: int) -> list[int]:
    """Channels of the stages at 4x4, 8x8, ..., resolution."""
    return doubling_widths(int(math.log2(resolution)) - 1, width, max_channels)  # stages from 4x4 to the image


def _lowpass(channels: int, gain: float) -> torch.Tensor:
    k = torch.tensor([1.0, 2.0, 1.0])
    k = torch.outer(k, k)
    return (k / k.sum() * gain).expand(channels, 1, 3, 3).contiguous()


class Upsample(nn.Module):
    """x2, zero insertion then the [1, 2, 1] low-pass filter (a depthwise transposed conv)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("kernel", _lowpass(channels, 4.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel.to(x.dtype)
        return F.conv_transpose2d(x, k, stride=2, padding=1, output_padding=1, groups=x.shape[1])


class Downsample(nn.Module):
    """/2, the [1, 2, 1] low-pass filter then every other pixel (a depthwise strided conv)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("kernel", _lowpass(channels, 1.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.kernel.to(x.dtype), stride=2, groups=x.shape[1])


class BiasedLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias.to(x.dtype)[:, None, None], 0.2)


def _conv(c_in: int, c_out: int, k: int, groups: int = 1, scale: float = 1.0) -> nn.Conv2d:
    """A bias-free conv, He-initialised for leaky ReLU and multiplied by `scale` (0: starts at zero)."""
    conv = nn.Conv2d(c_in, c_out, k, 1, k // 2, groups=groups, bias=False)
    nn.init.kaiming_normal_(conv.weight, a=0.2, nonlinearity="leaky_relu")
    conv.weight.data.mul_(scale)
    return conv


class Block(nn.Module):
    """x + 1x1 (widen) -> act -> grouped 3x3 -> act -> 1x1 (back, starts at zero)."""

    def __init__(self, channels: int, expansion: int, group_size: int, scale: float) -> None:
        super().__init__()
        wide = channels * expansion
        groups = max(1, wide // group_size)
        while wide % groups:
            groups -= 1
        self.branch = nn.Sequential(
            _conv(channels, wide, 1, scale=scale),
            BiasedLeakyReLU(wide),
            _conv(wide, wide, 3, groups=groups, scale=scale),
            BiasedLeakyReLU(wide),
            _conv(wide, channels, 1, scale=0.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


def _stages(widths: list[int], c: R3GANConfig) -> list[nn.Sequential]:
    """One Sequential of `c.blocks` blocks per width; the branches scaled by (all blocks)^(-1/4)
    (fix-up: L^(-1/(2m - 2)) with m = 3 layers per branch)."""
    scale = (len(widths) * c.blocks) ** -0.25
    return [nn.Sequential(*(Block(w, c.expansion, c.group_size, scale) for _ in range(c.blocks))) for w in widths]


class Generator(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        c = spec.config
        widths = _widths(spec.resolution, c.width, c.max_channels)
        self.embed = nn.Linear(spec.num_classes, c.embed_dim, bias=False) if spec.num_classes else None
        z_in = c.z_dim + (c.embed_dim if self.embed is not None else 0)
        self.basis = nn.Parameter(torch.randn(widths[0], 4, 4))
        self.to_basis = nn.Linear(z_in, widths[0], bias=False)
        self.stages = nn.ModuleList(_stages(widths, c))
        self.transitions = nn.ModuleList(
            nn.Sequential(_conv(a, b, 1), Upsample(b)) if a != b else Upsample(b) for a, b in pairwise(widths)
        )
        self.to_image = _conv(widths[-1], spec.channels, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:  # class indices [N], or class weights [N, num_classes] (class morphs)
            onehot = class_weights(labels(y, "generator"), self.spec.num_classes, z.dtype)
            z = torch.cat([z, self.embed(onehot)], dim=1)
        h = self.basis * self.to_basis(z)[:, :, None, None]
        for i, stage in enumerate(self.stages):
            if i:
                h = self.transitions[i - 1](h)
            h = stage(h)
        return self.to_image(h)


class Discriminator(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        c = spec.config
        widths = _widths(spec.resolution, c.width, c.max_channels)[::-1]  # resolution ... 4x4
        self.from_image = nn.Sequential(_conv(spec.channels * spec.pack, widths[0], 1), BiasedLeakyReLU(widths[0]))
        self.stages = nn.ModuleList(_stages(widths, c))
        self.transitions = nn.ModuleList(
            nn.Sequential(Downsample(a), _conv(a, b, 1)) if a != b else Downsample(a) for a, b in pairwise(widths)
        )
        last = widths[-1]
        self.basis = nn.Conv2d(last, last, 4, groups=last, bias=False)  # depthwise 4x4 -> one vector per image
        nn.init.kaiming_normal_(self.basis.weight, nonlinearity="linear")
        out = c.embed_dim if spec.num_classes else 1
        self.head = nn.Linear(last, out, bias=False)
        self.embed = nn.Embedding(spec.num_classes, c.embed_dim) if spec.num_classes else None
        self.classify = nn.Linear(last, spec.num_classes) if spec.class_head and spec.num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        h = self.from_image(unpack(x, self.spec.pack))
        for i, stage in enumerate(self.stages):
            if i:
                h = self.transitions[i - 1](h)
            h = stage(h)
        v = self.basis(h).flatten(1)
        out = self.head(v)
        if self.embed is None:
            return DOutput((out.flatten(),))
        y = labels(y, "discriminator")[:: self.spec.pack]
        return judged((out * self.embed(y)).sum(dim=1) / math.sqrt(out.shape[1]), v, y, self.classify)


@register(R3GANConfig)
def build(spec: ModelSpec) -> nn.ModuleDict:
    return nn.ModuleDict({"G": Generator(spec), "D": Discriminator(spec)})
