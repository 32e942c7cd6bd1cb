"""What a run writes as it goes besides checkpoints: fixed-noise sample grids and the loss CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from torchvision.utils import save_image

from ganforge.models import ModelSpec
from ganforge.paths import atomic_path
from ganforge.training.system import System


def sample_grid(gan: System, z: torch.Tensor, y: torch.Tensor | None, cols: int, out: Path) -> None:
    with torch.no_grad():
        images = gan.G_ema(z.to(gan.device), None if y is None else y.to(gan.device)).float().cpu()
    if images.dim() == 5:  # clips [N, C, T, H, W]: one clip per row, its frames left to right
        cols = images.shape[2]
        images = images.transpose(1, 2).flatten(0, 1)
    with atomic_path(out) as tmp:
        save_image(images, tmp, nrow=cols, normalize=True, value_range=(-1, 1), padding=1, format="png")


def fixed_inputs(spec: ModelSpec, seed: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """The same noise (and labels) at every snapshot: one row per class, or an 8x8 grid."""
    g = torch.Generator().manual_seed(seed + 7919)
    per_class = 1 if spec.kind == "video" else 10  # a video grid shows one clip per row
    if spec.num_classes:
        rows, cols = min(spec.num_classes, 16), per_class
        y = torch.arange(rows).repeat_interleave(cols)
    else:
        rows, cols, y = 8, per_class if spec.kind == "video" else 8, None
    return torch.randn(rows * cols, spec.latent_dim, generator=g), y, cols


class LossLog:
    """plots/train_losses.csv: one row per log interval (means over the interval)."""

    def __init__(self, path: Path, start_step: int, names: tuple[str, ...]) -> None:
        self.path = path
        self.names = names
        rows: list[list[str]] = []
        if start_step and path.exists():
            with path.open(newline="") as f:
                rows = [r for r in list(csv.reader(f))[1:] if r and int(r[0]) <= start_step]
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", *names])
            w.writerows(rows)
        self.file = path.open("a", newline="")
        self.writer = csv.writer(self.file)

    def write(self, step: int, values: dict[str, float]) -> None:
        self.writer.writerow([step, *(f"{values[k]:.6g}" for k in self.names)])
        self.file.flush()

    def close(self) -> None:
        self.file.close()
