"""What a run writes as it goes besides checkpoints: fixed-noise sample grids and the loss CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from PIL import Image

from ganforge.models import ModelSpec
from ganforge.paths import atomic_path
from ganforge.sampling import Sampler
from ganforge.training.system import System


def sample_grid(gan: System, seeds: list[int], y: torch.Tensor | None, cols: int, out: Path) -> None:
    """G_ema's samples of `seeds` (never augmented) as one PNG: the Sampler's grid (clips: one per row)."""
    grid = Sampler(gan.G_ema, batch_size=len(seeds)).grid(seeds, y, cols)
    pixels = grid.permute(1, 2, 0).numpy()  # PIL, not torchvision.io: importing torchvision costs a train ~3 s
    with atomic_path(out) as tmp:
        Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(tmp, format="PNG")


MAX_GRID_CLASSES = 32  # rows of a conditional grid: every class of a team's set (20 emoji classes), up to this


def fixed_inputs(spec: ModelSpec) -> tuple[list[int], torch.Tensor | None, int]:
    """The same samples at every snapshot, seed-addressed (seeds 0, 1, ... at psi 1: `ganforge.sampling`, so the
    pyfunc and the library give the same pixels for those seeds): one row per class (the first 32), or an 8x8 grid."""
    per_class = 1 if spec.kind == "video" else 10  # a video grid shows one clip per row
    if spec.num_classes:
        rows, cols = min(spec.num_classes, MAX_GRID_CLASSES), per_class
        y = torch.arange(rows).repeat_interleave(cols)
    else:
        rows, cols, y = 8, per_class if spec.kind == "video" else 8, None
    return list(range(rows * cols)), y, cols


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


class NoLog(LossLog):
    """The CSV of a rank other than 0 under DDP: nothing is written (rank 0 writes the job's)."""

    def __init__(self, path: Path, start_step: int, names: tuple[str, ...]) -> None:
        self.path, self.names = path, names

    def write(self, step: int, values: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass
