"""MoCoGAN (Tulyakov et al. 2018): a video generator that keeps content and motion apart.

G: z = [content (z_dim) | motion noise eps_1..eps_T (motion_dim each)]. A GRU turns the noise into a motion
code m_t per frame; each frame is the DCGAN image generator applied to [content, m_t] (+ class), so the
content code fixes what is shown and the motion codes move it. Output: clips [N, C, T, H, W] in [-1, 1].
A whole clip is a function of its z (and class) alone: one seed gives one clip.
With `motion_warp="translate"` each frame is then shifted by an offset that a linear layer reads from its m_t
(a spatial transformer, Jaderberg et al. 2015; the background, -1, fills what moves in): the image generator
need not redraw a shape at every position to move it, so shapes keep their form while they travel.
`motion_warp="rigid"` goes one step further: the image generator draws one image per clip from the content code
alone and the motion codes only move it (rigid motion: sprites, camera pans; 1/T of the generator's work).

D has two heads, trained together (the losses are summed): an image discriminator (the DCGAN one, with its
packing and projection conditioning) on `image_d_frames` frames drawn at random from each clip, which
judges how each frame looks; and a 3D-convolutional video discriminator on the whole clip, which judges
how it moves. `D(x, y).logits` is (frame logits, clip logits).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganforge.models.base import DOutput, ModelSpec, labels, register
from ganforge.models.dcgan import DCGANConfig
from ganforge.models.dcgan import Discriminator as ImageDiscriminator
from ganforge.models.dcgan import Generator as ImageGenerator


class MoCoGANConfig(DCGANConfig):
    """`train.model` of family mocogan (clips): the DCGAN keys of its per-frame networks, and the motion."""

    kind: ClassVar[str] = "video"
    family: Literal["mocogan"] = "mocogan"  # type: ignore[assignment]
    motion_dim: int = Field(16, ge=1, le=1024)  # motion noise (and GRU state) per frame
    image_d_frames: int = Field(2, ge=1, le=64)  # frames per clip shown to the image discriminator
    # "translate": each frame is also shifted by an offset read from its motion code (a spatial transformer), so
    # that motion can move what the content code draws instead of redrawing it; "rigid": one image per clip from
    # the content code, which the motion codes only move (rigid motion)
    motion_warp: Literal["none", "translate", "rigid"] = "none"

    def latent_dim(self, frames: int) -> int:
        return self.z_dim + frames * self.motion_dim


def _frame_spec(spec: ModelSpec, z_dim: int) -> ModelSpec:
    """The per-frame image networks' spec: the same sizes, as an image family (z_dim may pass its bound: it can
    hold the motion code too)."""
    keys = {k: getattr(spec.config, k) for k in DCGANConfig.model_fields if k != "family"}
    config = DCGANConfig.model_construct(**{**keys, "z_dim": z_dim})
    return ModelSpec.for_data(
        config,
        resolution=spec.resolution,
        channels=spec.channels,
        num_classes=spec.num_classes,
        class_head=spec.class_head,
    )


class VideoGenerator(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        c = spec.config
        if spec.frames < 2 or c.motion_dim < 1:
            raise ValueError(f"mocogan needs frames >= 2 and motion_dim >= 1 (got {spec.frames}, {c.motion_dim})")
        self.spec = spec
        self.motion = nn.GRUCell(c.motion_dim, c.motion_dim)
        self.rigid = c.motion_warp == "rigid"  # one image per clip, moved: motion does not enter the image G
        self.frame = ImageGenerator(_frame_spec(spec, c.z_dim + (0 if self.rigid else c.motion_dim)))
        self.shift = nn.Linear(c.motion_dim, 2) if c.motion_warp != "none" else None
        if self.shift is not None:  # start near the identity: no shift until G learns to use it
            nn.init.normal_(self.shift.weight, 0.0, 0.02)
            nn.init.zeros_(self.shift.bias)

    def motion_codes(self, eps: torch.Tensor) -> torch.Tensor:
        """Motion noise [N, T, M] -> motion codes [N, T, M] (GRU from a zero state)."""
        h = eps.new_zeros(eps.shape[0], eps.shape[2])
        codes = []
        for t in range(eps.shape[1]):
            h = self.motion(eps[:, t], h)
            codes.append(h)
        return torch.stack(codes, dim=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = self.spec.config
        n, t = z.shape[0], self.spec.frames
        content, eps = z[:, : c.z_dim], z[:, c.z_dim :].reshape(n, t, c.motion_dim)
        m = self.motion_codes(eps)
        if self.rigid:  # one image per clip, repeated for its frames (then moved)
            frames = self.frame(content, y).repeat_interleave(t, dim=0)  # [N*T, C, H, W]
        else:
            per_frame = torch.cat([content[:, None].expand(n, t, c.z_dim), m.to(content.dtype)], dim=2)
            y_frames = None if y is None else y.repeat_interleave(t, dim=0)  # indices [N] or weights [N, K]
            frames = self.frame(per_frame.reshape(n * t, -1), y_frames)  # [N*T, C, H, W]
        if self.shift is not None:
            frames = self.translate(frames, self.shift(m.reshape(n * t, -1).to(self.shift.weight.dtype)))
        return frames.reshape(n, t, *frames.shape[1:]).transpose(1, 2)  # [N, C, T, H, W]

    @staticmethod
    def translate(frames: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """Shift frames [B, C, H, W] by tanh(offset) [B, 2] (x, y) in units of half the frame (up to the edge);
        what comes in is background (-1). Bilinear, so differentiable in the offsets."""
        b = frames.shape[0]
        theta = frames.new_zeros(b, 2, 3, dtype=torch.float32)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, :, 2] = -torch.tanh(offset.float())  # the grid samples the source at x - offset
        grid = F.affine_grid(theta, list(frames.shape), align_corners=False)
        moved = F.grid_sample(frames.float() + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return (moved - 1.0).to(frames.dtype)


class ClipDiscriminator(nn.Module):
    """3D convolutions (4x4x4, stride 2 in time and space) down to 4x4 pixels, then one logit per clip;
    projection conditioning. Time halves with space while at least 4 frames are left."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        steps = int(math.log2(spec.resolution)) - 2
        widths = [min(spec.config.d_width * 2**i, spec.config.max_channels) for i in range(steps)]
        layers: list[nn.Module] = []
        c_in, t = spec.channels, spec.frames
        for w in widths:
            kt, st, pt = (4, 2, 1) if t >= 4 else (1, 1, 0)  # halve time while at least 4 frames are left
            layers += [nn.Conv3d(c_in, w, (kt, 4, 4), (st, 2, 2), (pt, 1, 1)), nn.LeakyReLU(0.2)]
            t = (t + 2 * pt - kt) // st + 1
            c_in = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv3d(c_in, 1, (t, 4, 4))
        self.embed = nn.Embedding(spec.num_classes, c_in) if spec.num_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv3d | nn.Embedding):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.utils.parametrizations.spectral_norm(m)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        out = self.head(h).flatten()
        if self.embed is not None:
            out = out + (self.embed(labels(y, "discriminator")) * h.sum(dim=(2, 3, 4))).sum(dim=1)
        return out


