"""The `features` stage: the in-domain classifiers trained on the prepared train split, scored on its test split.

The image classifier (`metrics/classifier.py`) -> models/classifier.pt: its penultimate layer is the feature space
of FID/KID/precision/recall where no Inception weights are at hand (and a more telling one for small grayscale
domains); its logits give the class accuracy of conditional samples. Video data trains it on frames drawn from the
train clips, and trains the clip classifier (`metrics/clips.py`) too -> models/clip_classifier.pt. Test accuracies
go to metrics/features.json. The networks, their files and their use as feature extractors live in `metrics/`;
this module only trains them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge.config import FeaturesConfig
from ganforge.data.dataset import KINDS, PreparedData
from ganforge.metrics import classifier, clips
from ganforge.metrics.classifier import accuracy, fit, shift_images
from ganforge.paths import Paths, write_text_atomic

CLIP_BATCH = 64  # clips per forward pass when scoring


def shift_clips(x: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translations by up to `max_shift` pixels, one per clip: every frame of a clip moves alike."""
    n, c, t, h, w = x.shape
    return shift_images(x.reshape(n, c * t, h, w), g, max_shift).reshape(n, c, t, h, w)


def sample_frames(
    videos: torch.Tensor, labels: torch.Tensor, per_clip: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_clip` distinct random frames of every clip (all of them when the clip is shorter), with the labels."""
    n, _, t = videos.shape[:3]
    k = min(per_clip, t)
    picks = torch.rand(n, t, generator=g).argsort(dim=1)[:, :k]  # [N, k] distinct frame indices per clip
    frames = videos[torch.arange(n)[:, None], :, picks]  # [N, k, C, H, W]
    return frames.reshape(n * k, *frames.shape[2:]), labels.repeat_interleave(k)


@dataclass(frozen=True)
class FeaturesSummary:
    test_accuracy: float
    train_accuracy: float
    n_train: int
    n_test: int
    epochs: int
    seconds: float

    def line(self, out: Path) -> str:
        if not self.epochs:
            return f"features: skipped, no class labels (evaluate will need evaluate.extractor=inception) -> {out}"
        return (
            f"features: classifier test accuracy {self.test_accuracy:.4f} (train {self.train_accuracy:.4f}; "
            f"{self.n_train} train / {self.n_test} test images, {self.epochs} epochs) in {self.seconds:.0f}s -> {out}"
        )


@dataclass(frozen=True)
class ClipSummary:
    test_accuracy: float
    train_accuracy: float
    n_train: int  # clips
    n_test: int
    frames: int
    epochs: int
    seconds: float


@dataclass(frozen=True)
class VideoFeaturesSummary(FeaturesSummary):
    """The frame classifier's numbers (n_train: frames per epoch, n_test: every test frame) and the clip one's."""

    frames_per_clip: int
    clip: ClipSummary

    def line(self, out: Path) -> str:
        c = self.clip
        return (
            f"features: frame classifier test accuracy {self.test_accuracy:.4f} (train {self.train_accuracy:.4f}; "
            f"{self.frames_per_clip} random frame(s) per train clip per epoch, {self.n_test} test frames, "
            f"{self.epochs} epochs); clip classifier test accuracy {c.test_accuracy:.4f} (train "
            f"{c.train_accuracy:.4f}; {c.n_train} train / {c.n_test} test clips of {c.frames} frames, "
            f"{c.epochs} epochs) in {self.seconds + c.seconds:.0f}s -> {out}, {out.with_name('clip_classifier.pt')}"
        )


def _record(net: nn.Module, data: PreparedData, test_accuracy: float, **arch: int) -> dict[str, Any]:
    """What a classifier file holds: the weights, the arch to rebuild it (the data's channels and classes, then
    `arch`), the class names, the resolution and the test accuracy."""
    return {
        "state_dict": net.state_dict(),
        "arch": {"channels": data.channels, "num_classes": data.num_classes, **arch},
        "class_names": list(data.class_names),
        "resolution": data.resolution,
        "test_accuracy": test_accuracy,
    }


def train_classifier(fc: FeaturesConfig, paths: Paths, progress: bool = True) -> FeaturesSummary:
    """Train on the prepared train split, score on its test split, save models/classifier.pt.

    Video data: the same classifier learns from `fc.frames_per_clip` random frames of each train clip per epoch
    (scored on every frame of the test clips), and the clip classifier (`metrics/clips.py`) is trained too ->
    models/clip_classifier.pt; features.json then has its numbers under `clip`."""
    data = PreparedData.open(paths.prepared, kinds=KINDS)
    video = data.kind == "video"
    t0 = time.perf_counter()
    if data.num_classes < 2:  # nothing to learn; evaluate then needs Inception and says so
        classifier.save(paths.classifier, {"unavailable": f"{paths.prepared} has no class labels"})
        if video:
            clips.save(paths.clip_classifier, {"unavailable": f"{paths.prepared} has no class labels"})
        summary = FeaturesSummary(float("nan"), float("nan"), data.count("train"), data.count("test"), 0, 0.0)
        write_text_atomic(paths.metrics / "features.json", json.dumps({"skipped": "no class labels"}) + "\n")
        return summary
    x_train, y_train = data.load("train")
    x_test, y_test = data.load("test")
    g = torch.Generator().manual_seed(fc.seed)  # frames of each clip an epoch sees (video), then batch order
    if video:  # frames: a fresh random few of each train clip every epoch; every frame of the test clips
        train_clips, train_labels = x_train, y_train
        x_test, y_test = clips.all_frames(x_test), y_test.repeat_interleave(data.frames or 1)
        x_train, y_train = sample_frames(train_clips, train_labels, fc.frames_per_clip, g)

    def epoch_data(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if video and epoch:
            return sample_frames(train_clips, train_labels, fc.frames_per_clip, g)
        return x_train, y_train

    net, (x_train, y_train), how = classifier.train_new(
        fc, epoch_data, data.channels, data.num_classes, desc="features", progress=progress, g=g
    )
    summary = FeaturesSummary(
        test_accuracy=accuracy(net, x_test, y_test) if len(x_test) else float("nan"),
        train_accuracy=accuracy(net, x_train, y_train),
        n_train=len(x_train),
        n_test=len(x_test),
        epochs=how["epochs"],
        seconds=round(time.perf_counter() - t0, 1),
    )
    arch = {"width": fc.width, "feature_dim": fc.feature_dim}
    classifier.save(paths.classifier, {**_record(net, data, summary.test_accuracy, **arch), "recipe": how})
    if video:
        clip = train_clip_classifier(fc, data, paths, progress)
        summary = VideoFeaturesSummary(**asdict(summary), frames_per_clip=fc.frames_per_clip, clip=clip)
    write_text_atomic(paths.metrics / "features.json", json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def train_clip_classifier(fc: FeaturesConfig, data: PreparedData, paths: Paths, progress: bool = True) -> ClipSummary:
    """Train on the prepared train clips, score on the test clips, save models/clip_classifier.pt."""
    t0 = time.perf_counter()
    if data.frames is None:
        raise ValueError(f"{data.out_dir} holds images, not clips")
    x_train, y_train = data.load("train")
    x_test, y_test = data.load("test")
    torch.manual_seed(fc.seed)
    g = torch.Generator().manual_seed(fc.seed)
    net = clips.ClipClassifier(data.channels, data.num_classes, data.frames, fc.clip_width, fc.feature_dim)
    fit(net, lambda _: (x_train, y_train), fc.clip_epochs, fc.clip_batch_size, fc.lr,
        shift_clips if fc.augment != "none" else None, g, desc="features (clips)", progress=progress)  # fmt: skip
    summary = ClipSummary(
        test_accuracy=accuracy(net, x_test, y_test, CLIP_BATCH) if len(x_test) else float("nan"),
        train_accuracy=accuracy(net, x_train, y_train, CLIP_BATCH),
        n_train=len(x_train),
        n_test=len(x_test),
        frames=data.frames,
        epochs=fc.clip_epochs,
        seconds=round(time.perf_counter() - t0, 1),
    )
    arch = {"frames": data.frames, "width": fc.clip_width, "feature_dim": fc.feature_dim}
    clips.save(paths.clip_classifier, {**_record(net, data, summary.test_accuracy, **arch), "frames": data.frames})
    return summary
