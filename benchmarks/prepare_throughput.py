"""`prepare`'s images/s on an image folder: one decoding process against the default pool (one per core).

Writes --files JPEG and PNG images (photo-like: smooth gradients, shapes and noise, 96-320 px, mixed sizes,
in --classes uneven class folders) into --cache (kept between runs), then prepares them at --resolution, the
reference (`data.workers` 1) and the pool (`data.workers` 0) alternating for --repeats rounds, each in this
process with the page cache warm, and prints images/s and the ratio.

    .venv/bin/python benchmarks/prepare_throughput.py --files 20000
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ganforge.config import DataConfig
from ganforge.data.prepare import prepare, workers


def make_folder(root: Path, files: int, classes: int, seed: int = 0) -> None:
    """`files` images in `classes` folders of uneven size, written once (a marker says the folder is complete)."""
    done = root / f".complete-{files}-{classes}"
    if done.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    share = rng.dirichlet(np.ones(classes) * 2.0)
    counts = np.maximum(1, np.round(share * files).astype(int))
    counts[-1] += files - counts.sum()
    for c, n in enumerate(counts):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        for i in range(int(n)):
            w, h = (int(v) for v in rng.integers(96, 321, 2))
            yy, xx = np.mgrid[0:h, 0:w]
            base = rng.integers(0, 256, 3)
            grad = (base + (xx[..., None] * rng.uniform(-1, 1, 3)) + (yy[..., None] * rng.uniform(-1, 1, 3))) % 256
            pixels = (grad + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            draw = ImageDraw.Draw(image)
            for _ in range(3):
                x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
                box = (x0, y0, x0 + int(rng.integers(10, w - x0)), y0 + int(rng.integers(10, h - y0)))
                draw.ellipse(box, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            if i % 4 == 0:
                image.save(folder / f"{i:06d}.png")
            else:
                image.save(folder / f"{i:06d}.jpg", quality=90)
    done.touch()


def rate(folder: Path, resolution: int, n_workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = DataConfig(source="folder", path=str(folder), channels=3, resolution=resolution, workers=n_workers)
        start = time.perf_counter()
        summary = prepare(cfg, Path(tmp) / "prepared", Path(tmp) / "m.json", progress=False)
        seconds = time.perf_counter() - start
    return summary.files_seen / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ganforge-prepare-bench")
    args = ap.parse_args()
    folder = args.cache / f"images-{args.files}"
    start = time.perf_counter()
    make_folder(folder, args.files, args.classes)
    print(f"{args.files} files in {folder} ({time.perf_counter() - start:.0f} s to make or find)")
    pool = workers(DataConfig(source="folder", path=str(folder)))
    print(f"cores available: {len(os.sched_getaffinity(0))}; pool: {pool} processes")
    one, many = [], []
    for _ in range(args.repeats):
        one.append(rate(folder, args.resolution, 1))
        many.append(rate(folder, args.resolution, 0))
        print(f"  1 worker {one[-1]:7.0f} img/s   {pool} workers {many[-1]:7.0f} img/s")
    best1, bestn = max(one), max(many)
    print(
        f"prepare at {args.resolution} px: 1 worker {best1:.0f} img/s, {pool} workers {bestn:.0f} img/s, "
        f"ratio {bestn / best1:.2f}x"
    )


if __name__ == "__main__":
    main()
