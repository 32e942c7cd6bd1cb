"""Generators and discriminators by name.

A model family is one function `build(spec) -> (G, D)` registered with `@register("name")`;
`train.model` in params.yaml picks it. Every generator maps `(z, y)` to images in [-1, 1], where y is class
indices [N] or, for blends between classes (class morphs), class weights [N, num_classes];
every discriminator maps `(x, y)` to one logit per pack of `spec.pack` images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from torch import nn

from ganforge.errors import GanforgeError


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

    def to_dict(self) -> dict:
        return asdict(self)


Builder = Callable[[ModelSpec], tuple[nn.Module, nn.Module]]
MODELS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        MODELS[name] = fn
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
