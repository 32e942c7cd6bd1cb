"""The objective: what D and G minimise, as the terms of three phases.

- D main: the adversarial loss on D's logits for real and generated samples (summed over D's heads), plus the
  terms that read those logits: the AC-GAN class loss on real samples and LeCam.
- D regularisation: the gradient penalties that are due this step (`r1`, `r2`, `gp`), each lazily weighted.
- G main: the adversarial loss on generated samples (relativistic losses also read D's logits for real ones),
  plus the AC-GAN class loss on generated samples.
- G regularisation: the G penalties that are due (`pl`: path length, families with a mapping network).

Whatever state a term carries (LeCam's averages, the path length's mean) is a buffer of this module, so it goes
into the checkpoint with `state_dict()` and resumes exactly. Adding a loss or a regulariser is one class in
`losses.py` or `regularisers.py` and one entry in its registry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.models import DOutput
from ganforge.training.objective.losses import LOSSES, Loss
from ganforge.training.objective.regularisers import G_PENALTIES, PENALTIES, Judge, LeCam, PathLength, Penalty

__all__ = ["G_PENALTIES", "LOSSES", "PENALTIES", "DOutput", "Judge", "Loss", "Objective", "PathLength"]


class Objective(nn.Module):
    def __init__(
        self,
        loss: str,
        penalties: dict[str, tuple[float, int]],
        class_loss: float = 0.0,
        lecam: tuple[float, float] = (0.0, 0.99),
        n_critic: int = 1,
        heads: int = 1,
        g_penalties: dict[str, tuple[float, int, float]] | None = None,
    ) -> None:
        """`penalties`: name -> (weight, interval) for r1/r2/gp (weight 0 = off); `lecam`: (weight, decay);
        `g_penalties`: name -> (weight, interval, decay) for pl."""
        super().__init__()
        self.loss: Loss = LOSSES[loss]
        self.penalties = nn.ModuleList(PENALTIES[n](w, k) for n, (w, k) in penalties.items() if w > 0)
        self.class_loss = class_loss
        self.lecam = LeCam(lecam[0], lecam[1], heads) if lecam[0] > 0 else None
        self.n_critic = n_critic
        g_penalties = g_penalties or {}
        self.g_penalties = nn.ModuleList(G_PENALTIES[n](w, k, d) for n, (w, k, d) in g_penalties.items() if w > 0)

    @property
    def names(self) -> tuple[str, ...]:
        """The extra statistics `d_main`/`d_reg` report beside the losses, in order."""
        lecam = ("lecam",) if self.lecam is not None else ()
        return tuple(p.name for p in self.penalties) + lecam + tuple(p.name for p in self.g_penalties)

    def _classes(self, out: DOutput) -> torch.Tensor:
        if not self.class_loss or out.class_logits is None:
            return torch.zeros((), device=out.logits[0].device)
        return self.class_loss * F.cross_entropy(out.class_logits.float(), out.class_target)

    def d_main(self, real: DOutput, fake: DOutput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D's main loss and its parts. D's class head learns from real samples only."""
        adv = torch.stack([self.loss.d(r.float(), f.float()) for r, f in zip(real.logits, fake.logits, strict=True)])
        loss = adv.sum() + self._classes(real)
        parts = {}
        if self.lecam is not None:
            parts["lecam"] = self.lecam(real.logits, fake.logits)
            loss = loss + parts["lecam"]
        return loss, parts

    def due(self, step: int) -> list[Penalty]:
        return [p for p in self.penalties if p.due(step)]

    def d_reg(
        self, due: list[Penalty], judge: Judge, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The penalties due this step, summed (fp32, outside autocast: call it there), and each one's value."""
        parts = {p.name: p(judge, real, fake, y) for p in due}
        loss = torch.stack([p.scale() * parts[p.name] for p in due]).sum()
        return loss, {k: v.detach() for k, v in parts.items()}

    def g_due(self, step: int) -> list[PathLength]:
        return [p for p in self.g_penalties if p.due(step)]

    def g_reg(
        self, due: list[PathLength], G: nn.Module, z: torch.Tensor, y: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The G penalties due this step, summed (fp32, outside autocast), and each one's value."""
        parts = {p.name: p(G, z, y) for p in due}
        loss = torch.stack([p.scale() * parts[p.name] for p in due]).sum()
        return loss, {k: v.detach() for k, v in parts.items()}

    def g_main(self, fake: DOutput, real: DOutput | None) -> torch.Tensor:
        reals = real.logits if real is not None else (None,) * len(fake.logits)
        adv = torch.stack(
            [self.loss.g(f.float(), None if r is None else r.float()) for f, r in zip(fake.logits, reals, strict=True)]
        )
        return adv.sum() + self._classes(fake)
