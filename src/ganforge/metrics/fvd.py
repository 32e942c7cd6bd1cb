"""FVD (Unterthiner et al. 2018, "Towards Accurate Generative Models of Video"): the Fréchet distance between
I3D (Kinetics-400) features of real and generated clips.

The detector is the widely used TorchScript I3D, `i3d_torchscript.pt` (the network of the original TensorFlow FVD,
as converted for StyleGAN-V and universome/fvd-comparison): `detector(videos, rescale=False, resize=True,
return_features=True)` maps float clips [N, 3, T, H, W] in [-1, 1] to 400-d features (the logits before the
softmax), resizing each frame to 224x224 itself. Grayscale clips are repeated to three channels. Its temporal
pooling needs clips of at least MIN_FRAMES frames.

It is loaded **only** from a local file, `evaluate.fvd_weights`, and only after the file's sha256 matches
`evaluate.fvd_sha256`: nothing is ever downloaded. A TorchScript file is code as well as weights, so the hash
check is what makes loading it safe. With `evaluate.fvd_weights: null`, FVD is not computed and eval.json says so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ganforge.errors import GanforgeError
from ganforge.paths import sha256_file

EXTRACTOR = "i3d-kinetics400-torchscript"
FEATURE_DIM = 400
MIN_FRAMES = 10  # fewer frames than this pool to nothing inside I3D
BATCH = 8  # clips per detector call (each is resized to T x 224 x 224 inside)
DETECTOR_KWARGS = {"rescale": False, "resize": True, "return_features": True}
NOT_COMPUTED = (
    "not computed: set evaluate.fvd_weights to a local i3d_torchscript.pt and evaluate.fvd_sha256 to its sha256"
)


def check_frames(frames: int) -> None:
    """One line when the clips are too short for I3D."""
    if frames < MIN_FRAMES:
        raise GanforgeError(
            f"evaluate.fvd_weights is set, but FVD's I3D needs clips of at least {MIN_FRAMES} frames and these have "
            f"{frames}: prepare longer clips (data.frames) or set evaluate.fvd_weights: null"
        )


def load_i3d(weights: str, expected_sha256: str | None) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The TorchScript I3D from a local file, after its sha256 is checked; and the protocol to record."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise GanforgeError(
            f"evaluate.fvd_weights: {path} not found (a local i3d_torchscript.pt; nothing is downloaded); "
            "fix the path or set evaluate.fvd_weights: null to skip FVD"
        )
    actual = sha256_file(path)
    if not expected_sha256:
        raise GanforgeError(
            f"evaluate.fvd_sha256 is not set: {path} has sha256 {actual}; if that is the file you trust, set "
            f"evaluate.fvd_sha256 to it in params.yaml (or --set evaluate.fvd_sha256={actual})"
        )
    if actual != expected_sha256.lower():
        raise GanforgeError(
            f"{path}: sha256 is {actual}, expected {expected_sha256.lower()} (evaluate.fvd_sha256); "
            "replace the file with the one you expect, or correct evaluate.fvd_sha256 in params.yaml"
        )
    try:
        detector = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise GanforgeError(f"{path}: not a TorchScript I3D ({exc.__class__.__name__})") from None
    protocol = {
        "fvd_extractor": EXTRACTOR,
        "fvd_weights": str(path),
        "fvd_weights_sha256": actual,
        "fvd_input": "float clips in [-1, 1], grayscale repeated to 3 channels; the detector resizes to 224x224",
        "fvd_detector_kwargs": dict(DETECTOR_KWARGS),
        "fvd_batch": BATCH,
    }
    return detector.eval(), protocol


def i3d_features(detector: torch.jit.ScriptModule) -> Callable[[torch.Tensor], tuple[torch.Tensor, None]]:
    """An extractor: uint8 clips [N, C, T, H, W] -> (I3D features float64 [N, 400], None)."""

    @torch.no_grad()
    def run(clips: torch.Tensor) -> tuple[torch.Tensor, None]:
        if clips.ndim != 5 or clips.shape[1] not in (1, 3):
            raise ValueError(f"expected uint8 clips [N, 1 or 3, T, H, W], got shape {list(clips.shape)}")
        check_frames(clips.shape[2])
        out = []
        for i in range(0, len(clips), BATCH):
            x = clips[i : i + BATCH].float().mul(2 / 255).sub(1)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1, -1)
            f = detector(x.contiguous(), **DETECTOR_KWARGS)
            if f.ndim != 2 or f.shape[0] != len(x):
                raise GanforgeError(
                    f"evaluate.fvd_weights: the detector returned shape {list(f.shape)} for {len(x)} clips, expected "
                    f"[{len(x)}, {FEATURE_DIM}]: not the I3D FVD detector"
                )
            out.append(f.double())
        return torch.cat(out), None

    return run
