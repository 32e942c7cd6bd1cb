"""Video data: the in-domain clip classifier, trained by the `features` stage (`ganforge.features`) on the real
train clips.

Its penultimate layer is the feature space of the *in-domain clip Fréchet distance* (`clip_fd` in eval.json): a
distance between whole clips, so it sees motion as well as looks. It is trained on this data's class labels only,
so it is comparable between models trained on the same data, never with published numbers, and it is **not FVD**
(that needs the Kinetics I3D: `ganforge.metrics.fvd`). Its logits give the class accuracy of generated clips.

The network is 3D-convolutional in the layouts of Tran et al. 2018 ("A Closer Look at Spatiotemporal
Convolutions for Action Recognition"): the first two blocks are per-frame (1x3x3) convolutions, the last two are
factorised "(2+1)D" blocks, a 1x3x3 spatial convolution then a 3x1x1 temporal one (every convolution with
BatchNorm and ReLU). Measured on moving digits (16 frames of 32x32) on 2 CPU cores, that layout trains ~4x faster
per epoch than full 3x3x3 blocks and reaches a higher test accuracy in fewer epochs (0.98 in 6 against 0.94 in
8): the frames' appearance is learnt cheaply at full frame rate, motion on the small feature maps. Space halves
in each of the first three blocks, time in each of the last two while at least 4 frames are left; a global
average pool over time and space ends the body. Clips larger than 64x64 are area-averaged down to 64x64 first,
so the net takes any T >= 1 and any resolution (the prepared data has T 2..256 and sides 16..256).

Video data also trains the per-frame classifier of `classifier.py` (same format as for images, so per-frame
FID/KID and the library's image tools work unchanged) on frames drawn from the train clips (`all_frames`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge import safeload
from ganforge.errors import GanforgeError
from ganforge.metrics.classifier import built, checked_record
from ganforge.paths import atomic_path

FORMAT = 1
MAX_SIDE = 64  # larger clips are area-averaged down to this side first


class ClipClassifierUnavailable(GanforgeError):
    """The features stage wrote no clip classifier (the data has no class labels)."""


def _spatial(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv3d(c_in, c_out, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(True),
    ]


def _temporal(c: int, stride: int) -> list[nn.Module]:
    return [nn.Conv3d(c, c, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False), nn.BatchNorm3d(c), nn.ReLU(True)]


class ClipClassifier(nn.Module):
    """Two per-frame blocks (widths w, 2w), two (2+1)D blocks (4w, 4w), global average pool, a `feature_dim` layer,
    logits."""

    def __init__(self, channels: int, num_classes: int, frames: int, width: int = 16, feature_dim: int = 128) -> None:
        super().__init__()
        w = width
        t_strides = []
        t = frames
        for _ in range(2):  # time halves in each (2+1)D block while at least 4 frames are left
            t_strides.append(2 if t >= 4 else 1)
            t = (t - 1) // t_strides[-1] + 1
        layers: list[nn.Module] = [
            *_spatial(channels, w, 2),
            *_spatial(w, 2 * w, 2),
            *_spatial(2 * w, 4 * w, 2),
            *_temporal(4 * w, t_strides[0]),
            *_spatial(4 * w, 4 * w, 1),
            *_temporal(4 * w, t_strides[1]),
        ]
        self.body = nn.Sequential(
            *layers,
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
            nn.Linear(4 * w, feature_dim),
            nn.ReLU(True),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))
        self.frames = frames
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float clips in [-1, 1] [N, C, T, H, W] -> (features [N, feature_dim], logits [N, K])."""
        if x.ndim != 5:
            raise ValueError(f"expected clips [N, C, T, H, W], got shape {list(x.shape)}")
        if max(x.shape[-2:]) > MAX_SIDE:
            x = F.adaptive_avg_pool3d(x, (x.shape[2], min(x.shape[3], MAX_SIDE), min(x.shape[4], MAX_SIDE)))
        f = self.body(x)
        return f, self.head(f)


def all_frames(clips: torch.Tensor) -> torch.Tensor:
    """Clips [N, C, T, H, W] -> their frames [N*T, C, H, W], clip by clip (frame t of clip i at i*T + t)."""
    n, c, t, h, w = clips.shape
    return clips.transpose(1, 2).reshape(n * t, c, h, w)


def save(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "kind": "clip_classifier", **state}, tmp)


def load(path: Path) -> tuple[ClipClassifier, dict[str, Any]]:
    """The clip classifier in eval mode and its record (arch, class names, frames, test accuracy, sha256).

    Read as data only, within bounds, like the image classifier (`ganforge.safeload`)."""
    if not path.exists():
        raise GanforgeError(f"{path}: no clip classifier (run `ganforge features` on the prepared clips)")
    state = safeload.read_torch_file(path, "clip classifier")
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("kind") != "clip_classifier":
        raise GanforgeError(f"{path}: not a ganforge clip classifier (format {FORMAT}); run `ganforge features`")
    if "unavailable" in state:
        why = " ".join(str(state["unavailable"]).split())[:200]  # one line, whatever the file says
        raise ClipClassifierUnavailable(f"no in-domain clip classifier ({why})")
    what = "ganforge clip classifier"
    return built(path, state, what, ClipClassifier, checked_record(state, path, what, ("resolution", "frames")))
