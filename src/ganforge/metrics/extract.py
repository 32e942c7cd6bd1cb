"""Feature spaces: the configured extractor (the in-domain classifier, Inception or DINOv2), the clip classifier's, and
the real split's features in them (cached). Used by the evaluate stage and by the library's scorer alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ganforge.config import EvaluateConfig
from ganforge.metrics import classifier, clips
from ganforge.paths import Paths, atomic_path

# an extractor maps uint8 images [N, C, H, W] (or clips [N, C, T, H, W]) to (features [N, D], logits [N, K] or None)
Extract = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def _batched(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, batch: int) -> list[Any]:
    return [fn(x[i : i + batch]) for i in range(0, len(x), batch)]


def _classifier_extract(net: nn.Module, batch: int) -> Extract:
    """A ganforge classifier (image or clip) as an extractor: uint8 in, (features float64, logits) out."""

    @torch.no_grad()
    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        parts = _batched(lambda b: net(classifier.to_float(b)), x, batch)
        return torch.cat([f for f, _ in parts]).double(), torch.cat([z for _, z in parts])

    return run


def extractor(ec: EvaluateConfig, paths: Paths) -> tuple[Extract, dict[str, Any]]:
    """The configured feature extractor and its protocol (name, weights hash, resize, dim)."""
    if ec.extractor == "classifier":
        net, record = classifier.load(paths.classifier)
        run = _classifier_extract(net, ec.batch_size)
        protocol = {
            "extractor": "classifier",
            "weights": str(paths.classifier),
            "weights_sha256": record["sha256"],
            "extractor_test_accuracy": record["test_accuracy"],
            "feature_dim": net.feature_dim,
            "resize": "none (native resolution)",
        }
        return run, protocol
    if ec.extractor == "dinov2":
        from ganforge.metrics.dinov2 import load_dinov2

        net_i, protocol = load_dinov2(ec.dinov2_weights, ec.dinov2_sha256, ec.download)
    else:
        from ganforge.metrics.inception import load_inception

        net_i, protocol = load_inception(ec.inception_weights, ec.download, ec.resize_filter)

    @torch.no_grad()
    def run_i(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.cat(_batched(net_i, x, ec.batch_size)).double(), None

    return run_i, dict(protocol)


def clip_extractor(ec: EvaluateConfig, paths: Paths) -> tuple[Extract, dict[str, Any]]:
    """The clip classifier of the features stage as an extractor: uint8 clips [N, C, T, H, W] ->
    (features float64 [N, D], logits [N, K]); and its protocol (weights hash, feature dim, frames)."""
    net, record = clips.load(paths.clip_classifier)
    run = _classifier_extract(net, max(1, ec.batch_size // max(1, net.frames)))  # ~batch_size frames per pass

    protocol = {
        "extractor": "clip_classifier",
        "weights": str(paths.clip_classifier),
        "weights_sha256": record["sha256"],
        "extractor_test_accuracy": record["test_accuracy"],
        "feature_dim": net.feature_dim,
        "frames": record["frames"],
        "resolution": record["resolution"],
        "resize": "none (native resolution)",
    }
    return run, protocol


def _data_key(paths: Paths, split: str) -> str:
    """A hash that changes whenever the prepared data does (its manifest and info say everything)."""
    h = hashlib.sha256(split.encode())
    for name in ("info.json", "manifest.parquet"):
        h.update((paths.prepared / name).read_bytes())
    return h.hexdigest()


def reference_features(
    extract: Extract, protocol: dict[str, Any], paths: Paths, split: str, real: torch.Tensor
) -> tuple[torch.Tensor, bool]:
    """Features of the real split, from the cache when the data and extractor are unchanged."""
    key_src = json.dumps({"data": _data_key(paths, split), "extractor": protocol}, sort_keys=True, default=str)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
    cached = paths.cache / "reference" / f"{key}.pt"
    if cached.exists():
        try:
            return torch.load(cached, weights_only=True)["features"], True
        except Exception:  # a damaged cache entry is recomputed, never trusted
            cached.unlink(missing_ok=True)
    features, _ = extract(real)
    with atomic_path(cached) as tmp:
        torch.save({"features": features, "key": key_src}, tmp)
    return features, False
