"""Typed configuration for params.yaml: one section per stage.

Code reads params only through `load_config`. A bad value fails here, before any work starts,
with one line naming the key path and what was expected (`ConfigError`, exit code 2).
"""

from __future__ import annotations

import copy
import difflib
import math
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ganforge.errors import ConfigError
from ganforge.models import DEFAULT_FAMILY, FAMILIES, FamilyConfig, model_config_type, parse_model
from ganforge.section import INT64, Section

__all__ = ["INT64", "Section"]  # re-exported: every section's base lives in ganforge.section

DEFAULT_PARAMS = Path("params.yaml")

ResizeFilter = Literal["nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


Number = Annotated[float, BeforeValidator(_not_bool)]  # a float that true/false is not (pydantic's lax mode takes it)


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit alone takes "²" and "٣"


def _power_of_two(value: int, low: int, high: int) -> int:
    if not (low <= value <= high) or value & (value - 1):
        raise ValueError(f"expected a power of two from {low} to {high}")
    return value


VIDEO_SOURCES = ("moving_digits", "video_folder")


class DataConfig(Section):
    """`prepare` stage: where images (or clips) come from and how they are normalised."""

    kind: Literal["image", "video"] = "image"
    source: Literal[
        "digits", "stacked_digits", "digit_styles", "folder", "torchvision", "moving_digits", "video_folder"
    ] = "digits"
    path: str | None = None
    dataset: Literal["MNIST", "FashionMNIST", "CIFAR10"] | None = None
    download: bool = False
    resolution: int = 32
    channels: Literal[1, 3] = 1
    resize_filter: ResizeFilter = "bilinear"
    fit: Literal["crop", "pad"] = "crop"
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    shard_size: int = Field(8192, ge=1)
    frames: int = Field(16, ge=2, le=256)  # video: clip length T
    clip_stride: int = Field(1, ge=1, le=1000)  # video_folder: every n-th frame (after clip_fps)
    clip_fps: float | None = Field(None, gt=0.0, le=1000.0)  # video_folder: resample to this rate; None: native
    clips_per_video: int = Field(4, ge=1, le=10_000)  # video_folder: at most this many clips per file
    num_clips: int = Field(2000, ge=1, le=10_000_000)  # moving_digits: clips generated
    max_digits: int = Field(2, ge=1, le=2)  # moving_digits: 1..max_digits digits per clip
    num_images: int = Field(30_000, ge=1, le=10_000_000)  # stacked_digits: images; digit_styles: per font style
    # digit_styles: the styles, each one domain of ten classes <style>_<digit>; handwritten is the built-in digits
    styles: list[Literal["handwritten", "typeset", "sans", "serif", "mono"]] = Field(
        default_factory=lambda: ["handwritten", "typeset"], min_length=1
    )
    seed: int = Field(0, ge=0, lt=2**63)  # moving_digits, stacked_digits
    file_timeout_s: float = Field(30.0, gt=0.0, le=86400.0)  # folder sources: a file taking longer is skipped
    workers: int = Field(0, ge=0, le=256)  # folder sources: decoding processes; 0: one per core

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, v: int) -> int:
        return _power_of_two(v, 16, 512)

    @model_validator(mode="after")
    def _source_needs(self) -> DataConfig:
        if self.source == "folder" and not self.path:
            raise ValueError("data.source 'folder' needs data.path: the image directory")
        if self.source == "video_folder" and not self.path:
            raise ValueError("data.source 'video_folder' needs data.path: the video directory")
        if self.source == "torchvision" and self.dataset is None:
            raise ValueError("data.source 'torchvision' needs data.dataset: MNIST, FashionMNIST or CIFAR10")
        if self.kind == "video" and self.source not in VIDEO_SOURCES:
            raise ValueError(
                f"data.kind 'video' needs a video data.source: moving_digits or video_folder (got {self.source!r})"
            )
        if len(set(self.styles)) < len(self.styles):
            raise ValueError("data.styles: each style once")
        if self.source == "stacked_digits" and self.channels != 3:
            raise ValueError("data.source 'stacked_digits' puts one digit in each RGB channel: set data.channels=3")
        if self.kind == "image" and self.source in VIDEO_SOURCES:
            raise ValueError(f"data.source {self.source!r} makes clips: set data.kind=video")
        return self


