"""One training step, as a recipe: n_critic D updates, D's regularisation when due, one G update, G's
regularisation when due.

Everything D sees goes through the System's augmentation (`judge`); what the terms are is the objective's
business (`training/objective/`). Returns the step's statistics as one device tensor (no host sync), in the
order of `stat_names`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ganforge.training.system import System

BASE_STATS = ("loss_d", "loss_g", "d_real", "d_fake")  # D(x), D(G(z)) as probabilities (sigmoid of the logits)
Batch = tuple[torch.Tensor, torch.Tensor | None]  # real samples in [-1, 1] on the device, their labels


def stat_names(s: System) -> tuple[str, ...]:
    return BASE_STATS + s.objective.names + tuple(s.augment.stats())


def train_step(s: System, next_batch: Callable[[], Batch]) -> torch.Tensor:
    obj, aug = s.objective, s.augment
    step = s.step_count + 1
    extra: dict[str, torch.Tensor] = {}

    # (1) Update D: tell real samples from G's, n_critic times, each on a fresh batch
    for i in range(obj.n_critic):
        real, y = next_batch()
        z = s.noise(real.shape[0])
        with torch.set_grad_enabled(i == obj.n_critic - 1), s.autocast():  # G's graph: only the last fakes
            fake = s.G(z, y)
        with s.autocast():
            d_real = s.judge(real, y)
            d_fake = s.judge(fake.detach(), y)  # D's class head (AC-GAN) learns from real samples only
            loss_d, parts = obj.d_main(d_real, d_fake)
        s.update(s.opt_D, loss_d)
        extra |= parts
        aug.feedback(d_real.logits)  # ADA watches D's verdicts on real samples ...
        aug.step(s.step_count * obj.n_critic + i + 1, real.shape[0])  # ... and moves p every few D steps

    # (2) Regularise D, when a penalty is due (gradient penalties: fp32, outside autocast)
    if due := obj.due(step):
        loss_reg, values = obj.d_reg(due, s.judge_logits, real, fake, y)
        s.update(s.opt_D, loss_reg)
        extra |= values

    # (3) Update G: make D take its samples for real (relativistic losses compare them with real ones)
    with s.autocast():
        d_gen = s.judge(fake, y)
        d_ref = s.judge(real, y) if obj.loss.uses_real_in_g else None
        loss_g = obj.g_main(d_gen, d_ref)
    s.update(s.opt_G, loss_g)

    # (4) Regularise G, when a G penalty is due (path length: families with a mapping network; fp32)
    if g_due := obj.g_due(step):
        loss_reg, values = obj.g_reg(g_due, s.G, s.noise(real.shape[0]), y)
        s.update(s.opt_G, loss_reg)
        extra |= values

    s.update_ema()
    s.step_count += 1
    p_real = torch.stack([torch.sigmoid(h.float()).mean() for h in d_real.logits]).mean()
    p_fake = torch.stack([torch.sigmoid(h.float()).mean() for h in d_fake.logits]).mean()
    zero = torch.zeros((), device=s.device)
    stats = [loss_d.float(), loss_g.float(), p_real, p_fake]
    stats += [extra.get(name, zero).float() for name in obj.names]
    stats += [v.float() for v in aug.stats().values()]
    return torch.stack(stats).detach()
