"""How good, how new and how unique a generated image (or clip) is.

- realism score (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative Models",
  section 4): max over real samples phi_r of radius(phi_r) / ||phi_g - phi_r||, in the evaluation feature space,
  with the real manifold pruned to the half of the samples with the smallest k-NN radii. >= 1: inside the manifold.
- the discriminator's logit (packed discriminators judge the image repeated `pack` times).
- discriminator rejection sampling (Azadi et al. 2019): accept with p = sigmoid(F(x)).
- nearest training image, in features and in pixels (memorisation check).
- perceptual hashes (imagehash.phash, 64 bits) and Hamming distances (near-duplicates); a clip is hashed at a few
  frames (first, middle, last) and is a near-duplicate of another when every one of those frames is.

Clips [N, C, T, H, W] go through the same functions as images: features come from a clip feature space, pixel
distances are RMSE over the whole clip, and D's score is the clip head's logit (`clip_logits`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ganforge.metrics.scores import knn_radii

BLOCK = 1024  # fake rows per distance block


@dataclass(frozen=True)
class RealSet:
    """What candidates are compared against: the training split in features and pixels."""

    features: torch.Tensor  # [N, D] float64
    pixels: torch.Tensor  # [N, P] float64 in [0, 1] (float32 cdist would blur exact copies)
    manifold: torch.Tensor  # [M, D] float64: the pruned real manifold of the realism score
    radii: torch.Tensor  # [M] float64: k-NN radii of those samples
    median_nn: float  # median distance from a training image to its nearest other training image (features)

    @classmethod
    def build(cls, features: torch.Tensor, images: torch.Tensor, k: int) -> RealSet:
        features = features.double()
        if len(features) <= k:
            raise ValueError(f"the realism score with k={k} needs more than {k} training images, got {len(features)}")
        radii = knn_radii(features, k)
        keep = radii <= radii.median()
        median_nn = float(knn_radii(features, 1).median())
        pixels = images.reshape(len(images), -1).double() / 255.0
        return cls(features, pixels, features[keep], radii[keep], median_nn)


@dataclass(frozen=True)
class Scores:
    realism: torch.Tensor  # [B] float64
    nearest_feature: torch.Tensor  # [B] float64: distance to the nearest training image (features)
    nearest_index: torch.Tensor  # [B] int64: its index in the training split
    nearest_pixel: torch.Tensor  # [B] float64: RMSE (0..1) to the nearest training image in pixels


def compare(features: torch.Tensor, images: torch.Tensor, real: RealSet) -> Scores:
    """Realism and nearest-real distances of candidates (features [B, D], uint8 images [B, C, H, W])."""
    f = features.double()
    px = images.reshape(len(images), -1).double() / 255.0
    realism, near_f, near_i, near_p = [], [], [], []
    for i in range(0, len(f), BLOCK):
        d = torch.cdist(f[i : i + BLOCK], real.manifold).clamp_min(1e-12)
        realism.append((real.radii[None, :] / d).max(dim=1).values)
        dist, idx = torch.cdist(f[i : i + BLOCK], real.features).min(dim=1)
        near_f.append(dist)
        near_i.append(idx)
        near_p.append(torch.cdist(px[i : i + BLOCK], real.pixels).min(dim=1).values)
    p = px.shape[1]
    return Scores(torch.cat(realism), torch.cat(near_f), torch.cat(near_i), torch.cat(near_p) / math.sqrt(p))


@torch.inference_mode()
def discriminator_logits(D: nn.Module, images: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """D's logit for each uint8 image [B, C, H, W] (class indices y for conditional D). A packed D (PacGAN) sees
    each image repeated `pack` times: the score of a pack of identical copies."""
    pack = int(getattr(getattr(D, "spec", None), "pack", 1) or 1)
    x = images.float() / 127.5 - 1.0
    if pack > 1:
        x = x.repeat_interleave(pack, dim=0)
        y = None if y is None else y.repeat_interleave(pack)
    return D(x, y).logits[0].float().flatten()


@torch.inference_mode()
def clip_logits(D: nn.Module, clips: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The video discriminator's clip-head logit for each uint8 clip [B, C, T, H, W] (`D(x, y).logits[1]`: one per clip,
    no packing). The frame head samples frames at random, so only the clip head scores a clip reproducibly."""
    x = clips.float() / 127.5 - 1.0
    video = getattr(D, "video", None)  # mocogan: the clip head alone, without drawing the frame head's frames
    out = video(x, y) if isinstance(video, nn.Module) else D(x, y).logits[1]
    return out.float().flatten()


def drs_accept_probability(logits: torch.Tensor, percentile: float, eps: float = 1e-6) -> torch.Tensor:
    """Azadi et al. 2019, eq. 8: F = D - D*_M - log(1 - exp(D - D*_M - eps)) - gamma; p = sigmoid(F).

    D*_M is the largest logit of the pool (the burn-in); gamma shifts F so that its `percentile` gets p = 1/2.
    """
    d = logits.double()
    delta = d - d.max() - eps  # < 0
    f_hat = delta - torch.log1p(-torch.exp(delta))
    gamma = torch.quantile(f_hat, percentile / 100.0)
    return torch.sigmoid(f_hat - gamma)


def uniform(*key: object) -> float:
    """A uniform number in [0, 1) fixed by `key` (e.g. seed and class): the same candidate gets the same draw
    in every build, whatever else is in the pool."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def phash(image: np.ndarray) -> int:
    """64-bit perceptual hash of a uint8 image [C, H, W] (grayscale or RGB)."""
    import imagehash
    from PIL import Image

    arr = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
    bits = imagehash.phash(Image.fromarray(arr)).hash.flatten()
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


def hamming(h: int, others: np.ndarray) -> np.ndarray:
    """Hamming distances between hash `h` and hashes `others` (uint64 array)."""
    if not len(others):
        return np.empty(0, dtype=np.int64)
    return np.bitwise_count(np.bitwise_xor(others, np.uint64(h))).astype(np.int64)


CLIP_HASH_FRAMES = 3  # first, middle, last


def clip_frames(t: int) -> list[int]:
    """The frames of a T-frame clip that its perceptual hash looks at: first, middle, last."""
    return [0, t // 2, t - 1]


def clip_phash(clip: np.ndarray) -> tuple[int, ...]:
    """64-bit pHashes of a uint8 clip [C, T, H, W] at its first, middle and last frames."""
    return tuple(phash(clip[:, i]) for i in clip_frames(clip.shape[1]))


def encode_hashes(hashes: tuple[int, ...] | list[int]) -> str:
    """The catalog's `phash` text: 16 hex digits per hash, comma-separated (one hash: as for images)."""
    return ",".join(f"{h:016x}" for h in hashes)


def decode_hashes(text: str) -> tuple[int, ...]:
    """The hashes of a `phash` catalog value (empty for an empty value)."""
    return tuple(int(part, 16) for part in text.split(",")) if text else ()


def max_hamming(hashes: tuple[int, ...], others: np.ndarray) -> np.ndarray:
    """Per row of `others` [N, k] (uint64): the largest Hamming distance over the k compared frames; a clip is a
    near-duplicate of a row when this is within the threshold (every compared frame is). Images: k = 1."""
    if not len(others):
        return np.empty(0, dtype=np.int64)
    xor = np.bitwise_xor(others, np.asarray(hashes, dtype=np.uint64)[None, :])
    return np.bitwise_count(xor).max(axis=1).astype(np.int64)


def content_id(kind: str, array: np.ndarray, *extra: object) -> str:
    """The asset id: a hash of the kind, the pixels (shape included) and what else shapes the file (16 hex)."""
    h = hashlib.sha256(f"{kind}|{array.shape}|{array.dtype}|{extra!r}|".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]
