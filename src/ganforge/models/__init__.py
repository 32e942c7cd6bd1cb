"""Generators and discriminators by name.

A model family is one function `build(spec) -> (G, D)` registered with `@register("name", kind)`;
`train.model` in params.yaml picks it, and its kind ("image" or "video") must match the prepared data.
Every generator maps `(z, y)`, z of `spec.latent_dim`, to samples in [-1, 1]: images [N, C, H, W], or for
video families clips [N, C, T, H, W]; y is class indices [N] or, for blends between classes (class morphs),
class weights [N, num_classes]. A discriminator maps `(x, y)` to one logit per pack of `spec.pack` samples,
or to a tuple of such logit tensors, one per head (video families: sampled frames, whole clips); the
losses are summed over heads. A discriminator built with `spec.class_head` also takes `classes=True` and
then returns (its logits as above, the cross-entropy of its class head against y): the AC-GAN auxiliary
loss that `train.class_loss` weighs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from ganforge.errors import GanforgeError


class DOutput(NamedTuple):
    """What every discriminator returns: one logit tensor per head (one head for image families; frames and
    clips for video families), and, for a D with a class head, its class logits and the labels they should
    predict, row for row (AC-GAN; packing and frame sampling decide how y lines up, so D says it)."""

    logits: tuple[torch.Tensor, ...]
    class_logits: torch.Tensor | None = None
    class_target: torch.Tensor | None = None


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network: stored in checkpoints beside the weights."""

    model: str
    resolution: int
    channels: int
    num_classes: int  # 0 = unconditional
    z_dim: int = 64
    g_width: int = 64
    d_width: int = 64
    max_channels: int = 512
    g_upsample: str = "bilinear"
    d_norm: str = "batch"
    pack: int = 1
    class_head: bool = False  # D also classifies what it sees (AC-GAN auxiliary loss, `train.class_loss`)
    frames: int = 0  # video families: frames per clip (T); 0 for image families
    motion_dim: int = 0  # video families: motion noise per frame (the latent holds z_dim + frames * motion_dim)
    image_d_frames: int = 0  # video families: frames per clip shown to the image discriminator
    motion_warp: str = "none"  # video families: none | translate (+ a shift per frame) | rigid (one image, shifted)

    @property
    def latent_dim(self) -> int:
        """Size of the generator's input z: what one seed draws (`ganforge.sampling.latent`)."""
        return self.z_dim + self.frames * self.motion_dim

    @property
    def kind(self) -> str:
        return KINDS.get(self.model, "image")

    def to_dict(self) -> dict:
        return asdict(self)


Builder = Callable[[ModelSpec], tuple[nn.Module, nn.Module]]
MODELS: dict[str, Builder] = {}
KINDS: dict[str, str] = {}  # model name -> "image" | "video": the data it trains on


def register(name: str, kind: str = "image") -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        MODELS[name] = fn
        KINDS[name] = kind
        return fn

    return deco


def build(spec: ModelSpec) -> tuple[nn.Module, nn.Module]:
    try:
        builder = MODELS[spec.model]
    except KeyError:
        raise GanforgeError(f"unknown model {spec.model!r}; known: {sorted(MODELS)}") from None
    return builder(spec)


def build_generator(spec: ModelSpec) -> nn.Module:
    return build(spec)[0]


from ganforge.models import dcgan as _dcgan  # noqa: E402,F401  (registers "dcgan")
from ganforge.models import mocogan as _mocogan  # noqa: E402,F401  (registers "mocogan")
