"""The family interface: DOutput, FamilyConfig, the registry, ModelSpec and build (see `ganforge.models`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, NamedTuple, Union

import torch
from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError, field_validator
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.section import Section


class DOutput(NamedTuple):
    """What every discriminator returns: one logit tensor per head (one head for image families; frames and
    clips for video families), and, for a D with a class head, its class logits and the labels they should
    predict, row for row (AC-GAN; packing and frame sampling decide how y lines up, so D says it)."""

    logits: tuple[torch.Tensor, ...]
    class_logits: torch.Tensor | None = None
    class_target: torch.Tensor | None = None


class FamilyConfig(Section):
    """Base of a family's config (`train.model`). Subclasses set `family: Literal["name"] = "name"` and `kind`."""

    kind: ClassVar[str] = "image"  # the data it trains on: "image" or "video"
    # what G does: "generate" (G(z, y): samples from noise) or "translate" (G(x, target): images into a domain)
    task: ClassVar[str] = "generate"
    # the family's recommended training recipe: train keys (dotted: "r1.weight") -> value, taken where params
    # leave them `auto` or out; a key it does not name takes train's default (which is dcgan's recipe)
    recipe: ClassVar[dict[str, Any]] = {}
    has_mapping: ClassVar[bool] = False  # G has mapping/synthesis networks (w space: path length, style mixing)
    family: str
    pack: int = Field(1, ge=1, le=8)  # PacGAN: D judges groups of this many same-class samples (1 = off)

    @field_validator("family", mode="before")
    @classmethod
    def _known(cls, value: Any) -> Any:
        if not isinstance(value, str) or value not in FAMILIES:
            raise ValueError(f"unknown family: expected one of {', '.join(FAMILIES)}")
        return value

    def latent_dim(self, frames: int) -> int:
        """Size of the generator's input z for clips of `frames` frames (0 for images)."""
        raise NotImplementedError


Builder = Callable[["ModelSpec"], nn.ModuleDict]


class Family(NamedTuple):
    config: type[FamilyConfig]
    build: Builder


DEFAULT_FAMILY = "dcgan"  # train.model's family when params.yaml names none
FAMILIES: dict[str, Family] = {}  # family name -> its config class and builder, in registration order
KINDS: dict[str, str] = {}  # family name -> "image" | "video": the data it trains on


def register(config: type[FamilyConfig]) -> Callable[[Builder], Builder]:
    """`@register(DCGANConfig)` on a family's `build(spec)`: the family is then a choice of `train.model`."""
    name = config.model_fields["family"].default

    def deco(fn: Builder) -> Builder:
        FAMILIES[name] = Family(config, fn)
        KINDS[name] = config.kind
        return fn

    return deco


DATA_KEYS = ("resolution", "channels", "num_classes", "frames", "class_head")  # what the data decides
# The flat spec of checkpoints and registered versions written before families owned their config, with the
# defaults its dataclass had (a key missing from such a dict meant this).
_FLAT_DEFAULTS: dict[str, Any] = {
    "z_dim": 64, "g_width": 64, "d_width": 64, "max_channels": 512, "g_upsample": "bilinear", "d_norm": "batch",
    "pack": 1, "class_head": False, "frames": 0, "motion_dim": 0, "image_d_frames": 0, "motion_warp": "none",
}  # fmt: skip
_FORMS = (
    "expected {'model': {'family': ..., ...}, 'resolution': ..., 'channels': ..., 'num_classes': ..., "
    "'frames': ..., 'class_head': ...} or the older flat form {'model': 'dcgan', 'resolution': ..., 'z_dim': ...}; "
    "retrain it, or load it with the ganforge version that wrote it"
)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network: the family's config and what the data decides."""

    config: FamilyConfig
    resolution: int
    channels: int
    num_classes: int  # 0 = unconditional
    frames: int = 0  # video families: frames per clip (T); 0 for image families
    class_head: bool = False  # D also classifies what it sees (AC-GAN auxiliary loss, `train.class_loss`)

    @classmethod
    def for_data(
        cls,
        config: FamilyConfig,
        *,
        resolution: int,
        channels: int,
        num_classes: int,
        frames: int = 0,
        class_head: bool = False,
    ) -> ModelSpec:
        """The spec of `config` (`train.model`) trained on data of this shape."""
        return cls(config, resolution, channels, num_classes, frames, class_head)

    @property
    def model(self) -> str:
        """The family's name ("dcgan", "mocogan")."""
        return self.config.family

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def task(self) -> str:
        """The family's task: "generate", or "translate" (then `num_classes` counts the domains)."""
        return self.config.task

    @property
    def pack(self) -> int:
        return self.config.pack

    @property
    def latent_dim(self) -> int:
        """Size of the generator's input z: what one seed draws (`ganforge.sampling.latent`)."""
        return self.config.latent_dim(self.frames)

    def to_dict(self) -> dict[str, Any]:
        """`{"model": {"family": ..., <its keys>}, "resolution": ..., ...}`: plain data, for checkpoints and JSON."""
        return {"model": self.config.model_dump(mode="json"), **{k: getattr(self, k) for k in DATA_KEYS}}

    @classmethod
    def from_dict(cls, d: Any) -> ModelSpec:
        """What `to_dict` wrote, or the flat form of older checkpoints and registered versions
        (`{"model": "dcgan", "resolution": 32, ..., "z_dim": 64, ...}`). GanforgeError of one line otherwise."""
        if not isinstance(d, dict) or not isinstance(d.get("model"), dict | str):
            raise GanforgeError(f"not a ganforge model spec ({_FORMS})")
        if isinstance(d["model"], dict):
            model, data = d["model"], {k: v for k, v in d.items() if k != "model"}
        else:  # the flat form: every key at the top, the family's own beside the data's
            flat = {**_FLAT_DEFAULTS, **d}
            data = {k: flat.pop(k) for k in DATA_KEYS if k in flat}
            family = FAMILIES.get(flat["model"])
            if family is None:
                raise GanforgeError(f"not a ganforge model spec: unknown family {flat['model']!r} ({_FORMS})")
            keys = family.config.model_fields
            # the flat dataclass held every family's keys: those this family lacks must be at their default
            unused = {k: v for k, v in flat.items() if k not in (*keys, "model")}
            dropped = [k for k, v in unused.items() if k not in _FLAT_DEFAULTS or v != _FLAT_DEFAULTS[k]]
            if dropped:
                raise GanforgeError(f"not a ganforge model spec: unexpected keys {sorted(dropped)} ({_FORMS})")
            model = {"family": flat.pop("model"), **{k: v for k, v in flat.items() if k in keys}}
        if set(data) != set(DATA_KEYS):
            raise GanforgeError(f"not a ganforge model spec: it has {sorted(data)} beside 'model' ({_FORMS})")
        try:
            config = model_config_adapter().validate_python(model)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in ("model", *err["loc"][1:]))  # loc[0]: the family's tag
            msg = err["msg"].removeprefix("Value error, ")
            raise GanforgeError(f"not a usable ganforge model spec: {where}: {msg}") from None
        return cls(config, **data)


