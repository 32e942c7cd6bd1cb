"""The one sampler: generator output addressed by seeds, with one meaning of truncation and one conversion to
pixels. Training grids, evaluate's fake samples, the library's candidates and the MLflow pyfunc
(ganforge.serving) all draw through it, so the same (weights, seed, class, psi) gives the same pixels everywhere.

- A seed's latent: `spec.latent_dim` values from `torch.Generator().manual_seed(seed)` (a video generator's content
  and motion noise both), the same in every process and whatever else is in the batch.
- Truncation psi (BigGAN, Brock et al. 2019): z is drawn from a standard normal truncated to |z_i| <= 2
  (out-of-range entries are redrawn from the same seeded generator) and scaled by psi; psi = 1 is the plain,
  untruncated normal. A generator with a mapping network (`G.truncates_in_w`: stylegan2) is truncated where
  StyleGAN truncates instead: z is the seed's plain normal and w moves towards the mean w by psi.
- Pixels: `to_uint8` maps [-1, 1] to 0..255 as round((x + 1) * 127.5) (ties to even), clamped.

Samples are deterministic per seed for a generator in eval mode (no batch statistics), on a given device.
This module needs torch alone (it ships inside the MLflow pyfunc, whose environment pins torch, numpy, pandas).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ganforge.models import ModelSpec

TRUNCATION_BOUND = 2.0
BATCH = 32  # rows per forward pass by default: bounds memory, not results

Psi = float | Sequence[float]
# class indices [N] (or one int for all rows), or class weights [N, num_classes] (blends, e.g. class morphs)
Classes = int | Sequence[int] | torch.Tensor | None


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


def latents(seeds: Sequence[int], z_dim: int, psi: Psi = 1.0) -> torch.Tensor:
    """Latents [len(seeds), z_dim], row i from seeds[i] alone (psi: one for all rows, or one per row)."""
    seeds = list(seeds)
    psis = [float(psi)] * len(seeds) if isinstance(psi, int | float) else [float(p) for p in psi]
    if len(psis) != len(seeds):
        raise ValueError(f"{len(seeds)} seeds but {len(psis)} truncation values")
    if not seeds:
        return torch.empty(0, z_dim)
    return torch.stack([latent(s, z_dim, p) for s, p in zip(seeds, psis, strict=True)])


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 0..255 (same shape, on x's device)."""
    return x.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def tile(x: torch.Tensor, cols: int, pad: int = 1) -> torch.Tensor:
    """uint8 images [N, C, H, W] -> one uint8 grid [C, H', W'] of `cols` columns (fewer when N < cols) with `pad`
    black pixels around and between them; clips [N, C, T, H, W] -> one clip per row, its frames left to right."""
    if x.dim() == 5:
        cols = x.shape[2]
        x = x.transpose(1, 2).flatten(0, 1)
    n, c, h, w = x.shape
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    grid = x.new_zeros(c, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i, image in enumerate(x):
        top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        grid[:, top : top + h, left : left + w] = image
    return grid


class Sampler:
    """Seed-addressed sampling from a generator (`G(z, y)` in [-1, 1]; `spec` defaults to `G.spec`),
    `batch_size` rows per forward pass on `device` (default: where G's weights are); results on the CPU."""

    def __init__(
        self,
        G: nn.Module,
        spec: ModelSpec | None = None,
        batch_size: int = BATCH,
        device: torch.device | str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.G = G
        self.spec = spec if spec is not None else G.spec
        self.batch_size = batch_size
        if device is None:
            device = next((p.device for p in G.parameters()), torch.device("cpu"))
        self.device = torch.device(device)

    def latents(self, seeds: Sequence[int], psi: Psi = 1.0) -> torch.Tensor:
        """Latents [len(seeds), spec.latent_dim] (see the module docstring)."""
        return latents(seeds, self.spec.latent_dim, psi)

    def labels(self, classes: Classes, n: int) -> torch.Tensor | None:
        """What G gets as y for n rows: None for an unconditional generator (classes are ignored), else class
        indices [n] (an int: the same class for every row) or the class weights given."""
        if not self.spec.num_classes:
            return None
        if classes is None:
            raise ValueError(f"this generator is class-conditional ({self.spec.num_classes} classes): give classes")
        if isinstance(classes, int):
            return torch.full((n,), classes, dtype=torch.long)
        y = classes if isinstance(classes, torch.Tensor) else torch.tensor(list(classes), dtype=torch.long)
        if len(y) != n:
            raise ValueError(f"{n} rows but {len(y)} classes")
        return y

    def images(self, seeds: Sequence[int], classes: Classes = None, psi: Psi = 1.0) -> torch.Tensor:
        """Float samples in [-1, 1]: images [N, C, H, W] or clips [N, C, T, H, W], row i from seeds[i]."""
        return self._sample(seeds, classes, psi, uint8=False)

    def uint8(self, seeds: Sequence[int], classes: Classes = None, psi: Psi = 1.0) -> torch.Tensor:
        """As `images`, as uint8 pixels (`to_uint8`)."""
        return self._sample(seeds, classes, psi, uint8=True)

    def _sample(self, seeds: Sequence[int], classes: Classes, psi: Psi, *, uint8: bool) -> torch.Tensor:
        y = self.labels(classes, len(seeds))
        if not getattr(self.G, "truncates_in_w", False):
            return self.decode(self.latents(seeds, psi), y, uint8=uint8)
        seeds = list(seeds)
        psis = torch.tensor([float(psi)] * len(seeds) if isinstance(psi, int | float) else [float(p) for p in psi])
        if len(psis) != len(seeds) or not ((psis > 0) & (psis <= 1)).all():
            self.latents(seeds, psi)  # the same errors as truncation in z
        return self.decode(self.latents(seeds), y, uint8=uint8, psi=psis)

    def grid(self, seeds: Sequence[int], classes: Classes = None, cols: int = 8, psi: Psi = 1.0) -> torch.Tensor:
        """The uint8 samples of `seeds` tiled into one image [C, H', W'] (`tile`): cell i is seeds[i]."""
        return tile(self.uint8(seeds, classes, psi), cols)

    @torch.inference_mode()
    def decode(
        self, z: torch.Tensor, y: torch.Tensor | None = None, *, uint8: bool = False, psi: torch.Tensor | None = None
    ) -> torch.Tensor:
        """G on given latents z [N, latent_dim] (latent walks, morphs) and y (None, indices or weights [N, K]),
        `batch_size` rows at a time: float in [-1, 1], or uint8 pixels. `psi` [N]: truncation in w, for a
        generator that `truncates_in_w`."""
        out = []
        for i in range(0, len(z), self.batch_size):
            zi = z[i : i + self.batch_size].to(self.device)
            yi = None if y is None else y[i : i + self.batch_size].to(self.device)
            kw = {} if psi is None else {"psi": psi[i : i + self.batch_size].to(self.device)}
            x = self.G(zi, yi, **kw)
            out.append((to_uint8(x) if uint8 else x.float()).cpu())
        if out:
            return torch.cat(out)
        s = self.spec
        shape = (0, s.channels, *([s.frames] if s.kind == "video" else []), s.resolution, s.resolution)
        return torch.empty(shape, dtype=torch.uint8 if uint8 else torch.float32)


@torch.no_grad()
def translate(G: nn.Module, images: torch.Tensor, target: int | Sequence[int] | torch.Tensor,
              batch_size: int = BATCH) -> torch.Tensor:  # fmt: skip
    """A translator's output (`G(x, target)`: cyclegan, stargan) for uint8 images [N, C, H, W] as uint8, `target`
    the domain index of each row (or one for all), `batch_size` rows per forward pass; the row's result depends
    on that row alone (instance norm, no batch statistics). Training grids, evaluate, `ganforge translate` and
    the pyfunc all translate through here."""
    device = next(G.parameters()).device
    n = len(images)
    t = torch.full((n,), target, dtype=torch.long) if isinstance(target, int) else torch.as_tensor(target).long()
    if t.shape != (n,):
        raise ValueError(f"expected one target domain per image ({n}), got {list(t.shape)}")
    out = []
    for i in range(0, n, batch_size):
        x = images[i : i + batch_size].to(device).float().mul(2 / 255).sub(1)
        out.append(to_uint8(G(x, t[i : i + batch_size].to(device)).float()).cpu())
    return torch.cat(out) if out else images.new_zeros((0, *images.shape[1:]))
