"""StyleGAN2-lite (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN") in plain PyTorch.

G = mapping + synthesis. The mapping network turns z (normalised to unit second moment; with classes, joined by
a normalised class embedding) into w through `mapping_layers` fully connected layers with a 100x smaller learning
rate; `w_avg`, a buffer, follows the mean w during training, and truncation psi pulls w towards it
(w_avg + psi (w - w_avg)). The synthesis network starts from a learned 4x4 constant; each resolution has two
3x3 *modulated* convolutions (each input channel scaled by a style read from w, then the weights demodulated to
unit output variance), the first after a bilinear x2; per-pixel noise with a learned strength after every conv;
a skip architecture: each resolution adds its own 1x1 toRGB output to the upsampled image so far. During
training, style mixing feeds the layers from a cutoff on with a second latent's w (`style_mixing` of the
batches). Noise is random in training mode and a fixed buffer in eval mode, so a seed's sample is the same
every time.

D: residual (fromRGB at the top, then at each resolution two 3x3 convs and a 2x down, with a 1x1 skip, summed and
scaled by 1/sqrt 2), minibatch standard deviation at 4x4, a conv, a fully connected layer and the logit (class
conditioning by projection onto a mapped class embedding, as StyleGAN2-ADA does). Every layer uses the equalised
learning rate (weights stored at unit variance and scaled by He's constant at run time).

No custom CUDA ops: resampling is bilinear / average pooling, which costs a little of the original's
anti-aliasing. Its recipe: the non-saturating loss, lazy R1 (`train.r1`, interval 16), path-length
regularisation of G (`train.pl`), Adam (0, 0.99), an EMA of G, ADA on small data. From 64 to 512 px (32 works).
"""

from __future__ import annotations

import itertools
import math
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

SQRT2 = math.sqrt(2.0)


class StyleGAN2Config(FamilyConfig):
    """`train.model` of family stylegan2 (images): mapping and synthesis sizes, style mixing, D's width."""

    kind: ClassVar[str] = "image"
    # StyleGAN2-ADA's: non-saturating loss, lazy R1 every 16 steps, path length every 4, lr 0.0025 with
    # Adam (0, 0.99), an EMA of ~10k images at batch 64, ADA
    recipe: ClassVar[dict[str, Any]] = {
        "loss": "nonsat", "r1.weight": 0.05, "r1.interval": 16, "pl.weight": 2.0, "pl.interval": 4,
        "lr_g": 0.0025, "lr_d": 0.0025, "beta1": 0.0, "beta2": 0.99, "ema_decay": 0.995, "augment.kind": "ada",
    }  # fmt: skip
    has_mapping: ClassVar[bool] = True
    family: Literal["stylegan2"] = "stylegan2"
    z_dim: int = Field(128, ge=1, le=4096)  # latent size
    w_dim: int = Field(128, ge=1, le=4096)  # intermediate latent (style) size
    mapping_layers: int = Field(2, ge=1, le=16)  # fully connected layers of the mapping network (StyleGAN2: 8)
    g_width: int = Field(64, ge=4, le=2048)  # synthesis channels at the output resolution (doubling towards 4x4)
    d_width: int = Field(64, ge=4, le=2048)  # discriminator channels at the input resolution (doubling towards 4x4)
    max_channels: int = Field(256, ge=8, le=4096)  # cap on channels per layer (StyleGAN2: 512)
    style_mixing: float = Field(0.9, ge=0.0, le=1.0)  # share of training batches fed two latents' styles
    w_avg_decay: float = Field(0.995, ge=0.0, lt=1.0)  # how slowly w_avg (the truncation centre) follows w
    mbstd_group: int = Field(4, ge=1, le=64)  # minibatch standard deviation: samples per group
    pack: int = Field(1, ge=1, le=8)  # PacGAN: D judges groups of this many same-class images (1 = off)

    def latent_dim(self, frames: int) -> int:
        return self.z_dim


def _widths(resolution: int, width: int, max_channels: int) -> list[int]:
    """Channels at 4x4, 8x8, ..., resolution."""
    return doubling_widths(int(math.log2(resolution)) - 1, width, max_channels)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


class EqualLinear(nn.Module):
    """A fully connected layer with the equalised learning rate (and a learning-rate multiplier)."""

    def __init__(self, c_in: int, c_out: int, *, lr_mul: float = 1.0, bias_init: float = 0.0, act: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((c_out,), float(bias_init)))
        self.w_gain, self.b_gain, self.act = lr_mul / math.sqrt(c_in), lr_mul, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.w_gain, self.bias * self.b_gain)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.act else x


