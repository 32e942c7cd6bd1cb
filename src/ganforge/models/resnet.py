"""ResNet GAN (SNGAN, Miyato et al. 2018; BigGAN-style conditioning, Brock et al. 2019), by resolution.

G: z -> linear -> 4x4 -> residual up-blocks (BN, ReLU, x2 nearest, 3x3 conv, BN, ReLU, 3x3 conv; a 1x1 conv on
the upsampled shortcut) -> BN, ReLU, 3x3 conv, tanh. With classes, every BatchNorm is conditional: its scale and
shift are read from a class embedding (concatenated with z when `shared_embedding`: BigGAN's hierarchical
latent feeds each block its own chunk of z as well). D: residual down-blocks (ReLU, 3x3 conv, ReLU, 3x3 conv,
2x2 average pool; the first block without the leading ReLU), ReLU, sum over space, a linear logit plus the
projection of the class (Miyato & Koyama 2018); spectral norm on every layer. PacGAN packing and the AC-GAN head
as in dcgan. The usual choice for 32 to 128 px.
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
    doubling_widths,
    embed_classes,
    judged,
    labels,
    register,
    unpack,
)


class ResNetConfig(FamilyConfig):
    """`train.model` of family resnet (images): widths of G and D, G's conditioning, packing."""

    kind: ClassVar[str] = "image"
    # SNGAN's: hinge loss, Adam (0, 0.9); two D steps per G step (SNGAN: 5; 2 keeps most of it at 40% the cost)
    recipe: ClassVar[dict[str, Any]] = {"loss": "hinge", "beta1": 0.0, "beta2": 0.9, "n_critic": 2}
    family: Literal["resnet"] = "resnet"
    z_dim: int = Field(128, ge=1, le=4096)  # latent size
    g_width: int = Field(64, ge=4, le=1024)  # generator channels at the last block (doubles towards 4x4)
    d_width: int = Field(64, ge=4, le=1024)  # discriminator channels at the first block (doubles towards 4x4)
    max_channels: int = Field(512, ge=8, le=4096)  # cap on channels per layer
    # conditional G: "cbn" (each BatchNorm's scale and shift from the class embedding, SNGAN) or "hierarchical"
    # (BigGAN: the embedding plus a chunk of z per block)
    conditioning: Literal["cbn", "hierarchical"] = "cbn"
    embed_dim: int = Field(128, ge=1, le=4096)  # class embedding size
    pack: int = Field(1, ge=1, le=8)  # PacGAN: D judges groups of this many same-class images (1 = off)

    def latent_dim(self, frames: int) -> int:
        return self.z_dim


def _widths(resolution: int, width: int, max_channels: int) -> list[int]:
    """Channels at 4x4, 8x8, ..., resolution/2 (as in dcgan: width at the last block, doubling towards 4x4)."""
    return doubling_widths(int(math.log2(resolution)) - 2, width, max_channels)


class CondBatchNorm(nn.Module):
    """BatchNorm without its own affine; scale 1 + gamma(c) and shift beta(c) from a condition vector c (or the
    plain learned affine when there is none)."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=cond_dim == 0)
        self.gamma = nn.Linear(cond_dim, channels, bias=False) if cond_dim else None
        self.beta = nn.Linear(cond_dim, channels, bias=False) if cond_dim else None

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        h = self.bn(x)
        if self.gamma is None or c is None:
            return h
        return h * (1 + self.gamma(c)[:, :, None, None]) + self.beta(c)[:, :, None, None]


class GBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond_dim: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = CondBatchNorm(c_in, cond_dim), CondBatchNorm(c_out, cond_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), c)))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))


class Generator(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        c = spec.config
        widths = _widths(spec.resolution, c.g_width, c.max_channels)
        n = len(widths)
        hier = c.conditioning == "hierarchical"
        # hierarchical: z splits into n + 1 chunks, the first to the linear layer and one per block
        self.chunk = c.z_dim // (n + 1) if hier else 0
        self.embed = nn.Embedding(spec.num_classes, c.embed_dim) if spec.num_classes else None
        cond_dim = (c.embed_dim if self.embed is not None else 0) + self.chunk
        z_in = c.z_dim - n * self.chunk
        self.linear = nn.Linear(z_in, widths[0] * 16)
        self.blocks = nn.ModuleList(
            GBlock(a, b, cond_dim) for a, b in zip(widths, [*widths[1:], widths[-1]], strict=True)
        )
        self.out = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(), nn.Conv2d(widths[-1], spec.channels, 3, 1, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # class indices [N], or class weights [N, num_classes] (soft labels: blends, for class morphs)
        e = embed_classes(self.embed, labels(y, "generator")) if self.embed is not None else None
        n = len(self.blocks)
        zs = z.split([z.shape[1] - n * self.chunk, *[self.chunk] * n], dim=1) if self.chunk else (z,) + (None,) * n
        h = self.linear(zs[0]).view(len(z), -1, 4, 4)
        for block, zc in zip(self.blocks, zs[1:], strict=True):
            parts = [t for t in (e, zc) if t is not None]
            h = block(h, torch.cat(parts, dim=1) if parts else None)
        return torch.tanh(self.out(h))


class DBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, *, first: bool, down: bool = True) -> None:
        super().__init__()
        self.first, self.down = first, down
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out or down else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        s = x
        if self.first:  # SNGAN's optimised first block: pool, then the 1x1 conv
            s = self.skip(F.avg_pool2d(s, 2) if self.down else s)
        elif self.skip is not None:
            s = self.skip(s)
            s = F.avg_pool2d(s, 2) if self.down else s
        return (F.avg_pool2d(h, 2) if self.down else h) + s


class Discriminator(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        c = spec.config
        widths = _widths(spec.resolution, c.d_width, c.max_channels)[::-1]  # resolution/2 ... 4x4
        chans = [spec.channels * spec.pack, *widths]
        self.blocks = nn.Sequential(
            *(DBlock(a, b, first=i == 0) for i, (a, b) in enumerate(pairwise(chans))),
            DBlock(widths[-1], widths[-1], first=False, down=False),  # one more block at 4x4
        )
        self.head = nn.Linear(widths[-1], 1)
        self.embed = nn.Embedding(spec.num_classes, widths[-1]) if spec.num_classes else None
        self.classify = nn.Linear(widths[-1], spec.num_classes) if spec.class_head and spec.num_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding):
                nn.init.xavier_uniform_(m.weight)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        for m in list(self.modules()):
            if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding):
                nn.utils.parametrizations.spectral_norm(m)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        pooled = F.relu(self.blocks(unpack(x, self.spec.pack))).sum(dim=(2, 3))
        out = self.head(pooled).flatten()
        if self.embed is None:
            return DOutput((out,))
        y = labels(y, "discriminator")[:: self.spec.pack]
        return judged(out + (self.embed(y) * pooled).sum(dim=1), pooled, y, self.classify)  # projection


@register(ResNetConfig)
def build(spec: ModelSpec) -> nn.ModuleDict:
    return nn.ModuleDict({"G": Generator(spec), "D": Discriminator(spec)})
