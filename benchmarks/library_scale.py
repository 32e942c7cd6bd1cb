"""How a library build's cost grows with its size: 1k, 10k and 100k candidates from a small generator.

Prepares the built-in digits at --resolution in --cache (kept between runs), trains a small class-conditional
DCGAN there once (--steps), then builds a fresh library of each size in its own process (so each peak RSS is its
own), with the default funnel (top half by realism, pHash dedupe at distance 4, memorisation checks against the
training split), no videos or morphs. Prints seconds, ms per candidate and per accepted asset, peak RSS, and each
size's per-asset time as a ratio to the smallest's (the bar: within 1.5x at 100k).

    .venv/bin/python benchmarks/library_scale.py                 # 1k, 10k, 100k
    .venv/bin/python benchmarks/library_scale.py --sizes 1000 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = [
    "train.model.g_width=32",
    "train.model.d_width=32",
    "train.batch_size=64",
    "train.device=cpu",
    "tracking.enabled=false",
    "evaluate.cas=false",
    "features.epochs=3",
]
CLASSES = 10


def overrides(args: argparse.Namespace) -> list[str]:
    return [*MODEL, f"data.resolution={args.resolution}", f"train.steps={args.steps}"]


def setup(args: argparse.Namespace) -> Path:
    from ganforge.config import load_config
    from ganforge.data.prepare import prepare
    from ganforge.features import train_classifier
    from ganforge.paths import Paths
    from ganforge.training.loop import train

    root = Path(args.cache) / f"r{args.resolution}-s{args.steps}"
    done = root / ".complete"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    paths = Paths(root)
    cfg = load_config(ROOT / "params.yaml", overrides(args))
    prepare(cfg.data, paths.prepared, paths.metrics / "prepare.json", progress=False)
    train_classifier(cfg.features, paths, progress=False)
    train(cfg, paths, progress=False)
    done.touch()
    return root


def child(args: argparse.Namespace) -> None:
    """One build of --child candidates into a fresh library; prints one JSON line."""
    from ganforge.assets.build import build_library
    from ganforge.config import load_config
    from ganforge.paths import Paths

    n = args.child
    lib = f"library-{n}"
    shutil.rmtree(Path(args.root) / lib, ignore_errors=True)
    per_class = n // CLASSES
    cfg = load_config(
        ROOT / "params.yaml",
        [
            *overrides(args),
            f"library.dir={lib}",
            "library.model=checkpoint",
            f"library.images={per_class // 2}",
            "library.keep_fraction=0.5",
            "library.videos=0",
            "library.morphs=0",
            "library.batch_size=256",
        ],
    )
    t0 = time.perf_counter()
    summary = build_library(cfg, Paths(Path(args.root), library_dir=Path(lib)), progress=False)
    seconds = time.perf_counter() - t0
    m = summary.metrics
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    print(json.dumps({"candidates": m["generated"], "accepted": m["accepted"], "duplicates": m["duplicates"],
                      "near_copies": m["near_copies"], "seconds": seconds, "peak_rss_mib": rss}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--cache", default="/tmp/ganforge-library-scale")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--root", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    root = setup(args)
    print(f"generator: dcgan g32/d32, {args.steps} steps on digits at {args.resolution}px; project {root}")
    print(f"{'candidates':>10} {'accepted':>8} {'dups':>6} {'seconds':>8} {'ms/cand':>8} {'ms/asset':>9} "
          f"{'peak MiB':>8} {'ratio':>6}")  # fmt: skip
    first = None
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(n), "--root", str(root), "--resolution", str(args.resolution),
               "--steps", str(args.steps)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ}).stdout
        r = json.loads(out.strip().splitlines()[-1])
        per_asset = 1000 * r["seconds"] / max(1, r["accepted"])
        first = first or per_asset
        print(f"{r['candidates']:>10} {r['accepted']:>8} {r['duplicates']:>6} {r['seconds']:>8.1f} "
              f"{1000 * r['seconds'] / r['candidates']:>8.2f} {per_asset:>9.2f} {r['peak_rss_mib']:>8.0f} "
              f"{per_asset / first:>6.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
