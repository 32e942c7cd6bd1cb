"""Seed-addressed latents: the same (seed, truncation) gives the same z in every process and batch.

Truncation (psi < 1) follows BigGAN (Brock et al. 2019): z is drawn from a standard normal truncated to
|z_i| <= 2 (out-of-range entries are redrawn from the same seeded generator) and scaled by psi. psi = 1 is the
plain, untruncated normal. Used by the library, the MLflow sampler (ganforge.serving) and video walks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

TRUNCATION_BOUND = 2.0


def latent(seed: int, z_dim: int, psi: float = 1.0) -> torch.Tensor:
    """The latent [z_dim] of one seed at truncation psi (0 < psi <= 1)."""
    if not 0.0 < psi <= 1.0:
        raise ValueError(f"truncation psi must be in (0, 1], got {psi}")
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(z_dim, generator=g)
    if psi < 1.0:
        outside = z.abs() > TRUNCATION_BOUND
        while outside.any():
            z[outside] = torch.randn(int(outside.sum()), generator=g)
            outside = z.abs() > TRUNCATION_BOUND
        z = z * psi
    return z


def latents(seeds: Sequence[int], z_dim: int, psi: float = 1.0) -> torch.Tensor:
    """Latents [len(seeds), z_dim], row i from seeds[i] alone."""
    if not len(seeds):
        return torch.empty(0, z_dim)
    return torch.stack([latent(s, z_dim, psi) for s in seeds])


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
