"""Clips as frames that share their clip's random parameters."""

from __future__ import annotations

import torch


def as_frames(x: torch.Tensor) -> tuple[torch.Tensor, int, tuple[int, ...] | None]:
    """[N, C, T, H, W] -> ([N*T, C, H, W], T, the clip shape); images pass through with T = 1."""
    if x.dim() == 4:
        return x, 1, None
    n, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(n * t, c, h, w), t, (n, c, t, h, w)


def as_clips(x: torch.Tensor, shape: tuple[int, ...] | None) -> torch.Tensor:
    if shape is None:
        return x
    n, c, t, h, w = shape
    return x.reshape(n, t, c, h, w).transpose(1, 2)


def per_frame(v: torch.Tensor, t: int) -> torch.Tensor:
    """Per-clip parameters [N, ...] -> one row per frame [N*T, ...]."""
    return v if t == 1 else v.repeat_interleave(t, dim=0)
