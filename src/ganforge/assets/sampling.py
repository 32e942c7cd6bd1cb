"""Latent paths for the library's videos: slerp walks through keyframe latents and class morphs.

The keyframe latents themselves come from the one seed-addressed sampler (`ganforge.sampling`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from a [D] to b [D] at fractions t [T] -> [T, D] (linear when a, b are parallel)."""
    t = t.to(a.dtype)[:, None]
    na, nb = a.norm(), b.norm()
    cos = torch.dot(a / na, b / nb).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def walk(keys: torch.Tensor, frames_per_key: int) -> torch.Tensor:
    """A closed loop through keyframe latents [K, D]: slerp from each to the next (the last back to the first),
    `frames_per_key` frames per leg, keyframe included, next keyframe excluded -> [K * frames_per_key, D]."""
    t = torch.arange(frames_per_key, dtype=torch.float64) / frames_per_key
    legs = [slerp(keys[i].double(), keys[(i + 1) % len(keys)].double(), t) for i in range(len(keys))]
    return torch.cat(legs).to(keys.dtype)


def morph(classes: Sequence[int], num_classes: int, frames_per_key: int) -> torch.Tensor:
    """Class weights [len(classes) * frames_per_key, num_classes] blending linearly from each class to the next
    (a closed loop): soft labels for a conditional generator, `G(z, weights)`."""
    t = torch.arange(frames_per_key, dtype=torch.float32)[:, None] / frames_per_key
    eye = torch.eye(num_classes)
    legs = [(1 - t) * eye[c] + t * eye[classes[(i + 1) % len(classes)]] for i, c in enumerate(classes)]
    return torch.cat(legs)
