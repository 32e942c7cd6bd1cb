"""Model families: each is one file with its typed config and `build(spec) -> ModuleDict(G=..., D=...)`.

A family file defines a config class (a `FamilyConfig`: `family: Literal["name"]`, its keys with their
recommended defaults, its `kind`: "image" or "video", the data it trains on) and registers its builder with
`@register(TheConfig)`; registering a new family is that file plus one import line at the bottom of this one.
`train.model` in params.yaml is the union of the registered configs, told apart by `family`.

`ModelSpec` is what everything else uses: the family config plus what the data decides (resolution, channels,
classes, frames, whether D has a class head). It is stored in checkpoints and in the registered model
(`to_dict`), and read back from either the current form or the older flat one (`from_dict`).

Every generator maps `(z, y)`, z of `spec.latent_dim`, to samples in [-1, 1]: images [N, C, H, W], or for
video families clips [N, C, T, H, W]; y is class indices [N] or, for blends between classes (class morphs),
class weights [N, num_classes]. Every discriminator maps `(x, y)` to a `DOutput`: a tuple of logit tensors, one
per head (video families: sampled frames, whole clips), each one logit per pack of `spec.pack` samples (the
losses are summed over heads); a D built with `spec.class_head` also fills `class_logits` and `class_target`
(the labels row for row: the AC-GAN auxiliary loss that `train.class_loss` weighs).
"""

from ganforge.models import (  # each registers its family (a new family: one more name here)
    cyclegan,
    dcgan,
    mocogan,
    r3gan,
    resnet,
    stargan,
    stylegan2,
)
from ganforge.models.base import (
    DATA_KEYS,
    DEFAULT_FAMILY,
    FAMILIES,
    KINDS,
    DOutput,
    Family,
    FamilyConfig,
    ModelSpec,
    build,
    build_generator,
    model_config_adapter,
    model_config_type,
    parse_model,
    register,
)

__all__ = [
    "DATA_KEYS",
    "DEFAULT_FAMILY",
    "FAMILIES",
    "KINDS",
    "DOutput",
    "Family",
    "FamilyConfig",
    "ModelSpec",
    "build",
    "build_generator",
    "cyclegan",
    "dcgan",
    "mocogan",
    "model_config_adapter",
    "model_config_type",
    "parse_model",
    "r3gan",
    "register",
    "resnet",
    "stargan",
    "stylegan2",
]
