"""CycleGAN (Zhu et al. 2017): unpaired translation between two domains.

G is a pair of ResNet generators (A->B and B->A: c7s1-w, two stride-2 downsamplings, `blocks` residual
blocks, two upsamplings, c7s1-C, tanh; instance norm, reflection padding), D a pair of PatchGANs (4x4
stride-2 convs with instance norm and LeakyReLU 0.2, one logit per overlapping patch: `d_layers` 3 is the
70x70 PatchGAN). Both are called with a domain per row and route each row to its network: `G(x, target)`
translates row i into domain `target[i]` (B->A for target 0, A->B for 1), `D(x, domain)` judges row i as a
real image of `domain[i]`. The objective's terms (LSGAN, cycle consistency, identity, the history pool, the
linear learning-rate decay) are the family's recipe and config (see `training/translation.py`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from ganforge.models.base import DOutput, FamilyConfig, ModelSpec, register


class TranslatorConfig(FamilyConfig):
    """What every translation family's config has: the terms beside the adversarial loss (the step that uses them:
    `training/translation.py`) and D's class head."""

    task: ClassVar[str] = "translate"
    cycle: float = Field(10.0, ge=0.0, le=1000.0)  # lambda: L1 of x against its translation translated back
    identity: float = Field(0.5, ge=0.0, le=100.0)  # x lambda: L1 of x against its own domain's G(x)
    pool_size: int = Field(50, ge=0, le=10_000)  # D also sees fakes from this many earlier ones (0: off)
    # std of Gaussian noise on a translation before it is translated back (Chu et al. 2017: a cycle can hide what
    # it needs in faint patterns instead of in what the image shows; noise drowns them); 0 = off, as in the paper
    cycle_noise: float = Field(0.0, ge=0.0, le=2.0)
    # D's class head (train.class_loss > 0) over the prepared data's classes, set by train (0: no head). D then also
    # classifies what it sees (a real image: its class; a translation: the class of the target domain with the
    # source's content, "typeset_3" for a handwritten 3), and G is pushed to keep that class
    classes: int = Field(0, ge=0, le=100_000)

    def latent_dim(self, frames: int) -> int:
        return 0


class CycleGANConfig(TranslatorConfig):
    """`train.model` of family cyclegan (two image domains): the networks' sizes (the cycle terms: TranslatorConfig)."""

    kind: ClassVar[str] = "image"
    # CycleGAN's: LSGAN, Adam (0.5, 0.999) at 2e-4, the rate constant for half the steps then down to 0
    recipe: ClassVar[dict[str, Any]] = {
        "loss": "lsgan", "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999, "lr_decay_start": 0.5,
    }  # fmt: skip
    family: Literal["cyclegan"] = "cyclegan"
    g_width: int = Field(64, ge=4, le=1024)  # channels after G's first conv (x4 in the residual blocks)
    blocks: Annotated[int, Field(ge=1, le=32)] | Literal["auto"] = "auto"  # residual blocks; auto: 9 from 256 px
    d_width: int = Field(64, ge=4, le=1024)  # channels of D's first conv
    d_layers: Annotated[int, Field(ge=1, le=8)] | Literal["auto"] = "auto"  # stride-2 convs in D; auto: 3 from 64 px

    def n_blocks(self, resolution: int) -> int:
        return self.blocks if self.blocks != "auto" else (9 if resolution >= 256 else 6)

    def n_d_layers(self, resolution: int) -> int:
        return self.d_layers if self.d_layers != "auto" else (3 if resolution >= 64 else 2)


