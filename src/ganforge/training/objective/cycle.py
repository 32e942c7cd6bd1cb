"""The translation terms beside the adversarial loss (CycleGAN, StarGAN): cycle and identity weights and the
history pool of earlier fakes (Shrivastava et al. 2017), whose images are buffers: checkpointed and resumed
like ADA's p. The step that uses them is `training/translation.py`."""

from __future__ import annotations

import torch
from torch import nn

from ganforge.models import ModelSpec


class HistoryPool(nn.Module):
    """Earlier fakes with their domains, as buffers; `query` swaps half of a batch's fakes with stored ones once
    it is full (until then it stores them and returns the batch as it is)."""

    def __init__(self, size: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, *shape))
        self.register_buffer("domains", torch.zeros(size, dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, fake: torch.Tensor, domains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.size == 0:
            return fake.detach(), domains
        fake, domains = fake.detach().clone(), domains.clone()
        n, filled = fake.shape[0], int(self.filled)
        take = min(self.size - filled, n)
        if take:
            self.images[filled : filled + take] = fake[:take].float()
            self.domains[filled : filled + take] = domains[:take]
            self.filled += take
        rest = n - take
        if rest:
            swap = torch.rand(rest, device=fake.device) < 0.5
            rows = torch.arange(take, n, device=fake.device)[swap]
            slots = torch.randint(self.size, (len(rows),), device=fake.device)
            old_x, old_d = self.images[slots].to(fake.dtype), self.domains[slots]
            self.images[slots] = fake[rows].float()
            self.domains[slots] = domains[rows]
            fake[rows], domains[rows] = old_x, old_d
        return fake, domains


class CycleTerms(nn.Module):
    """The translation terms beside the adversarial loss: cycle and identity L1 weights, the history pool."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        cfg = spec.config
        self.cycle = float(getattr(cfg, "cycle", 10.0))
        self.identity = float(getattr(cfg, "identity", 0.0))
        self.noise = float(getattr(cfg, "cycle_noise", 0.0))
        # D's class head over the data's classes (`classes`, train.class_loss > 0; else none, or StarGAN's over
        # the domains): the class a translation of class c into domain t should be, -1 for none (set_counterparts)
        classes = int(getattr(cfg, "classes", 0))
        self.by_class = classes > 0
        self.register_buffer("counterpart", torch.full((classes, spec.num_classes), -1, dtype=torch.long))
        self.pool = HistoryPool(int(getattr(cfg, "pool_size", 0)), (spec.channels, spec.resolution, spec.resolution))

    def set_counterparts(self, table: torch.Tensor) -> None:
        self.counterpart.copy_(table)