class EqualConv(nn.Module):
    """A conv with the equalised learning rate; `down` averages 2x2 after it; optional bias + leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, k: int, *, bias: bool = True, act: bool = True, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.gain, self.act, self.down = 1 / math.sqrt(c_in * k * k), act, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.gain, padding=self.weight.shape[-1] // 2)
        if self.down:
            x = F.avg_pool2d(x, 2)
        if self.bias is not None:
            x = x + self.bias[:, None, None]
        return F.leaky_relu(x, 0.2) * SQRT2 if self.act else x


class ModulatedConv(nn.Module):
    """A conv whose input channels are scaled per sample by a style from w, then demodulated (optional)."""

    def __init__(self, c_in: int, c_out: int, k: int, w_dim: int, *, demodulate: bool = True) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.gain, self.demodulate = 1 / math.sqrt(c_in * k * k), demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # StyleGAN2's non-fused form: scale the input channels by the styles, run one shared conv, scale the
        # output channels by the demodulation coefficients. The same as modulating and demodulating each sample's
        # weights, without a grouped conv per sample (much faster on CPUs).
        styles = self.affine(w)  # [N, C_in]
        weight = self.weight * self.gain
        y = F.conv2d(x * styles[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=weight.shape[-1] // 2)
        if self.demodulate:  # 1 / |w'| per (sample, output channel), w' = weight * style of each input channel
            dcoefs = (styles.square() @ weight.square().sum(dim=(2, 3)).T + 1e-8).rsqrt()  # [N, C_out]
            y = y * dcoefs[:, :, None, None].to(y.dtype)
        return y


class StyleLayer(nn.Module):
    """Modulated 3x3 conv (after a bilinear x2 when `up`), noise with a learned strength, bias, leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, *, up: bool) -> None:
        super().__init__()
        self.up = up
        self.conv = ModulatedConv(c_in, c_out, 3, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.conv(x, w)
        if self.training:  # random noise while training; the fixed buffer otherwise (a seed gives one sample)
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype)
        x = x + noise * self.noise_strength + self.bias[:, None, None]
        return F.leaky_relu(x, 0.2) * SQRT2


class ToRGB(nn.Module):
    def __init__(self, c_in: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv(c_in, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[:, None, None]


class Mapping(nn.Module):
    def __init__(self, c: StyleGAN2Config, num_classes: int, num_ws: int) -> None:
        super().__init__()
        self.num_ws = num_ws
        self.embed = EqualLinear(num_classes, c.w_dim) if num_classes else None
        dims = [c.z_dim + (c.w_dim if num_classes else 0)] + [c.w_dim] * c.mapping_layers
        self.layers = nn.Sequential(*(EqualLinear(a, b, lr_mul=0.01, act=True) for a, b in itertools.pairwise(dims)))
        self.register_buffer("w_avg", torch.zeros(c.w_dim))
        self.w_avg_decay = c.w_avg_decay

    def forward(self, z: torch.Tensor, y: torch.Tensor | None, psi: float | torch.Tensor = 1.0) -> torch.Tensor:
        """z [N, z_dim] (+ classes) -> ws [N, num_ws, w_dim], truncated towards w_avg by psi."""
        x = _normalize(z)
        if self.embed is not None:  # class indices [N], or class weights [N, num_classes] (class morphs)
            onehot = class_weights(labels(y, "generator"), self.embed.weight.shape[1], z.dtype)
            x = torch.cat([x, _normalize(self.embed(onehot))], dim=1)
        w = self.layers(x)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_decay))
        if isinstance(psi, torch.Tensor):  # one psi per row
            w = self.w_avg.to(w.dtype).lerp(w, psi.to(w.dtype)[:, None])
        elif psi != 1.0:
            w = self.w_avg.to(w.dtype).lerp(w, psi)
        return w[:, None, :].expand(-1, self.num_ws, -1)