def route(nets: nn.ModuleList, x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Row i of `x` through `nets[which[i]]`, the rows back in their order (each net sees its rows at once)."""
    if len(nets) == 1:
        return nets[0](x)
    order = torch.argsort(which, stable=True)
    counts = torch.bincount(which, minlength=len(nets)).tolist()
    parts = [net(chunk) for net, chunk in zip(nets, torch.split(x[order], counts), strict=True) if len(chunk)]
    return torch.cat(parts)[torch.argsort(order)]


class ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), nn.InstanceNorm2d(width, affine=True), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), nn.InstanceNorm2d(width, affine=True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Johnson et al.'s image transformation network, as CycleGAN and StarGAN use it: `extra` input channels
    carry a condition (StarGAN's target domain)."""

    def __init__(self, channels: int, width: int, blocks: int, extra: int = 0) -> None:
        super().__init__()

        def norm_relu(c: int) -> list[nn.Module]:
            return [nn.InstanceNorm2d(c, affine=True), nn.ReLU(True)]

        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels + extra, width, 7), *norm_relu(width)]
        for i in range(2):
            layers += [nn.Conv2d(width << i, width << (i + 1), 3, stride=2, padding=1), *norm_relu(width << (i + 1))]
        layers += [ResBlock(width * 4) for _ in range(blocks)]
        for i in (2, 1):
            up = nn.ConvTranspose2d(width << i, width << (i - 1), 3, stride=2, padding=1, output_padding=1)
            layers += [up, *norm_relu(width << (i - 1))]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: `layers` 4x4 stride-2 convs, one stride-1, then one logit per patch."""

    def __init__(self, channels: int, width: int, layers: int) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = width
        for i in range(1, layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [nn.Conv2d(c, out, 4, stride, 1), nn.InstanceNorm2d(out, affine=True), nn.LeakyReLU(0.2, True)]
            c = out
        self.trunk = nn.Sequential(*mods)
        self.out = nn.Conv2d(c, 1, 4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.trunk(x))


def class_head(channels: int, width: int, classes: int) -> nn.Sequential:
    """A small classifier of whole images (no normalisation: real and translated images are classified alike,
    whatever else is in the batch): three 4x4 stride-2 convs, global average pooling, a linear layer."""
    mods: list[nn.Module] = [nn.Conv2d(channels, width, 3, 1, 1), nn.LeakyReLU(0.2, True)]
    for i in range(3):
        mods += [nn.Conv2d(width << i, width << (i + 1), 4, 2, 1), nn.LeakyReLU(0.2, True)]
    return nn.Sequential(*mods, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width << 3, classes))


class PairGenerator(nn.Module):
    """G(x, target): row i into domain target[i] (0: B->A, 1: A->B)."""

    def __init__(self, to_a: nn.Module, to_b: nn.Module) -> None:
        super().__init__()
        self.nets = nn.ModuleList([to_a, to_b])

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return route(self.nets, x, target)


class PairDiscriminator(nn.Module):
    """D(x, domain): row i judged by the discriminator of domain[i]; with a class head (`classify`), the class
    logits of every row too."""

    def __init__(self, d_a: nn.Module, d_b: nn.Module, classify: nn.Module | None = None) -> None:
        super().__init__()
        self.nets = nn.ModuleList([d_a, d_b])
        self.classify = classify

    def forward(self, x: torch.Tensor, domain: torch.Tensor | None) -> DOutput:
        assert domain is not None
        logits = (route(self.nets, x, domain),)
        return DOutput(logits, self.classify(x)) if self.classify is not None else DOutput(logits)


def init_weights(m: nn.Module) -> None:
    """CycleGAN's init: N(0, 0.02) convs, N(1, 0.02) norm scales, zero biases."""
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.InstanceNorm2d) and m.weight is not None:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


@register(CycleGANConfig)
def build(spec: ModelSpec) -> nn.ModuleDict:
    cfg = spec.config
    assert isinstance(cfg, CycleGANConfig)
    if spec.num_classes != 2:
        raise ValueError(f"cyclegan translates between 2 domains, not {spec.num_classes} (stargan takes any number)")
    if spec.resolution < 16 or math.log2(spec.resolution) % 1:
        raise ValueError("cyclegan needs a power-of-two resolution of at least 16")
    blocks, layers = cfg.n_blocks(spec.resolution), cfg.n_d_layers(spec.resolution)
    G = PairGenerator(*(ResnetGenerator(spec.channels, cfg.g_width, blocks) for _ in range(2)))
    head = class_head(spec.channels, 2 * cfg.d_width, cfg.classes) if cfg.classes else None
    D = PairDiscriminator(*(PatchDiscriminator(spec.channels, cfg.d_width, layers) for _ in range(2)), head)
    nets = nn.ModuleDict({"G": G, "D": D})
    nets.apply(init_weights)
    return nets
