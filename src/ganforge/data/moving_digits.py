"""Moving MNIST clips from the built-in digits: what the `moving_digits` source renders (see `sources`).

Moving digits (Srivastava et al. 2015): 1..`data.max_digits` of the 8x8 scikit-learn digits, upscaled to
7/16 of the canvas (28 px on 64, as in Moving MNIST) with `data.resize_filter`, each starting at a random
place with a random direction and speed (1/12..1/6 of the free range per frame), bouncing off the walls,
combined by pixel-wise max: white digits on black. Clip `i` depends only on (`data.seed`, `i`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

DIGIT_SCALE = 7 / 16  # digit side / canvas side
SPEED = (1 / 12, 1 / 6)  # pixels per frame, as a share of the free range (canvas - digit)


@dataclass(frozen=True)
class DigitClip:
    """What one moving-digits clip shows: which digits (indices into the 1,797), their classes and paths."""

    which: tuple[int, ...]
    labels: tuple[int, ...]
    positions: np.ndarray  # float64 [D, T, 2]: (y, x) of each digit's top-left corner per frame


def bounce(start: np.ndarray, velocity: np.ndarray, frames: int, limit: float) -> np.ndarray:
    """Positions [D, T, 2] of points moving at `velocity` [D, 2] from `start` [D, 2] inside [0, limit],
    reflected at the walls (the closed form of bouncing: a triangle wave of the free motion)."""
    free = start[:, None, :] + velocity[:, None, :] * np.arange(frames)[None, :, None]
    folded = np.mod(free, 2 * limit)
    return np.where(folded > limit, 2 * limit - folded, folded)


class MovingDigits:
    """Moving MNIST clips uint8 [T, R, R] from the built-in digits, deterministic from (seed, clip index)."""

    def __init__(self, resolution: int, frames: int, max_digits: int, seed: int, resize_filter: str) -> None:
        from ganforge.data.digits import load_digits_arrays

        images, labels = load_digits_arrays()
        self.frames, self.max_digits, self.seed, self.resolution = frames, max_digits, seed, resolution
        self.size = max(4, round(resolution * DIGIT_SCALE))
        self.limit = resolution - self.size
        glyphs = np.rint(images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
        method = Image.Resampling[resize_filter.upper()]
        side = (self.size, self.size)
        self.sprites = np.stack([np.asarray(Image.fromarray(g).resize(side, method)) for g in glyphs])
        self.classes = labels.astype(np.int64)

    def spec(self, index: int) -> DigitClip:
        """Clip `index`: how many digits, which ones, where they start, where they go."""
        rng = np.random.default_rng([self.seed, index])
        count = int(rng.integers(1, self.max_digits + 1))
        which = rng.integers(0, len(self.sprites), count)
        start = rng.uniform(0, self.limit, (count, 2))
        angle = rng.uniform(0, 2 * np.pi, count)
        speed = rng.uniform(*SPEED, count) * self.limit
        velocity = speed[:, None] * np.stack([np.sin(angle), np.cos(angle)], axis=1)
        return DigitClip(
            which=tuple(int(w) for w in which),
            labels=tuple(int(self.classes[w]) for w in which),
            positions=bounce(start, velocity, self.frames, self.limit),
        )

    def render(self, clip: DigitClip) -> np.ndarray:
        """uint8 [T, R, R]: the digits pasted at their rounded positions, combined by pixel-wise max."""
        t, r, s = self.frames, self.resolution, self.size
        canvas = np.zeros((t, r, r), dtype=np.uint8)
        frame = np.arange(t)[:, None, None]
        offsets = np.arange(s)
        for which, pos in zip(clip.which, np.rint(clip.positions).astype(np.int64), strict=True):
            ys = pos[:, 0, None, None] + offsets[None, :, None]
            xs = pos[:, 1, None, None] + offsets[None, None, :]
            canvas[frame, ys, xs] = np.maximum(canvas[frame, ys, xs], self.sprites[which][None])
        return canvas
