"""Augmentation of everything the discriminator sees (real and generated samples, in every phase), never of
what users get: grids, evaluation, the library and serving draw from G directly.

An augmentation is a module `forward(x) -> x` on images [N, C, H, W] or clips [N, C, T, H, W] in [-1, 1] (a
clip keeps one set of parameters for all its frames); it must be differentiable in x, since G learns through
it. `feedback(real_logits)` lets an adaptive one watch D (ADA); `step(n)` is called after each D step. State
(ADA's p) lives in buffers, so it is checkpointed and resumed with the rest of the System.
Adding one is a file here with a class and an entry in `AUGMENTS`.
"""

from __future__ import annotations

import torch

from ganforge.training.augment.ada import ADA
from ganforge.training.augment.base import Augment
from ganforge.training.augment.diffaugment import DiffAugment
from ganforge.training.augment.frames import as_frames


class NoAugment(Augment):
    name = "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


AUGMENTS = {"none": NoAugment, "diffaugment": DiffAugment, "ada": ADA}

__all__ = ["ADA", "AUGMENTS", "Augment", "DiffAugment", "NoAugment", "as_frames"]
