"""DiffAugment (Zhao et al. 2020): cheap differentiable augmentations applied to every real and generated
sample D sees, always (no probability). Policies, combinable: `color` (brightness, saturation, contrast),
`translation` (shift by up to 1/8 of the side, zero fill), `cutout` (a square of half the side set to 0)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.training.augment.base import Augment
from ganforge.training.augment.frames import as_clips, as_frames, per_frame


def color(x: torch.Tensor, t: int) -> torch.Tensor:
    n = x.shape[0] // t
    u = per_frame(torch.rand(n, 3, 1, 1, 1, device=x.device, dtype=x.dtype), t)
    x = x + (u[:, 0] - 0.5)  # brightness
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (u[:, 1] * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (u[:, 2] + 0.5) + mean  # contrast


def _shift(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Move each image by whole pixels (dx, dy) [B], zero fill, through a nearest-neighbour grid (exact)."""
    b, _, h, w = x.shape
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -2.0 * dx.float() / w
    theta[:, 1, 2] = -2.0 * dy.float() / h
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False).to(x.dtype)


def translation(x: torch.Tensor, t: int, ratio: float = 0.125) -> torch.Tensor:
    n, h, w = x.shape[0] // t, x.shape[2], x.shape[3]
    sx, sy = int(w * ratio + 0.5), int(h * ratio + 0.5)
    dx = per_frame(torch.randint(-sx, sx + 1, (n,), device=x.device), t)
    dy = per_frame(torch.randint(-sy, sy + 1, (n,), device=x.device), t)
    return _shift(x, dx, dy)


def cutout(x: torch.Tensor, t: int, ratio: float = 0.5) -> torch.Tensor:
    n, h, w = x.shape[0] // t, x.shape[2], x.shape[3]
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = per_frame(torch.randint(0, h + (1 - ch % 2), (n,), device=x.device), t)
    cx = per_frame(torch.randint(0, w + (1 - cw % 2), (n,), device=x.device), t)
    ys = torch.arange(h, device=x.device)[None, :] - (cy[:, None] - ch // 2)
    xs = torch.arange(w, device=x.device)[None, :] - (cx[:, None] - cw // 2)
    inside = ((ys >= 0) & (ys < ch))[:, :, None] & ((xs >= 0) & (xs < cw))[:, None, :]
    return x * (~inside)[:, None].to(x.dtype)


POLICIES = {"color": color, "translation": translation, "cutout": cutout}


class DiffAugment(Augment):
    name = "diffaugment"

    def __init__(self, policy: tuple[str, ...] = ("color", "translation", "cutout"), **_: object) -> None:
        super().__init__()
        self.policy = tuple(policy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames, t, shape = as_frames(x)
        for name in self.policy:
            frames = POLICIES[name](frames, t)
        return as_clips(frames, shape).contiguous(memory_format=_format(x))


def _format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
