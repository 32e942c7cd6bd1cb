"""Peak memory of training on a large prepared set, loaded whole vs read from its shards, and the shard reader's
images/s against what a train step consumes.

Writes synthetic prepared sets (RGB, 20 classes, uint8 shards of 8,192, the layout `prepare` writes) of each
--sizes into --cache (kept between runs), then for each size and mode trains a small DCGAN for --steps steps in a
fresh process (`train.load_limit_gb` 0 = read from the shards, 1000 = load whole) and reports its peak resident
memory (ru_maxrss). Then: reader images/s for random batches of 64 at each --resolution (the page cache warm, as in
a long run), beside the train step's images/s at that resolution.

    .venv/bin/python benchmarks/stream_memory.py --sizes 20000 100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARD = 8192

CHILD = """
import resource, sys, time
from pathlib import Path
from ganforge.config import load_config
from ganforge.paths import Paths
from ganforge.training.loop import train
root, limit, steps = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
cfg = load_config(Path(sys.argv[4]), ["tracking.enabled=false", "train.device=cpu", f"train.steps={steps}",
                  f"train.load_limit_gb={limit}", "train.sample_every=100000", "train.checkpoint_every=100000",
                  "train.model.g_width=16", "train.model.d_width=16"])
t = time.perf_counter()
s = train(cfg, Paths(root), progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, s.images_per_sec)
"""


def make_set(out: Path, n: int, resolution: int, classes: int = 20) -> Path:
    prepared = out / "data" / "prepared"
    if (prepared / "info.json").exists():
        return out
    prepared.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shards = []
    for k, start in enumerate(range(0, n, SHARD)):
        m = min(SHARD, n - start)
        x = rng.integers(0, 256, (m, 3, resolution, resolution), dtype=np.uint8)
        shards.append(f"train-{k:05d}.npy")
        np.save(prepared / shards[-1], x)
    np.save(prepared / "train-labels.npy", rng.integers(0, classes, n).astype(np.int64))
    np.save(prepared / "test-00000.npy", rng.integers(0, 256, (64, 3, resolution, resolution), dtype=np.uint8))
    np.save(prepared / "test-labels.npy", rng.integers(0, classes, 64).astype(np.int64))
    info = {"format": 1, "kind": "image", "source": "synthetic", "resolution": resolution, "channels": 3,
            "num_classes": classes, "class_names": [f"c{i}" for i in range(classes)],
            "splits": {"train": {"count": n, "shards": shards, "labels": "train-labels.npy"},
                       "test": {"count": 64, "shards": ["test-00000.npy"], "labels": "test-labels.npy"}}}  # fmt: skip
    (prepared / "info.json").write_text(json.dumps(info))
    return out


def peak(root: Path, limit: float, steps: int) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(limit), str(steps), str(ROOT / "params.yaml")],
                         capture_output=True, text=True, check=True, cwd=root)  # fmt: skip
    kb, ips = out.stdout.split()[-2:]
    return int(kb) / 1024, float(ips)


def reader_rate(root: Path, batches: int = 200) -> float:
    import torch

    from ganforge.data.dataset import PreparedData

    reader = PreparedData.open(root / "data" / "prepared").reader("train")
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    for _ in range(batches):
        reader[torch.randint(len(reader), (64,), generator=g)]
    return batches * 64 / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--rates", type=int, nargs="+", default=[64, 256], help="resolutions for the reader's images/s")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--cache", type=Path, default=ROOT / ".ganforge-cache" / "stream_memory")
    args = ap.parse_args()
    print("| images | px | whole set (MiB) | peak RSS, loaded whole (MiB) | peak RSS, from the shards (MiB) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n in args.sizes:
        root = make_set(args.cache / f"n{n}-r{args.resolution}", n, args.resolution)
        whole, _ = peak(root, 1000.0, args.steps)
        shards, _ = peak(root, 0.0, args.steps)
        size = n * 3 * args.resolution**2 / 2**20
        print(f"| {n:,} | {args.resolution} | {size:,.0f} | {whole:,.0f} | {shards:,.0f} |", flush=True)
    print("\n| px | reader images/s (random batches of 64) | train step images/s (dcgan, width 16) | ratio |")
    print("| ---: | ---: | ---: | ---: |")
    for r in args.rates:
        root = make_set(args.cache / f"n{SHARD}-r{r}", SHARD, r)
        rate = reader_rate(root)
        _, step = peak(root, 0.0, args.steps)
        print(f"| {r} | {rate:,.0f} | {step:,.0f} | {rate / step:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
