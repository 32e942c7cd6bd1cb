"""The standard FID feature extractor: Inception-v3 with the TensorFlow 2015-12-05 weights.

These are the weights of the original FID code (Heusel et al. 2017), converted to PyTorch by pytorch-fid as
`pt_inception-2015-12-05-6726825d.pth`; torch-fidelity (the backend of torchmetrics' own FID) re-hosts the very same
file as `weights-inception-2015-12-05-6726825d.pth`. Either name is accepted. The network is assembled from
torch-fidelity's TF-compatible Inception blocks (its FID variants of the pooling branches), so its state-dict layout is
exactly that file's (torchvision's Inception3 names, 1008 classes, no auxiliary head).

The file is never unpickled as code (`weights_only=True`) and its sha256 is checked before loading. It is downloaded
only when asked to (`evaluate.download=true`); otherwise a missing file is a one-line error saying where to put it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.errors import GanforgeError
from ganforge.paths import sha256_file

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid's name
WEIGHTS_FILE_ALIASES = (WEIGHTS_FILE, "weights-inception-2015-12-05-6726825d.pth")  # + torch-fidelity's name
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE
# sha256 of the published file (95,628,359 bytes); torch.hub's convention puts its first 8 hex digits in the name.
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
EXTRACTOR = "inception-v3-fid-2015-12-05"
FEATURE_DIM = 2048
INPUT_SIZE = 299

# evaluate.resize_filter -> (torch interpolate mode, antialias). Antialiasing only exists for bilinear/bicubic in
# torch; "nearest" uses the pixel-centre-correct "nearest-exact" (as PIL does), not torch's legacy "nearest".
RESIZE_MODES: dict[str, tuple[str, bool]] = {
    "bilinear": ("bilinear", True),
    "bicubic": ("bicubic", True),
    "nearest": ("nearest-exact", False),
}


class FIDInceptionV3(nn.Module):
    """uint8 images [N, C, H, W] (C = 1 or 3, values 0..255) -> float32 pool features [N, 2048].

    Images are resized to 299x299 in float (no re-quantisation), scaled as the TF graph does, `(x - 128) / 128`,
    and run up to the global average pool. The module never leaves eval mode and its weights need no gradients.
    """

    num_features = FEATURE_DIM

    def __init__(self, resize_filter: str = "bilinear") -> None:
        super().__init__()
        if resize_filter not in RESIZE_MODES:
            raise ValueError(f"resize_filter must be one of {sorted(RESIZE_MODES)}, got {resize_filter!r}")
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import (
                BasicConv2d,
                InceptionA,
                InceptionB,
                InceptionC,
                InceptionD,
                InceptionE_1,
                InceptionE_2,
            )
        except ImportError:
            raise GanforgeError(
                "evaluate.extractor 'inception' needs the torch-fidelity package (pip install torch-fidelity==0.4.0)"
            ) from None
        self.resize_mode, self.antialias = RESIZE_MODES[resize_filter]
        # Inception-v3 (Szegedy et al. 2016) up to the pool, layer names as in the weights file.
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.MaxPool_1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.MaxPool_2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE_1(1280)
        self.Mixed_7c = InceptionE_2(2048)
        self.AvgPool = nn.AdaptiveAvgPool2d(output_size=(1, 1))
        self.fc = nn.Linear(2048, 1008)  # the classifier: part of the file (strict loading), unused for features
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FIDInceptionV3:
        """Stay in eval mode: batch-norm statistics are part of the standard."""
        return super().train(False)

    @property
    def resize_protocol(self) -> str:
        return f"{self.resize_mode} {INPUT_SIZE}x{INPUT_SIZE} antialias={self.antialias}"

    def forward(self, images: Tensor) -> Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"expected uint8 images [N, 1 or 3, H, W], got {images.dtype} of shape {list(images.shape)}"
            )
        x = images.to(device=self.fc.weight.device, dtype=torch.float32)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            align = False if self.resize_mode in ("bilinear", "bicubic") else None
            x = F.interpolate(
                x, size=(INPUT_SIZE, INPUT_SIZE), mode=self.resize_mode, align_corners=align, antialias=self.antialias
            )
            x = x.clamp(0.0, 255.0)  # bicubic overshoots; a no-op for the other filters
        x = (x - 128.0) / 128.0
        if x.shape[1] == 1:  # grayscale: the same image in the three channels
            x = x.expand(-1, 3, -1, -1)
        for layer in (
            self.Conv2d_1a_3x3,
            self.Conv2d_2a_3x3,
            self.Conv2d_2b_3x3,
            self.MaxPool_1,
            self.Conv2d_3b_1x1,
            self.Conv2d_4a_3x3,
            self.MaxPool_2,
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
            self.AvgPool,
        ):
            x = layer(x)
        return torch.flatten(x, 1)


def hub_checkpoint_dir() -> Path:
    """Where torch.hub keeps downloaded weights (`$TORCH_HOME/hub/checkpoints`, by default ~/.cache/torch/...)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _candidates(weights: str | None) -> list[Path]:
    if weights is None:
        return [hub_checkpoint_dir() / name for name in WEIGHTS_FILE_ALIASES]
    path = Path(weights).expanduser()
    if path.is_dir():
        return [path / name for name in WEIGHTS_FILE_ALIASES]
    return [path]


def _missing(weights: str | None) -> GanforgeError:
    where = f"not found at evaluate.inception_weights ({weights})" if weights else "not found in the torch hub cache"
    return GanforgeError(
        f"FID Inception weights {WEIGHTS_FILE} {where}: put the file at the path named by "
        f"evaluate.inception_weights, or in the torch hub cache {hub_checkpoint_dir()}/, "
        "or set evaluate.download=true to fetch it"
    )


def _download(weights: str | None) -> Path:
    target = _candidates(weights)[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Writes to a temporary file, checks the sha256 and only then moves it into place.
        torch.hub.download_url_to_file(WEIGHTS_URL, str(target), hash_prefix=WEIGHTS_SHA256, progress=True)
    except (OSError, RuntimeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise GanforgeError(f"could not download {WEIGHTS_URL} to {target}: {reason}") from None
    return target


def load_inception(
    weights: str | None,
    download: bool,
    resize_filter: str = "bilinear",
    expected_sha256: str | None = None,
) -> tuple[FIDInceptionV3, dict[str, Any]]:
    """The FID Inception-v3 in eval mode on CPU, and the protocol to record beside its scores.

    `weights` is the weights file (or a directory holding it, under either published name); None looks in the torch
    hub cache. A missing file is downloaded only when `download` is true. The file's sha256 must equal
    `expected_sha256` (default: the published file's).
    """
    weights = weights or None  # an empty path means "not set"
    expected = (expected_sha256 or WEIGHTS_SHA256).lower()
    path = next((p for p in _candidates(weights) if p.is_file()), None)
    if path is None:
        if not download:
            raise _missing(weights)
        path = _download(weights)
    actual = sha256_file(path)
    if actual != expected:
        raise GanforgeError(
            f"{path}: sha256 is {actual}, expected {expected} ({WEIGHTS_FILE}); replace the file with the published one"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = FIDInceptionV3(resize_filter)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # a batch-norm counter, unused in eval
    if missing or unexpected:
        raise RuntimeError(f"{path}: not the FID Inception layout (missing {missing[:3]}, unexpected {unexpected[:3]})")
    protocol = {
        "extractor": EXTRACTOR,
        "weights_sha256": actual,
        "resize": model.resize_protocol,
        "feature_dim": FEATURE_DIM,
    }
    return model, protocol
