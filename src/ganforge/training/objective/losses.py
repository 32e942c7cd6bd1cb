"""Adversarial losses on raw logits. One small class per loss, registered in `LOSSES` by `train.loss`.

`d(real, fake)` is D's loss; `g(fake, real)` is G's (only relativistic losses read `real`: `uses_real_in_g`).
Logits, never Sigmoid + BCELoss: softplus is the stable form of -log(sigmoid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Loss:
    name = ""
    uses_real_in_g = False  # G's loss needs D(real) too (relativistic pairing)

    def d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


class NonSaturating(Loss):
    """-log D(x) - log(1 - D(G(z))) for D; -log D(G(z)) for G (Goodfellow et al. 2014)."""

    name = "nonsat"

    def d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def g(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        return F.softplus(-fake).mean()


class Hinge(Loss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): D pushes real logits over +1 and fake under -1."""

    name = "hinge"

    def d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()

    def g(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        return -fake.mean()


class Wasserstein(Loss):
    """WGAN critic loss (Arjovsky et al. 2017): E[D(G(z))] - E[D(x)]; pair it with `gp` (WGAN-GP) and n_critic."""

    name = "wgan"

    def d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return fake.mean() - real.mean()

    def g(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        return -fake.mean()


class Relativistic(Loss):
    """Relativistic pairing (Jolicoeur-Martineau 2019; RpGAN in Huang et al. 2024): D judges each fake against
    a real one, softplus(D(G(z)) - D(x)); G the other way round. Real and fake logits are paired row by row."""

    name = "rpgan"
    uses_real_in_g = True

    def d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(fake - real).mean()

    def g(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        if real is None:
            raise ValueError("rpgan: G's loss needs D's logits on real samples")
        return F.softplus(real - fake).mean()


class LeastSquares(Loss):
    """Least squares (Mao et al. 2017), 0/1 targets: 1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2; G: 1/2 (D(G(z)) - 1)^2."""

    name = "lsgan"

    def d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((real - 1.0).square().mean() + fake.square().mean())

    def g(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        return 0.5 * (fake - 1.0).square().mean()


LOSSES: dict[str, Loss] = {cls.name: cls() for cls in (NonSaturating, Hinge, Wasserstein, Relativistic, LeastSquares)}