def _family_of(value: Any) -> str:
    """The tag of a `train.model` value: its family; an unknown one goes to the default family, whose `family`
    field then names it (`train.model.family: unknown family ...`)."""
    family = value.get("family") if isinstance(value, dict) else getattr(value, "family", None)
    return family if isinstance(family, str) and family in FAMILIES else DEFAULT_FAMILY


def model_config_type() -> Any:
    """The type of `train.model`: the registered family configs, told apart by `family` (a callable discriminator:
    pydantic refuses a field one on a field that has a before-validator, as every Section's field has)."""
    tagged = tuple(Annotated[f.config, Tag(name)] for name, f in FAMILIES.items())
    return Annotated[Union[tagged], Discriminator(_family_of)]  # noqa: UP007


@functools.cache
def model_config_adapter() -> TypeAdapter:
    """Validates a `train.model` mapping (with its `family`) into that family's config."""
    return TypeAdapter(model_config_type())


def parse_model(value: Any) -> Any:
    """`train.model` as written: a family name alone (`dcgan`: its defaults), or a section of its keys with its
    `family` (the default family, dcgan, when left out). Raises ValueError with one line for anything else."""
    known = ", ".join(FAMILIES)
    if isinstance(value, str):
        if value not in FAMILIES:
            raise ValueError(f"expected a model family: one of {known}")
        return {"family": value}
    if isinstance(value, dict):
        return {"family": DEFAULT_FAMILY, **value}
    if not isinstance(value, FamilyConfig):
        raise ValueError(f"expected a model family ({known}) or a section of its keys with its family")
    return value


# --- pieces the families share -------------------------------------------------------------------------------
def doubling_widths(stages: int, width: int, max_channels: int) -> list[int]:
    """Channels of `stages` stages from 4x4 upwards: `width` at the last, doubling towards 4x4, capped."""
    return [min(width * 2 ** (stages - 1 - i), max_channels) for i in range(stages)]


def labels(y: torch.Tensor | None, who: str) -> torch.Tensor:
    if y is None:
        raise ValueError(f"this {who} is class-conditional: pass labels y")
    return y


def class_weights(y: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Class indices [N] -> one-hot [N, K]; class weights [N, K] (blends, for class morphs) as they are."""
    return (y if y.is_floating_point() else nn.functional.one_hot(y, num_classes)).to(dtype)


def embed_classes(embed: nn.Embedding, y: torch.Tensor) -> torch.Tensor:
    """An embedding of class indices [N], or the weighted sum of embeddings for class weights [N, K]."""
    return y.to(embed.weight.dtype) @ embed.weight if y.is_floating_point() else embed(y)


def unpack(x: torch.Tensor, pack: int) -> torch.Tensor:
    """PacGAN: consecutive groups of `pack` images [B, C, H, W] become samples [B / pack, pack * C, H, W]."""
    if pack == 1:
        return x
    b, c, h, w = x.shape
    return x.reshape(b // pack, pack * c, h, w)


def judged(logit: torch.Tensor, features: torch.Tensor, y: torch.Tensor | None, classify: nn.Module | None) -> DOutput:
    """A one-head DOutput; with a class head (AC-GAN) also its logits on `features` and the labels `y` (per pack)."""
    if classify is None or y is None:
        return DOutput((logit,))
    return DOutput((logit,), classify(features), y)


def build(spec: ModelSpec) -> nn.ModuleDict:
    """The networks of `spec`: `ModuleDict({"G": generator, "D": discriminator})`."""
    try:
        family = FAMILIES[spec.model]
    except KeyError:
        raise GanforgeError(f"unknown model family {spec.model!r}; known: {', '.join(FAMILIES)}") from None
    return family.build(spec)


def build_generator(spec: ModelSpec) -> nn.Module:
    return build(spec)["G"]
