"""StarGAN (Choi et al. 2018): one generator translating between any number of domains.

G is CycleGAN's ResNet generator with the target domain as extra input channels (one-hot, broadcast over the
image); D is a PatchGAN without normalisation (LeakyReLU 0.01) with two heads: one realness logit per patch,
and the domain of the whole image (the class head, `DOutput.class_logits`, whose target is the domain D is
told the image belongs to). `G(x, target)` translates row i into domain `target[i]`; `D(x, domain)` judges
realness and classifies the domain. The recipe is StarGAN's: WGAN-GP (lambda 10) with 5 D steps per G step,
domain classification weight 1 (`train.class_loss`) and reconstruction weight 10 (`cycle`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganforge.models.base import DOutput, ModelSpec, register
from ganforge.models.cyclegan import ResnetGenerator, TranslatorConfig, init_weights


class StarGANConfig(TranslatorConfig):
    """`train.model` of family stargan (two or more image domains): the networks' sizes and the terms' weights."""

    kind: ClassVar[str] = "image"
    recipe: ClassVar[dict[str, Any]] = {
        "loss": "wgan", "gp.weight": 10.0, "n_critic": 5, "class_loss": 1.0, "lr_g": 1e-4, "lr_d": 1e-4,
        "beta1": 0.5, "beta2": 0.999, "lr_decay_start": 0.5,
    }  # fmt: skip
    family: Literal["stargan"] = "stargan"
    g_width: int = Field(64, ge=4, le=1024)  # channels after G's first conv (x4 in the residual blocks)
    blocks: int = Field(6, ge=1, le=32)  # residual blocks
    d_width: int = Field(64, ge=4, le=1024)  # channels of D's first conv (doubling per stride-2 conv)
    d_layers: Annotated[int, Field(ge=1, le=8)] | Literal["auto"] = "auto"  # stride-2 convs in D; auto: to 2x2
    identity: float = Field(0.0, ge=0.0, le=100.0)  # StarGAN has none (x cycle: L1 of x against G(x, its domain))
    pool_size: int = Field(0, ge=0, le=10_000)  # StarGAN has none
    # cycle (the reconstruction term), cycle_noise, classes (D's class head; with none: the domains): TranslatorConfig

    def n_d_layers(self, resolution: int) -> int:
        return self.d_layers if self.d_layers != "auto" else int(math.log2(resolution)) - 1


class DomainGenerator(nn.Module):
    def __init__(self, channels: int, width: int, blocks: int, domains: int) -> None:
        super().__init__()
        self.domains = domains
        self.net = ResnetGenerator(channels, width, blocks, extra=domains)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = F.one_hot(target, self.domains).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])
        return self.net(torch.cat([x, c], 1))


class DomainDiscriminator(nn.Module):
    def __init__(self, channels: int, width: int, layers: int, resolution: int, domains: int) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        c = channels
        for i in range(layers):
            out = min(width << i, 2048)
            mods += [nn.Conv2d(c, out, 4, 2, 1), nn.LeakyReLU(0.01, True)]
            c = out
        self.body = nn.Sequential(*mods)
        side = resolution >> layers
        self.src = nn.Conv2d(c, 1, 3, 1, 1, bias=False)
        self.cls = nn.Conv2d(c, domains, side, bias=False)

    def forward(self, x: torch.Tensor, domain: torch.Tensor | None) -> DOutput:
        h = self.body(x)
        return DOutput((self.src(h),), self.cls(h).flatten(1))


@register(StarGANConfig)
def build(spec: ModelSpec) -> nn.ModuleDict:
    cfg = spec.config
    assert isinstance(cfg, StarGANConfig)
    if spec.num_classes < 2:
        raise ValueError(f"stargan translates between 2 or more domains, not {spec.num_classes}")
    layers = cfg.n_d_layers(spec.resolution)
    if not 1 <= layers < math.log2(spec.resolution):
        raise ValueError(f"stargan: d_layers {layers} must be 1..{int(math.log2(spec.resolution)) - 1}")
    G = DomainGenerator(spec.channels, cfg.g_width, cfg.blocks, spec.num_classes)
    D = DomainDiscriminator(spec.channels, cfg.d_width, layers, spec.resolution, cfg.classes or spec.num_classes)
    nets = nn.ModuleDict({"G": G, "D": D})
    nets.G.apply(init_weights)
    return nets
