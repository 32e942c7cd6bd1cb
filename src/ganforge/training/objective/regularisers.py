"""Regularisers of the discriminator, each a small module with its own weight.

Three kinds, by where they run:
- *penalties* (`r1`, `r2`, `gp`) need gradients of D with respect to its input, so they run in their own phase
  (D regularisation), in fp32 outside autocast, every `interval` steps. Lazy regularisation (Karras et al.
  2020, StyleGAN2): a penalty that runs every k-th step is weighted k times, so its average pull is the same.
- *G penalties* (`pl`, path-length regularisation) need gradients of G's output with respect to its styles, so
  they run in a G regularisation phase, also in fp32 outside autocast and lazily; only families with a mapping
  network (stylegan2) have them.
- *terms* (`lecam`) read the logits D's main phase already computed and add to D's main loss every step.

R1 and R2 follow the StyleGAN2 / R3GAN convention: the loss is gamma/2 * E||grad_x D(x)||^2 (R1 on real
samples, R2 on generated ones), so published gamma values carry over. `gp` is WGAN-GP's
lambda * E(||grad D(x_hat)|| - 1)^2 on random interpolates of real and fake (Gulrajani et al. 2017).
Gradient norms are taken per sample. Every penalty sees what D sees: its input goes through the augmentation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Judge = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, ...]]  # (x, y) -> D's logits per head


def input_grad_sq_norm(judge: Judge, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """||grad_x sum(D(x))||^2 per sample [N], with the graph kept so that the penalty can be backpropagated."""
    x = x.detach().float().requires_grad_(True)
    logits = judge(x, y)
    total = torch.stack([h.float().sum() for h in logits]).sum()
    (grad,) = torch.autograd.grad(total, x, create_graph=True)
    return grad.square().flatten(1).sum(1)


class Penalty(nn.Module):
    """A gradient penalty: `forward(judge, real, fake, y)` -> its unweighted value; `loss(...)` weighs it."""

    name = ""

    def __init__(self, weight: float, interval: int) -> None:
        super().__init__()
        self.weight = weight
        self.interval = interval

    def due(self, step: int) -> bool:
        """Runs on steps interval, 2*interval, ... (step counts from 1)."""
        return step % self.interval == 0

    def scale(self) -> float:
        return self.weight * self.interval  # lazy regularisation: k times the weight every k-th step

    def loss(self, judge: Judge, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.scale() * self(judge, real, fake, y)


class R1(Penalty):
    """Zero-centred gradient penalty on real samples (Mescheder et al. 2018): gamma/2 * E||grad D(x)||^2."""

    name = "r1"

    def scale(self) -> float:
        return 0.5 * super().scale()

    def forward(self, judge: Judge, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return input_grad_sq_norm(judge, real, y).mean()


class R2(R1):
    """Zero-centred gradient penalty on generated samples (R3GAN): gamma/2 * E||grad D(G(z))||^2."""

    name = "r2"

    def forward(self, judge: Judge, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return input_grad_sq_norm(judge, fake, y).mean()


class GradientPenalty(Penalty):
    """WGAN-GP: lambda * E(||grad D(x_hat)|| - 1)^2, x_hat = eps x + (1 - eps) G(z), eps ~ U(0, 1) per sample."""

    name = "gp"

    def forward(self, judge: Judge, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
        x_hat = eps * real.detach().float() + (1 - eps) * fake.detach().float()
        norm = input_grad_sq_norm(judge, x_hat, y).add(1e-12).sqrt()
        return (norm - 1.0).square().mean()


class LeCam(nn.Module):
    """LeCam regularisation (Tseng et al. 2021): keeps D's logits near the moving averages of the other side's,
    E[relu(D(x) - ema_fake)^2] + E[relu(ema_real - D(G(z)))^2], weighted by `weight`, every step. The two
    averages (one per D head) are buffers: checkpointed and resumed with everything else."""

    name = "lecam"

    def __init__(self, weight: float, decay: float, heads: int = 1) -> None:
        super().__init__()
        self.weight = weight
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(heads))
        self.register_buffer("ema_fake", torch.zeros(heads))

    @torch.no_grad()
    def _track(self, real: tuple[torch.Tensor, ...], fake: tuple[torch.Tensor, ...]) -> None:
        r = torch.stack([h.detach().float().mean() for h in real])
        f = torch.stack([h.detach().float().mean() for h in fake])
        self.ema_real.lerp_(r, 1.0 - self.decay)
        self.ema_fake.lerp_(f, 1.0 - self.decay)

    def forward(self, real: tuple[torch.Tensor, ...], fake: tuple[torch.Tensor, ...]) -> torch.Tensor:
        self._track(real, fake)
        terms = [
            F.relu(r.float() - self.ema_fake[i]).square().mean() + F.relu(self.ema_real[i] - f.float()).square().mean()
            for i, (r, f) in enumerate(zip(real, fake, strict=True))
        ]
        return self.weight * torch.stack(terms).sum()


class PathLength(nn.Module):
    """Path-length regularisation of G (StyleGAN2): for w = mapping(z) and random image-space directions u
    (unit variance per pixel, scaled by 1/sqrt(H W)), the length a = |J_w^T u| (J: the synthesis network's
    Jacobian) should stay at its running mean: weight * E(a - mean)^2. The mean is a buffer (checkpointed);
    `batch_shrink` runs it on a fraction of the batch, as StyleGAN2 does (it is the most expensive term)."""

    name = "pl"

    def __init__(self, weight: float, interval: int, decay: float = 0.01, batch_shrink: int = 2) -> None:
        super().__init__()
        self.weight, self.interval, self.decay, self.batch_shrink = weight, interval, decay, batch_shrink
        self.register_buffer("pl_mean", torch.zeros(()))

    def due(self, step: int) -> bool:
        return step % self.interval == 0

    def scale(self) -> float:
        return self.weight * self.interval

    def forward(self, G: nn.Module, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        n = max(1, z.shape[0] // self.batch_shrink)
        ws = G.mapping(z[:n], None if y is None else y[:n])
        img = G.synthesis(ws).float()
        u = torch.randn_like(img) / (img.shape[2] * img.shape[3]) ** 0.5
        (grad,) = torch.autograd.grad((img * u).sum(), ws, create_graph=True)
        lengths = grad.float().square().sum(2).mean(1).sqrt()
        with torch.no_grad():
            self.pl_mean.lerp_(lengths.mean(), self.decay)
        return (lengths - self.pl_mean).square().mean()


PENALTIES: dict[str, type[Penalty]] = {cls.name: cls for cls in (R1, R2, GradientPenalty)}
G_PENALTIES: dict[str, type[PathLength]] = {PathLength.name: PathLength}