class PenaltyConfig(Section):
    """A gradient penalty of D (r1, r2, gp): its weight (0 = off) and how often it runs (lazy regularisation:
    every `interval` steps, weighted `interval` times)."""

    weight: float = Field(0.0, ge=0.0, le=1e6)
    interval: int = Field(1, ge=1, le=10_000)


class LeCamConfig(Section):
    """LeCam regularisation of D (Tseng et al. 2021): weight (0 = off) and the decay of its logit averages."""

    weight: float = Field(0.0, ge=0.0, le=1e6)
    decay: float = Field(0.99, ge=0.0, lt=1.0)


AugmentPolicy = Literal["color", "translation", "cutout"]


class AugmentConfig(Section):
    """Augmentation of what D sees (never of samples users get): none | diffaugment | ada."""

    kind: Literal["none", "diffaugment", "ada"] = "none"
    policy: tuple[AugmentPolicy, ...] = Field(("color", "translation", "cutout"), min_length=1)  # diffaugment
    target: float = Field(0.6, gt=0.0, lt=1.0)  # ada: the r_t = E[sign D(real)] it steers p towards
    interval: int = Field(4, ge=1, le=10_000)  # ada: D steps between two adjustments of p
    speed_kimg: float = Field(100.0, gt=0.0, le=1e6)  # ada: thousands of real images for p to cross 0..1
    p: float = Field(0.0, ge=0.0, le=1.0)  # ada: initial p
    adaptive: bool = True  # ada: false keeps p fixed at `p`

    @field_validator("policy", mode="before")
    @classmethod
    def _policy(cls, v: Any) -> Any:
        if isinstance(v, str):  # --set train.augment.policy=color,translation
            v = [p.strip() for p in v.split(",") if p.strip()]
        if isinstance(v, list | tuple) and len(set(v)) != len(v):
            raise ValueError("a policy may be listed once")
        return v


class PathLengthConfig(Section):
    """Path-length regularisation of G (StyleGAN2; families with a mapping network): weight (0 = off), interval
    (lazy, weighted by it), decay of the running mean length."""

    weight: float = Field(0.0, ge=0.0, le=1e6)
    interval: int = Field(4, ge=1, le=10_000)
    decay: float = Field(0.01, gt=0.0, le=1.0)


LOSS_NAMES = ("nonsat", "hinge", "wgan", "rpgan", "lsgan")
AUTO = "auto"  # a recipe key's value that means: the model family's (its config's `recipe`, else the default)
# train keys a family's recipe decides where params say `auto` (or leave them out)
RECIPE_KEYS = (
    "loss", "n_critic", "r1.weight", "r1.interval", "r2.weight", "r2.interval", "gp.weight", "gp.interval",
    "lecam.weight", "pl.weight", "pl.interval", "augment.kind", "lr_g", "lr_d", "beta1", "beta2", "ema_decay",
    "class_loss", "lr_decay_start",
)  # fmt: skip


def _family_name(model: Any) -> Any:
    """The family a raw `train.model` names (anything: validation decides whether it is one)."""
    if isinstance(model, dict):
        return model.get("family", DEFAULT_FAMILY)
    return model if isinstance(model, str) else getattr(model, "family", DEFAULT_FAMILY)


RECIPE_KEYS_PATHS = frozenset(f"train.{k}" for k in RECIPE_KEYS)


def resolve_recipe(train: dict[str, Any]) -> dict[str, Any]:
    """A copy of the raw `train` mapping in which every recipe key that is `auto` or absent holds the value of
    the model family's recipe (`FamilyConfig.recipe`), or is left out (its default) where the recipe is silent."""
    name = _family_name(train.get("model"))
    family = FAMILIES.get(name) if isinstance(name, str) else None
    # not a known family: train.model's own validation says so, and `auto` keys take their defaults so that the
    # family's is the one error (not one more per recipe key that had no recipe to take)
    recipe = family.config.recipe if family is not None else {}
    out = copy.deepcopy(train)
    for key in RECIPE_KEYS:
        *sections, leaf = key.split(".")
        node = out
        for section in sections:
            child = node.get(section, {}) if isinstance(node, dict) else None
            if not isinstance(child, dict):  # not a mapping (a section object, or a wrong value: validation says)
                node = None
                break
            node = node.setdefault(section, child)
        if not isinstance(node, dict) or node.get(leaf, AUTO) != AUTO:
            continue
        if key in recipe:
            node[leaf] = recipe[key]
        else:
            node.pop(leaf, None)
    return out