class Synthesis(nn.Module):
    def __init__(self, c: StyleGAN2Config, spec: ModelSpec) -> None:
        super().__init__()
        widths = _widths(spec.resolution, c.g_width, c.max_channels)
        self.const = nn.Parameter(torch.randn(widths[0], 4, 4))
        self.convs = nn.ModuleList([StyleLayer(widths[0], widths[0], c.w_dim, 4, up=False)])
        self.torgbs = nn.ModuleList([ToRGB(widths[0], spec.channels, c.w_dim)])
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            res = 8 * 2**i
            self.convs.extend([StyleLayer(a, b, c.w_dim, res, up=True), StyleLayer(b, b, c.w_dim, res, up=False)])
            self.torgbs.append(ToRGB(b, spec.channels, c.w_dim))
        # ws: one per conv, and each toRGB shares the index of the next conv (the last toRGB has its own)
        self.num_ws = len(self.convs) + 1

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        x = self.const[None].expand(len(ws), -1, -1, -1)
        x = self.convs[0](x, ws[:, 0])
        img = self.torgbs[0](x, ws[:, 1])
        for j, torgb in enumerate(self.torgbs[1:]):
            i = 1 + 2 * j  # this resolution's two convs
            x = self.convs[i + 1](self.convs[i](x, ws[:, i]), ws[:, i + 1])
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False) + torgb(x, ws[:, i + 2])
        return img


class Generator(nn.Module):
    """G(z, y, psi) = synthesis(mapping(z, y, psi)); `mapping` and `synthesis` are there for w-space work
    (path-length regularisation, style mixing, truncation, projection)."""

    truncates_in_w = True  # the sampler passes psi here instead of truncating z

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        c = spec.config
        self.synthesis = Synthesis(c, spec)
        self.mapping = Mapping(c, spec.num_classes, self.synthesis.num_ws)
        self.style_mixing = c.style_mixing

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, psi: float | torch.Tensor = 1.0) -> torch.Tensor:
        ws = self.mapping(z, y, psi)
        if self.training and self.style_mixing > 0:
            ws = self.mix(ws, y)
        return self.synthesis(ws)

    def mix(self, ws: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """With probability `style_mixing`, the layers from a random cutoff on take a second latent's w."""
        num_ws = ws.shape[1]
        u = torch.rand((), device=ws.device)
        cutoff = torch.randint(1, num_ws, (), device=ws.device)
        cutoff = torch.where(u < self.style_mixing, cutoff, torch.full_like(cutoff, num_ws))
        other = self.mapping(torch.randn(ws.shape[0], self.spec.config.z_dim, device=ws.device, dtype=ws.dtype), y)
        layer = torch.arange(num_ws, device=ws.device)[None, :, None]
        return torch.where(layer < cutoff, ws, other)


class MinibatchStd(nn.Module):
    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group, n)
        while n % g:
            g -= 1
        y = x.reshape(g, -1, c, h, w).float()
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [N / g]
        y = y.to(x.dtype).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv0 = EqualConv(c_in, c_in, 3)
        self.conv1 = EqualConv(c_in, c_out, 3, down=True)
        self.skip = EqualConv(c_in, c_out, 1, bias=False, act=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) / SQRT2


class Discriminator(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        c = spec.config
        widths = _widths(spec.resolution, c.d_width, c.max_channels)[::-1]  # resolution ... 4x4
        self.from_rgb = EqualConv(spec.channels * spec.pack, widths[0], 1)
        self.blocks = nn.Sequential(*(DBlock(a, b) for a, b in itertools.pairwise(widths)))
        last = widths[-1]
        self.mbstd = MinibatchStd(c.mbstd_group)
        self.conv = EqualConv(last + 1, last, 3)
        self.fc = EqualLinear(last * 16, last, act=True)
        cmap = c.w_dim if spec.num_classes else 0
        self.out = EqualLinear(last, cmap or 1)
        self.embed = EqualLinear(spec.num_classes, cmap) if spec.num_classes else None
        self.classify = nn.Linear(last, spec.num_classes) if spec.class_head and spec.num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        h = self.conv(self.mbstd(self.blocks(self.from_rgb(unpack(x, self.spec.pack)))))
        v = self.fc(h.flatten(1))
        out = self.out(v)
        if self.embed is None:
            return DOutput((out.flatten(),))
        y = labels(y, "discriminator")[:: self.spec.pack]
        cmap = self.embed(class_weights(y, self.spec.num_classes, v.dtype))  # projection onto the mapped class
        return judged((out * cmap).sum(dim=1) / math.sqrt(out.shape[1]), v, y, self.classify)


@register(StyleGAN2Config)
def build(spec: ModelSpec) -> nn.ModuleDict:
    return nn.ModuleDict({"G": Generator(spec), "D": Discriminator(spec)})