class VideoDiscriminator(nn.Module):
    """(frame logits, clip logits): the image D on frames drawn at random from each clip, the clip D on clips."""

    num_heads = 2  # DOutput.logits: frames, clips (terms with per-head state, like LeCam, size themselves by it)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.image = ImageDiscriminator(_frame_spec(spec, spec.config.z_dim))
        self.video = ClipDiscriminator(spec)  # whole clips, unpacked

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """`image_d_frames` random frames per clip, frame-major: [K*N, C, H, W], so that consecutive rows
        (the image D's packs) are different clips, as consecutive clips are for PacGAN."""
        n, _, t = x.shape[:3]
        k = self.spec.config.image_d_frames
        idx = torch.randint(t, (k, n), device=x.device)
        return x.permute(2, 0, 1, 3, 4)[idx, torch.arange(n, device=x.device)[None, :]].flatten(0, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        """Logits (frame logits, clip logits); with a class head, the image head's class logits on its frames
        and the frames' labels."""
        y_frames = None if y is None else y.repeat(self.spec.config.image_d_frames)
        frame = self.image(self.frames(x), y_frames)
        return DOutput((*frame.logits, self.video(x, y)), frame.class_logits, frame.class_target)


@register(MoCoGANConfig)
def build(spec: ModelSpec) -> nn.ModuleDict:
    return nn.ModuleDict({"G": VideoGenerator(spec), "D": VideoDiscriminator(spec)})
