"""The base of every augmentation: a module on what D sees, with no-op hooks an adaptive one overrides."""

from __future__ import annotations

import torch
from torch import nn


class Augment(nn.Module):
    name = ""

    def __init__(self, **_: object) -> None:
        super().__init__()

    def feedback(self, real_logits: tuple[torch.Tensor, ...]) -> None:
        """D's verdicts on real samples (ADA watches them)."""

    def step(self, step: int, batch_size: int) -> None:
        """Called after D step `step` (from 1)."""

    def stats(self) -> dict[str, torch.Tensor]:
        """Values logged beside the losses."""
        return {}
