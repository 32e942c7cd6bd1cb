"""ADA (Karras et al. 2020, StyleGAN2-ADA): augmentations applied with probability p each, where p follows D.

Every `interval` D steps, r_t = E[sign(D(x_real))] over those steps is compared with `target` (0.6): when D is
too sure of the reals (overfitting), p rises; otherwise it falls, by batch * interval / (speed_kimg * 1000) per
adjustment, so p can cross 0..1 in `speed_kimg` thousand real images. Below p ~ 0.8 the transforms do not leak
into G's samples (each is drawn from a distribution D can undo). `p` is a buffer: it is checkpointed, logged and
resumed exactly.

The transforms (the "bgc" pipeline): x-flip, 90-degree rotations, integer translation, isotropic scaling,
rotation, anisotropic scaling, fractional translation (one affine warp per sample, bilinear, reflected at the
edges), then brightness, contrast, luma flip, hue rotation and saturation (one colour matrix per sample; the
last three need RGB). A clip keeps one draw for all its frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ganforge.training.augment.base import Augment
from ganforge.training.augment.frames import as_clips, as_frames, per_frame


def _rot(theta: torch.Tensor) -> torch.Tensor:
    c, s, z, o = theta.cos(), theta.sin(), torch.zeros_like(theta), torch.ones_like(theta)
    return torch.stack([c, -s, z, s, c, z, z, z, o], dim=1).view(-1, 3, 3)


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    z, o = torch.zeros_like(sx), torch.ones_like(sx)
    return torch.stack([sx, z, z, z, sy, z, z, z, o], dim=1).view(-1, 3, 3)


def _move(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    z, o = torch.zeros_like(tx), torch.ones_like(tx)
    return torch.stack([o, z, tx, z, o, ty, z, z, o], dim=1).view(-1, 3, 3)


def _when(p: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """Which of n samples get a transform that is applied with probability p."""
    return torch.rand(n, device=device) < p


def geometric(n: int, p: torch.Tensor, device: torch.device, size: int) -> torch.Tensor:
    """Per-sample 3x3 matrices mapping output to input coordinates in [-1, 1] (identity where not drawn);
    `size` (pixels) makes the integer translation whole pixels."""
    m = torch.eye(3, device=device).expand(n, 3, 3)
    one = torch.ones(n, device=device)

    def pick(values: torch.Tensor, neutral: torch.Tensor) -> torch.Tensor:
        return torch.where(_when(p, n, device), values, neutral)

    flip = pick(1 - 2 * torch.randint(2, (n,), device=device).float(), one)
    m = m @ _scale(flip, one)
    m = m @ _rot(pick(torch.randint(4, (n,), device=device).float() * (math.pi / 2), 0 * one))

    def whole_pixels() -> torch.Tensor:  # up to 1/8 of the side, in whole pixels, as a [-1, 1] offset
        return torch.round((torch.rand(n, device=device) * 2 - 1) * 0.125 * size) * (2 / size)

    m = m @ _move(pick(whole_pixels(), 0 * one), pick(whole_pixels(), 0 * one))
    m = m @ _scale(*([pick(torch.exp2(torch.randn(n, device=device) * 0.2), one)] * 2))
    m = m @ _rot(pick((torch.rand(n, device=device) * 2 - 1) * math.pi, 0 * one))
    a = pick(torch.exp2(torch.randn(n, device=device) * 0.2), one)
    m = m @ _scale(a, 1 / a)
    return m @ _move(*(pick(torch.randn(n, device=device) * 0.125 * 2, 0 * one) for _ in range(2)))


def colour(n: int, channels: int, p: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Per-sample 4x4 colour matrices on (r, g, b, 1) (grayscale: brightness and contrast on channel 0)."""
    eye = torch.eye(4, device=device)
    m = eye.expand(n, 4, 4)
    zero, one = torch.zeros(n, device=device), torch.ones(n, device=device)

    def pick(values: torch.Tensor, neutral: torch.Tensor) -> torch.Tensor:
        return torch.where(_when(p, n, device), values, neutral)

    b = pick(torch.randn(n, device=device) * 0.2, zero)
    t = eye.repeat(n, 1, 1)
    t[:, :3, 3] = b[:, None]
    m = t @ m
    c = pick(torch.exp2(torch.randn(n, device=device) * 0.5), one)
    m = torch.diag_embed(torch.stack([c, c, c, one], dim=1)) @ m
    if channels == 3:
        v = torch.tensor([1.0, 1.0, 1.0, 0.0], device=device) / math.sqrt(3)
        vv = torch.outer(v, v)
        flip = pick(torch.randint(2, (n,), device=device).float(), zero)
        m = (eye - 2 * vv * flip[:, None, None]) @ m
        theta = pick((torch.rand(n, device=device) * 2 - 1) * math.pi, zero)
        m = _rot3(v[:3], theta) @ m
        s = pick(torch.exp2(torch.randn(n, device=device) * 1.0), one)
        m = (vv + (eye - vv) * s[:, None, None]) @ m
    return m