class TrainConfig(Section):
    """`train` stage: model, loss, optimiser and loop settings."""

    # the model family and its own keys (ganforge.models: one config class per family), e.g. {family: dcgan,
    # z_dim: 64, ...}; a family's name alone (`model: mocogan`) is that family with its defaults
    model: Annotated[model_config_type(), BeforeValidator(parse_model)] = Field(
        default_factory=lambda: FAMILIES[DEFAULT_FAMILY].config()
    )
    conditional: bool = True
    loss: Literal[LOSS_NAMES] = "hinge"  # adversarial loss (training/objective/losses.py)
    n_critic: int = Field(1, ge=1, le=100)  # D steps per G step (5 for WGAN-GP)
    r1: PenaltyConfig = PenaltyConfig()  # zero-centred gradient penalty on real samples, gamma/2 E|grad D(x)|^2
    r2: PenaltyConfig = PenaltyConfig()  # the same on generated samples (R3GAN: r1 + r2)
    gp: PenaltyConfig = PenaltyConfig()  # WGAN-GP, lambda E(|grad D(x_hat)| - 1)^2 (lambda 10 with loss wgan)
    lecam: LeCamConfig = LeCamConfig()
    pl: PathLengthConfig = PathLengthConfig()  # path-length regularisation of G (stylegan2)
    augment: AugmentConfig = AugmentConfig()
    class_loss: float = Field(0.0, ge=0.0, le=100.0)  # AC-GAN auxiliary class loss weight (needs conditional); 0 = off
    steps: int = Field(1500, ge=1)
    # a wall-clock budget: training ends at the first log point after this many minutes (or at train.steps,
    # whichever comes first), as a finished run; the step it reaches depends on the machine. None: no budget
    max_minutes: float | None = Field(None, gt=0.0, le=1e6)
    # the learning rates stay constant up to this fraction of train.steps, then fall linearly to 0 (1: constant)
    lr_decay_start: float = Field(1.0, ge=0.0, le=1.0)
    batch_size: int = Field(64, ge=1, le=65536)
    lr_g: float = Field(2e-4, gt=0.0, le=1.0)
    lr_d: float = Field(2e-4, gt=0.0, le=1.0)
    beta1: float = Field(0.5, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    sample_every: int = Field(250, ge=1)
    checkpoint_every: int = Field(250, ge=1)
    log_every: int = Field(25, ge=1)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool = True
    # divergence (NaN/Inf losses or weights, a gradient norm over the limit), checked at every log point
    on_divergence: Literal["stop", "rollback"] = "stop"  # rollback: back to the last checkpoint, lower lr, go on
    max_rollbacks: int = Field(3, ge=0, le=1000)  # then stop
    rollback_lr_factor: float = Field(0.5, gt=0.0, le=1.0)  # both learning rates are multiplied by this
    grad_norm_limit: float = Field(1e4, ge=0.0)  # largest D or G gradient norm of a step; 0 = not checked
    # scale out: processes (one per GPU) this host runs the training in, through torch's elastic launcher (as
    # torchrun does); train.batch_size is the global batch, split over them. Under torchrun itself leave it at 1.
    nproc: int = Field(1, ge=1, le=1024)
    # a train split larger than this (GiB, uint8) is read from its shards batch by batch instead of loaded whole
    # (the same batches either way); 0 = always read from the shards
    load_limit_gb: float = Field(4.0, ge=0.0)
    # batches read ahead from the shards (or from host memory for a GPU) in a background thread; 0: in the step
    prefetch: int = Field(2, ge=0, le=64)
    dist_timeout_s: int = Field(600, ge=10, le=86400)  # a rank silent this long fails the job (no hang)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        head, sep, index = v.partition(":")
        if head not in ("auto", "cpu", "cuda", "mps") or (sep and (head != "cuda" or not _ascii_digits(index))):
            raise ValueError("expected auto, cpu, cuda, cuda:N or mps")
        return v

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data: Any) -> Any:
        """Recipe keys left `auto` (or out) take the model family's recipe: `train.model.family=r3gan` alone is
        R3GAN's recipe, not DCGAN's loss with R3GAN's networks."""
        return resolve_recipe(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _pack_divides_batch(self) -> TrainConfig:
        if self.batch_size % self.model.pack:
            raise ValueError(
                f"train.batch_size ({self.batch_size}) must be a multiple of train.model.pack ({self.model.pack})"
            )
        if self.class_loss and not self.conditional:
            raise ValueError("train.class_loss needs class labels: set train.conditional=true (or class_loss=0)")
        if self.pl.weight and not self.model.has_mapping:
            raise ValueError(
                f"train.pl (path-length regularisation) needs a family with a mapping network (stylegan2), "
                f"not {self.model.family}: set train.pl.weight=0"
            )
        return self


class FeaturesConfig(Section):
    """`features` stage: the in-domain classifier whose penultimate layer is a feature space for metrics."""

    # auto: sized by the data (metrics/classifier.py `plan`: ~200 optimiser steps for grayscale, ~1,300 for RGB,
    # within 15..200 epochs)
    epochs: Annotated[int, Field(ge=1, le=10000)] | Literal["auto"] = "auto"
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    width: int = Field(32, ge=4, le=512)
    feature_dim: int = Field(128, ge=8, le=4096)
    # auto: strong for RGB (shifts, flips, colour jitter, cutout), shift for grayscale (a flip changes a digit)
    augment: Literal["auto", "strong", "shift", "none"] = "auto"
    seed: int = Field(0, ge=0)
    # video data: the frame classifier above sees this many random frames of each train clip per epoch,
    # and a 3D-conv clip classifier (metrics/clips.py -> models/clip_classifier.pt) is trained on whole clips
    frames_per_clip: int = Field(1, ge=1, le=256)
    clip_epochs: int = Field(6, ge=1, le=10000)
    clip_width: int = Field(16, ge=4, le=256)
    clip_batch_size: int = Field(32, ge=1)

    @field_validator("epochs", mode="before")
    @classmethod
    def _epochs(cls, v: Any) -> Any:
        """One error for a wrong value, not one per arm of `int | "auto"`."""
        if v == "auto" or isinstance(v, bool) or (isinstance(v, int) and 1 <= v <= 10000):
            return v  # true/false: the base Section's check says "expected a number"
        raise ValueError("expected a whole number of epochs from 1 to 10000, or auto")


class EvaluateConfig(Section):
    """`evaluate` stage: scores of the generator against a real split, with the protocol recorded."""

    extractor: Literal["classifier", "inception", "dinov2"] = "classifier"
    inception_weights: str | None = None  # a local pt_inception-2015-12-05 file; else the torch hub cache
    dinov2_weights: str | None = None  # a local dinov2_vit*14_pretrain.pth (or its folder); else the torch hub cache
    dinov2_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")  # required with extractor dinov2: checked
    download: bool = False
    resize_filter: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    n_fake: int = Field(2000, ge=10)
    split: Literal["test", "train"] = "test"
    truncation: float = Field(1.0, gt=0.0, le=1.0)  # psi, as library.truncation; 1.0 = plain normal
    k: int = Field(3, ge=1, le=100)
    kid_subsets: int = Field(100, ge=1)
    kid_subset_size: int = Field(100, ge=2)
    batch_size: int = Field(250, ge=1)
    raw_generator: bool = False
    seed: int = Field(0, ge=0)
    # Classification Accuracy Score (conditional image generators, labelled data): a classifier trained on generated
    # samples only (the features stage's recipe), tested on the real test split; cas, cas_real, cas_ratio
    cas: bool = True
    n_fake_clips: int = Field(500, ge=10)  # video models: generated clips scored (n_fake is for images)
    fvd_weights: str | None = None  # video: a local i3d_torchscript.pt; null: FVD is not computed
    fvd_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")  # required with fvd_weights: checked


class LibraryConfig(Section):
    """`library` stage: which generator to draw from, how candidates are scored, filtered and written."""

    dir: str = Field("library", min_length=1)  # the library's folder (a video pipeline in video/ uses ../library)
    # an alias of registry.model_name (champion, candidate, ...), a version number, or "checkpoint"
    model: str = Field("champion", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    checkpoint: str = "models/checkpoint.pt"  # used when model is "checkpoint"
    images: int = Field(20, ge=0, le=1_000_000)  # per class (conditional generators) or in total; image models only
    clips: int = Field(4, ge=0, le=1_000_000)  # video models: clips per class (or in total); image models ignore it
    truncation: float = Field(0.8, gt=0.0, le=1.0)  # psi: z = psi * truncated normal (|z| <= 2); 1.0 = plain normal
    selection: Literal["top", "drs"] = "top"
    keep_fraction: float = Field(0.5, gt=0.0, le=1.0)  # candidates = images / keep_fraction
    rank_by: Literal["realism", "discriminator"] = "realism"
    drs_percentile: float = Field(80.0, ge=0.0, le=100.0)  # DRS: the F-percentile accepted with p = 1/2
    k: int = Field(3, ge=1, le=100)  # neighbours of the realism score's real manifold
    dedupe_hamming: int = Field(4, ge=-1, le=64)  # pHash distance <= this: near-duplicate (-1: off)
    memorised_feature: float = Field(0.25, ge=0.0)  # reject when nearer a training image than this share of the
    memorised_pixel: float = Field(0.02, ge=0.0)  # median train-to-train distance (features) / this RMSE (pixels)
    videos: int = Field(2, ge=0, le=10_000)  # latent walks (image models only)
    morphs: int = Field(1, ge=0, le=10_000)  # class morphs (conditional image models only)
    keyframes: int = Field(4, ge=2, le=1000)
    frames_per_key: int = Field(12, ge=1, le=1000)
    fps: float = Field(24.0, gt=0.0, le=120.0)
    video_size: int = Field(128, ge=16, le=2048)
    batch_size: int = Field(32, ge=1)
    seed: int = Field(0, ge=0, lt=2**62)

    @field_validator("model", mode="before")
    @classmethod
    def _version_number(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v  # `model: 3` is version 3

    @field_validator("video_size")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("expected an even number of pixels (H.264 needs even sizes)")
        return v


class GateConfig(Section):
    """Promotion to `champion`: FID must beat the champion's by `fid_margin`; every bound must hold."""

    fid_margin: float = Field(0.0, ge=0.0)
    min: dict[str, Number] = Field(default_factory=lambda: {"class_accuracy": 0.9, "precision": 0.6, "recall": 0.4})
    max: dict[str, Number] = Field(default_factory=dict)


class RegistryConfig(Section):
    model_name: str = Field("ganforge-digits", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    promote: bool = True  # false: register and judge, but leave champion where it is (sweeps promote the best later)
    gate: GateConfig = GateConfig()


class TrackingConfig(Section):
    """MLflow. The store comes from MLFLOW_TRACKING_URI, else sqlite:///<repo root>/mlflow.db."""

    enabled: bool = True
    experiment: str = Field("ganforge", min_length=1)


class TranslateConfig(Section):
    """`translate`: the domains a translation family (train.model cyclegan or stargan) learns, and what
    `ganforge translate` restyles with it."""

    # one entry per domain: a class name of the prepared data or a shell pattern of them ("typeset_*"); a class
    # in none is not trained on. Empty: each class is one domain (cyclegan needs exactly 2)
    domains: list[str] = Field(default_factory=list)
    # the translator: checkpoint (translate.checkpoint), or an alias (champion, candidate) or version of
    # registry.model_name
    model: str = Field("checkpoint", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    checkpoint: str = "models/checkpoint.pt"
    # what to restyle: library (the image assets of library.dir), another library's folder, or an image folder
    input: str = Field("library", min_length=1)
    to: str | None = None  # the target domain (one of translate.domains, as written there)
    classes: list[str] = Field(default_factory=list)  # library inputs: only these classes (names or numbers)

    @field_validator("domains")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) < len(v):
            raise ValueError("each domain once")
        if any(not d.strip() for d in v):
            raise ValueError("a domain is a class name or a pattern, not an empty string")
        return v


class Config(Section):
    """The whole params.yaml."""

    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    features: FeaturesConfig = FeaturesConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    registry: RegistryConfig = RegistryConfig()
    library: LibraryConfig = LibraryConfig()
    translate: TranslateConfig = TranslateConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _gate_keys_are_scores(self) -> Config:
        """A gate bound on a score evaluate never reports for this kind of model would block every promotion
        in silence (`max: {kid: ...}`: the score is `kid_mean`): name the key and what evaluate reports."""
        known = gate_scores(self)
        for side in ("min", "max"):
            for key in getattr(self.registry.gate, side):
                if key not in known:
                    raise ValueError(f"{key_path(['registry', 'gate', side, key])}: {_not_a_score(key, known, self)}")
        return self

    def flat(self) -> dict[str, Any]:
        """`{"train.lr_g": 0.0002, ...}`: for logging params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = value

        walk("", self.model_dump())
        return out


# What evaluate reports, by kind of model: the names a gate bound may use (tests/test_evaluate.py and
# tests/test_video_metrics.py check these against the keys of a real evaluation, so the two cannot drift apart).
# Some are reported only when their inputs exist at run time (CAS: labelled data; a video's class_accuracy and
# clip_fd: the clip classifier); a bound on one that is missing then fails, and the gate says "missing".
DISTRIBUTION_SCORES = ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage")
CAS_SCORES = ("cas", "cas_real", "cas_ratio")
TRANSLATION_SCORES = ("fid_untranslated", "content_accuracy", "domain_accuracy", "cycle_l1")


def gate_scores(cfg: Config) -> tuple[str, ...]:
    """The scores evaluate reports for `cfg`'s kind of model (those a gate bound can hold on)."""
    names = list(DISTRIBUTION_SCORES)
    conditional = cfg.train.conditional
    if cfg.train.model.task == "translate":
        return (*names, *TRANSLATION_SCORES)
    if cfg.data.kind == "video":
        names += ["frame_class_accuracy", "class_accuracy"] if conditional else []
        names += ["clip_fd", "motion"] + (["fvd"] if cfg.evaluate.fvd_weights else [])
    else:
        names += ["class_accuracy"] if conditional else []
        names += list(CAS_SCORES) if conditional and cfg.evaluate.cas else []
    return tuple(names)


def _not_a_score(key: str, known: tuple[str, ...], cfg: Config) -> str:
    kind = f"{'conditional' if cfg.train.conditional else 'unconditional'} {cfg.data.kind} models"
    translator = cfg.train.model.task == "translate"
    if translator:
        kind = f"translators ({cfg.train.model.family})"
    why = {
        "class_accuracy": "an unconditional model has no classes to check (train.conditional is false)",
        "frame_class_accuracy": "an unconditional model has no classes to check (train.conditional is false)",
        "fvd": "FVD is computed only with evaluate.fvd_weights set",
    }
    if key in CAS_SCORES:
        why[key] = "CAS needs a conditional image model and evaluate.cas: true"
    if translator:
        why = {"class_accuracy": "a translator is judged by content_accuracy (the source's class kept) and "
               "domain_accuracy (the target domain reached)"}  # fmt: skip
    close = [k for k in known if k.startswith(f"{key}_")] or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close and key not in why else ""
    reason = f"; {why[key]}" if key in why else ""
    gate = cfg.registry.gate
    side = "min" if key in gate.min else "max"
    rest = ", ".join(f"{k}: {v:g}" for k, v in getattr(gate, side).items() if k in known)
    return (
        f"evaluate reports no score {key!r} for {kind}{reason}{hint}; it reports {', '.join(known)} "
        f"(remove the bound: --set 'registry.gate.{side}={{{rest}}}')"
    )


def key_path(parts: list[Any] | tuple[Any, ...]) -> str:
    """`["train", "steps"]` -> `train.steps`; a part that would not read back plainly (empty, a dot, a line
    break, spaces around it, anything unprintable) is quoted as Python would: `train.'a\\nb'`."""
    out = []
    for part in parts:
        text = str(part)
        plain = text and text.isprintable() and "." not in text and text.strip() == text and text[0] not in "'\""
        out.append(text if plain else repr(text))
    return ".".join(out)


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlong = 40
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxset = _SHORT.maxtuple = 6
_SHORT.maxlevel = 3


def _shown(value: Any) -> str:
    """A value as it goes into an error message: its repr, on one line and at most ~80 characters."""
    try:
        return _SHORT.repr(value)
    except ValueError:  # an int too long for str() (sys.get_int_max_str_digits)
        return f"<a {value.bit_length()}-bit integer>" if isinstance(value, int) else "<value>"


MAX_PROBLEMS = 8  # a file with hundreds of bad keys still gets one readable line


def _follow(loc: tuple[Any, ...]) -> tuple[list[Any], type[BaseModel] | None]:
    """An error's location as the user wrote it, and the section holding its last key (None: not a section).
    Inside `train.model` pydantic puts the family's tag into the location (`train.model.dcgan.z_dim`): dropped."""
    model: type[BaseModel] | None = Config
    parent: type[BaseModel] | None = None
    out: list[Any] = []
    for part in loc:
        if model is FamilyConfig and part in FAMILIES:  # the tag of the family the value was validated as
            model = FAMILIES[part].config
            continue
        out.append(part)
        parent = model
        field = model.model_fields.get(part) if model is not None and isinstance(part, str) else None
        model = _section_of(field.annotation) if field is not None else None
    return out, parent


def _section_of(annotation: Any) -> type[BaseModel] | None:
    """The section type of a field: a Section, or for `train.model` (a union of families) their common base."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation
    if any(isinstance(a, type) and issubclass(a, FamilyConfig) for a in _leaves(annotation)):
        return FamilyConfig
    return None


def _leaves(annotation: Any) -> list[Any]:
    args = get_args(annotation)
    return [leaf for a in args for leaf in _leaves(a)] if args else [annotation]


def _did_you_mean(parts: list[Any], parent: type[BaseModel] | None) -> str:
    """` (did you mean train.steps?)` for the unknown key `train.stpes`, when one is close; for a key of another
    model family (`train.model.motion_dim` on dcgan), which families have it."""
    if parent is None:
        return ""
    key = str(parts[-1])
    if issubclass(parent, FamilyConfig):
        others = [name for name, f in FAMILIES.items() if key in f.config.model_fields]
        if others:
            return f" for family {parent.model_fields['family'].default} (a key of {', '.join(others)})"
    close = difflib.get_close_matches(key, list(parent.model_fields), n=1, cutoff=0.7)
    return f" (did you mean {key_path([*parts[:-1], close[0]])}?)" if close else ""


def _describe(err: dict[str, Any]) -> str:
    parts, parent = _follow(tuple(err["loc"]))
    kind = err["type"]
    if not parts and kind == "value_error":  # a whole-file check (Config's validators) names its own key path
        return str(err["msg"]).removeprefix("Value error, ")
    path = key_path(parts) or "(top level)"
    if kind == "extra_forbidden":
        return f"{path}: unknown key{_did_you_mean(parts, parent)}"
    msg = err["msg"]
    msg = msg.removeprefix("Value error, ")
    if kind == "model_type":  # "Input should be a valid dictionary or instance of TrainConfig"
        msg = "expected a section (a mapping of key: value)"
    if kind == "literal_error" and path in RECIPE_KEYS_PATHS:  # `auto` was resolved before validation
        msg += ", or auto (the model family's recipe)"
    if "input" in err and not isinstance(err["input"], dict) and kind != "missing":
        return f"{path}: {msg} (got {_shown(err['input'])})"
    if msg.startswith(f"{path}."):  # a section's own check that names its key already (train.pl ...)
        return msg
    return f"{path}: {msg}"


# YAML: the C parser when PyYAML has it (5x faster on params.yaml), else the pure-Python one; same results.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DEPTH = 32  # params.yaml nests 4 deep (registry.gate.min.recall); anything deeper is a mistake
_MERGE = "tag:yaml.org,2002:merge"
_DECODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)  # PyYAML's, leaked


def _line(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}" if node.start_mark else "?"


def _at(node: yaml.Node, lines: bool) -> str:
    return f" ({_line(node)})" if lines else ""


def _construct(loader: Any, node: yaml.Node, where: str, path: list[Any], seen: set[int], lines: bool) -> None:
    """Build `node` bottom-up, so that whatever fails is named by its key path: a scalar no constructor can
    read (`2001-02-30`, `!!float x`), an unknown tag, a duplicate key, nesting deeper than MAX_DEPTH."""
    if id(node) in seen:  # an alias: built already (or a cycle, which the constructor reports below)
        return
    seen.add(id(node))
    if len(path) > MAX_DEPTH:
        raise ConfigError(f"{where}: {key_path(path)}: nested more than {MAX_DEPTH} levels deep{_at(node, lines)}")
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], yaml.Node] = {}
        for key, value in node.value:
            if key.tag == _MERGE:  # `<<: *defaults`: merged keys live at this level
                _construct(loader, value, where, path, seen, lines)
                continue
            label = key.value if isinstance(key, yaml.ScalarNode) else "?"
            if isinstance(key, yaml.ScalarNode):
                earlier = first.setdefault((key.tag, key.value), key)
                if earlier is not key:
                    first_at = f" ({_line(key)}; first at {_line(earlier)})" if lines else ""
                    raise ConfigError(f"{where}: {key_path([*path, label])}: duplicate key{first_at}")
            _construct(loader, key, where, [*path, label], seen, lines)
            _construct(loader, value, where, [*path, label], seen, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _construct(loader, item, where, [*path, index], seen, lines)
    try:
        loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        named = f"{key_path(path)}: " if path else ""
        raise ConfigError(f"{where}: {named}{exc.problem or exc.context}{_at(node, lines)}") from None
    except _DECODE_ERRORS:
        named = f"{key_path(path)}: " if path else ""
        raise ConfigError(
            f"{where}: {named}cannot read {_shown(node.value)} as {node.tag.rpartition(':')[2]}{_at(node, lines)}"
        ) from None


def _load_yaml(data: bytes, where: str, lines: bool = True) -> Any:
    """One YAML document -> Python objects. Anything wrong is a ConfigError of one line naming the key path
    or (`lines`: in a file) the line; nothing from PyYAML leaks."""
    loader = None
    try:
        loader = _Loader(data)
        node = loader.get_single_node()
        if node is None:
            return None
        _construct(loader, node, where, [], set(), lines)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}" if mark and lines else ""
        raise ConfigError(f"{where}: not valid YAML{at}: {exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(f"{where}: not valid YAML text: {exc.reason} (at position {exc.position})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc.__class__.__name__})") from None
    except RecursionError:
        raise ConfigError(f"{where}: not valid YAML: nested too deeply") from None
    except _DECODE_ERRORS as exc:  # what _construct did not see coming: still the document's fault
        raise ConfigError(f"{where}: cannot read the YAML ({exc.__class__.__name__})") from None
    finally:
        if loader is not None:
            loader.dispose()


def _bad_override(item: str) -> ConfigError:
    return ConfigError(f"--set {_shown(item)}: expected key.path=value, e.g. --set train.steps=100")


def parse_override(item: str) -> tuple[list[str], Any]:
    """`train.lr_g=1e-4` -> (["train", "lr_g"], 0.0001). The value is read as YAML (flow style: `[1, 2]`, `{a: 1}`)."""
    key, sep, raw = item.partition("=")
    keys = [part.strip() for part in key.split(".")]
    if not sep or not all(keys):
        raise _bad_override(item)
    where = f"--set {key_path(keys)}"
    try:
        data = raw.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: argv that was not UTF-8
        raise ConfigError(f"{where}: the value is not UTF-8 text ({_shown(raw)})") from None
    value = _load_yaml(data, where, lines=False) if raw.strip() else None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number (got {_shown(raw)})")
    return keys, value


_NAMED_SECTIONS = {("train", "model"): "family"}  # sections a name alone can stand for: that name's key


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `key.path=value` applied."""
    out = copy.deepcopy(raw)
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for depth, k in enumerate(keys[:-1]):
            child = node.setdefault(k, {})
            named = _NAMED_SECTIONS.get(tuple(keys[: depth + 1]))
            if named and isinstance(child, str):  # `model: mocogan`, then --set train.model.motion_dim=8
                child = node[k] = {named: child}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key_path(keys)}: {key_path(keys[: depth + 1])} is a value, not a section")
            node = child
        node[keys[-1]] = value
    return out


def read_params(path: Path) -> dict[str, Any]:
    """The raw mapping in a params file (missing file -> error, empty file -> {}). UTF-8 (or UTF-16 with a BOM)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such params file (run from the project root, or pass --params)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc.__class__.__name__})") from None
    except ValueError as exc:  # a NUL in the path
        raise ConfigError(f"{_shown(str(path))}: not a usable path ({exc})") from None
    raw = _load_yaml(data, str(path))
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data:, train:, ...), got {type(raw).__name__}")
    return raw


def _string_keys(node: Any, path: list[Any], source: str, seen: set[int]) -> None:
    """YAML keys can be numbers, booleans, null; every key here is a name (pydantic would print `False` as 0)."""
    if isinstance(node, dict | list) and id(node) not in seen:
        seen.add(id(node))
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(node, dict) and not isinstance(key, str):
                raise ConfigError(f"{source}: {key_path([*path, key])}: a key must be a name (got {_shown(key)})")
            _string_keys(value, [*path, key], source, seen)


def validate(raw: dict[str, Any], source: str = "params") -> Config:
    _string_keys(raw, [], source, set())
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(_describe(e) for e in errors[:MAX_PROBLEMS])
        more = f"; and {len(errors) - MAX_PROBLEMS} more" if len(errors) > MAX_PROBLEMS else ""
        raise ConfigError(f"{source}: {problems}{more}") from None


def load_config(path: Path | str = DEFAULT_PARAMS, overrides: list[str] | None = None) -> Config:
    """Read params.yaml, apply `--set` overrides, validate. Raises ConfigError with one line."""
    path = Path(path)
    raw = apply_overrides(read_params(path), overrides or [])
    return validate(raw, str(path))
