"""DCGAN (Radford et al. 2015), parametrised by resolution, with optional class conditioning.

G: z (+ class embedding) -> 4x4 -> x2 upsampling blocks -> image. Upsampling is either
ConvTranspose 4x4/2 (the original) or bilinear x2 + 3x3 conv (fewer checkerboard artefacts).
D: strided 4x4 convs down to 4x4 -> one logit; conditioning by projection (Miyato & Koyama 2018);
PacGAN packing (Lin et al. 2018): `pack` images are stacked on the channel axis and judged together.
With resolution 64, width 64, convtranspose, pack 1 and no classes it is exactly
pytorch/examples' dcgan (ngf = ndf = 64).
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import ClassVar, Literal

import torch
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


class DCGANConfig(FamilyConfig):
    """`train.model` of family dcgan (images): the sizes of G and D, G's upsampling, D's normalisation, packing."""

    kind: ClassVar[str] = "image"
    family: Literal["dcgan"] = "dcgan"
    z_dim: int = Field(64, ge=1, le=4096)  # latent size
    g_width: int = Field(64, ge=4, le=1024)  # generator channels at the last block (doubles towards 4x4)
    d_width: int = Field(64, ge=4, le=1024)  # discriminator channels at the first block
    max_channels: int = Field(512, ge=8, le=4096)  # cap on channels per layer
    g_upsample: Literal["convtranspose", "bilinear"] = "bilinear"
    d_norm: Literal["batch", "spectral", "none"] = "spectral"
    pack: int = Field(2, ge=1, le=8)  # PacGAN: D judges groups of this many same-class images (1 = off)

    def latent_dim(self, frames: int) -> int:
        return self.z_dim


def _widths(resolution: int, width: int, max_channels: int) -> list[int]:
    """Channels at 4x4, 8x8, ..., resolution/2 (the last block before the image)."""
    return doubling_widths(int(math.log2(resolution)) - 2, width, max_channels)  # the x2 steps from 4x4


def init_weights(m: nn.Module) -> None:
    """DCGAN init: N(0, 0.02) convs, N(1, 0.02) BN scales."""
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear | nn.Embedding):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Generator(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        c = spec.config
        widths = _widths(spec.resolution, c.g_width, c.max_channels)
        self.embed = nn.Embedding(spec.num_classes, c.z_dim) if spec.num_classes else None
        z_in = c.z_dim * (2 if self.embed is not None else 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_in, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        outs = [*widths[1:], spec.channels]
        for i, (c_in, c_out) in enumerate(zip(widths, outs, strict=True)):
            last = i == len(widths) - 1
            if c.g_upsample == "convtranspose":
                layers.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False))
            else:
                up = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=last)  # an output bias lets the background reach -1
                layers += [nn.Upsample(scale_factor=2, mode="bilinear"), up]
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(c_out), nn.ReLU(True)]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:  # class indices [N], or class weights [N, num_classes] (class morphs)
            z = torch.cat([z, embed_classes(self.embed, labels(y, "generator"))], dim=1)
        return self.main(z[:, :, None, None])


class Discriminator(nn.Module):
    """`d_norm`: "batch" (the original; BN sees real and fake batches apart, so it cannot see a shift
    of the whole fake batch, e.g. a grey background), "spectral" (Miyato et al. 2018) or "none"."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        norm = spec.config.d_norm
        widths = _widths(spec.resolution, spec.config.d_width, spec.config.max_channels)[::-1]  # resolution/2 ... 4x4

        def conv(c_in: int, c_out: int, k: int, s: int, p: int) -> nn.Conv2d:
            return nn.Conv2d(c_in, c_out, k, s, p, bias=norm != "batch")

        layers: list[nn.Module] = [conv(spec.channels * spec.pack, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in pairwise(widths):
            layers.append(conv(c_in, c_out, 4, 2, 1))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, True))
        self.features = nn.Sequential(*layers)
        self.head = conv(widths[-1], 1, 4, 1, 0)
        self.embed = nn.Embedding(spec.num_classes, widths[-1]) if spec.num_classes else None
        self.classify = nn.Linear(widths[-1], spec.num_classes) if spec.class_head and spec.num_classes else None
        self.apply(init_weights)
        if norm == "spectral":
            for m in list(self.modules()):
                if isinstance(m, nn.Conv2d | nn.Embedding | nn.Linear):
                    nn.utils.parametrizations.spectral_norm(m)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        """One logit per pack [B / pack]; with a class head also its class logits and the labels of the packs
        (AC-GAN, Odena et al. 2017)."""
        h = self.features(unpack(x, self.spec.pack))
        out = self.head(h).flatten()
        if self.embed is None:
            return DOutput((out,))
        y = labels(y, "discriminator")[:: self.spec.pack]
        pooled = h.sum(dim=(2, 3))
        return judged(out + (self.embed(y) * pooled).sum(dim=1), pooled, y, self.classify)


@register(DCGANConfig)
def build(spec: ModelSpec) -> nn.ModuleDict:
    return nn.ModuleDict({"G": Generator(spec), "D": Discriminator(spec)})