def _rot3(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotations by theta [N] about a unit axis [3], as 4x4 matrices (Rodrigues)."""
    x, y, z = axis
    k = torch.tensor([[0, -z, y], [z, 0, -x], [-y, x, 0]], device=theta.device)
    s, c = theta.sin()[:, None, None], theta.cos()[:, None, None]
    r = torch.eye(3, device=theta.device) + s * k + (1 - c) * (k @ k)
    out = torch.eye(4, device=theta.device).repeat(len(theta), 1, 1)
    out[:, :3, :3] = r
    return out


class ADA(Augment):
    name = "ada"

    def __init__(self, target: float = 0.6, interval: int = 4, speed_kimg: float = 100.0, p: float = 0.0,
                 adaptive: bool = True, **_: object) -> None:  # fmt: skip
        super().__init__()
        self.target = target
        self.interval = interval
        self.speed_kimg = speed_kimg
        self.adaptive = adaptive
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("rt", torch.tensor(0.0))  # the last r_t estimate
        self.register_buffer("sign_sum", torch.tensor(0.0))
        self.register_buffer("sign_n", torch.tensor(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames, t, shape = as_frames(x)
        n, c = frames.shape[0] // t, frames.shape[1]
        dev = frames.device
        g = per_frame(geometric(n, self.p, dev, frames.shape[-1]), t)
        grid = F.affine_grid(g[:, :2, :], list(frames.shape), align_corners=False)
        out = F.grid_sample(frames.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        cm = per_frame(colour(n, c, self.p, dev), t)
        if c == 3:
            out = torch.einsum("nij,njhw->nihw", cm[:, :3, :3], out) + cm[:, :3, 3, None, None]
        else:
            out = out * cm[:, 0, 0, None, None, None] + cm[:, 0, 3, None, None, None]
        out = as_clips(out.to(x.dtype), shape)
        return out.contiguous(memory_format=torch.channels_last) if _nhwc(x) else out.contiguous()

    @torch.no_grad()
    def feedback(self, real_logits: tuple[torch.Tensor, ...]) -> None:
        """Fold D's verdicts on real samples into this interval's r_t (on the device: no host sync)."""
        if self.adaptive:
            signs = torch.cat([h.detach().float().flatten().sign() for h in real_logits])
            self.sign_sum.add_(signs.sum())
            self.sign_n.add_(signs.numel())

    @torch.no_grad()
    def step(self, step: int, batch_size: int) -> None:
        """After D step `step` (from 1): every `interval` steps, move p towards keeping r_t at the target."""
        if not self.adaptive or step % self.interval:
            return
        self.rt.copy_(self.sign_sum / self.sign_n.clamp(min=1))
        adjust = batch_size * self.interval / (self.speed_kimg * 1000)
        self.p.add_(torch.sign(self.rt - self.target) * adjust).clamp_(0.0, 1.0)
        self.sign_sum.zero_()
        self.sign_n.zero_()

    def stats(self) -> dict[str, torch.Tensor]:
        return {"ada_p": self.p, "ada_rt": self.rt}


def _nhwc(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
