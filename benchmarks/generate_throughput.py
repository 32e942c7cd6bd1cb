"""Library generation throughput: candidates generated *and scored* per second, batched vs one at a time.

Both sides do the whole per-candidate work of a library build on the demo's own files (`make demo` first):
the seed's latent (truncated normal, psi 0.8), the EMA generator, quantisation to uint8, the evaluation
classifier's features, the realism score and nearest training image (features and pixels) against the 1,576
training digits, and the discriminator's logit.

- **batched** is what `ganforge library build` runs: `Scorer.sampler.uint8` + `Scorer.score`, `library.batch_size`
  candidates per forward pass, under `torch.inference_mode()`.
- **naive** is the loop a script writes first: for each seed, one image through G, one through the classifier,
  distances of that one image to the training set, one D call; under `torch.no_grad()`.

Both run in this process and take turns for `--rounds` rounds (order swapped every round). images/s per round;
the table shows the median and range; ratio = median(batched) / median(naive). The last line is `ratio X.XX`.

    .venv/bin/python benchmarks/generate_throughput.py [--n-batched 2000] [--n-naive 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from ganforge.assets import scoring
from ganforge.assets.build import Scorer
from ganforge.assets.source import from_checkpoint
from ganforge.config import load_config
from ganforge.paths import Paths
from ganforge.sampling import latent, to_uint8

PSI = 0.8


def batched(scorer: Scorer, seeds: list[int], num_classes: int) -> None:
    for i in range(0, len(seeds), scorer.batch):
        chunk = seeds[i : i + scorer.batch]
        y = torch.tensor([s % num_classes for s in chunk]) if num_classes else None
        x = scorer.sampler.uint8(chunk, y, PSI)
        scorer.score(x, y)


def naive(scorer: Scorer, seeds: list[int], num_classes: int) -> None:
    src, real = scorer.src, scorer.real
    with torch.no_grad():
        for s in seeds:
            y = torch.tensor([s % num_classes]) if num_classes else None
            x = src.G(latent(s, src.spec.latent_dim, PSI)[None], y)
            x = to_uint8(x)
            feats, _ = scorer.extract(x)
            scoring.compare(feats, x, real)
            if src.D is not None:
                scoring.discriminator_logits(src.D, x, y)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-batched", type=int, default=2000)
    ap.add_argument("--n-naive", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    paths = Paths(Path("."))
    if not (paths.checkpoint.exists() and paths.classifier.exists() and paths.prepared.exists()):
        print("run `make demo` first: this benchmark uses its checkpoint, classifier and prepared data")
        return 2
    cfg = load_config("params.yaml", ["library.model=checkpoint"])
    scorer = Scorer(cfg, paths, from_checkpoint(paths.checkpoint, paths))
    k = scorer.src.spec.num_classes
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
        f"G {scorer.src.spec.resolution}x{scorer.src.spec.resolution}, batch {scorer.batch}, "
        f"{len(scorer.real.features)} training images"
    )
    batched(scorer, list(range(scorer.batch)), k)  # warm-up
    naive(scorer, list(range(20)), k)
    rates: dict[str, list[float]] = {"naive": [], "batched": []}
    for r in range(args.rounds):
        order = [("batched", batched, args.n_batched), ("naive", naive, args.n_naive)]
        for name, fn, n in order if r % 2 == 0 else order[::-1]:
            seeds = list(range(10_000 * (r + 1), 10_000 * (r + 1) + n))
            t0 = time.perf_counter()
            fn(scorer, seeds, k)
            rates[name].append(n / (time.perf_counter() - t0))
    ref = statistics.median(rates["naive"])
    print(f"{'variant':<10} {'images/s (median)':>18} {'range':>18} {'ratio':>7}")
    for name, vals in rates.items():
        med = statistics.median(vals)
        print(f"{name:<10} {med:>18.1f} {f'{min(vals):.1f}-{max(vals):.1f}':>18} {med / ref:>7.2f}")
    print(f"ratio {statistics.median(rates['batched']) / ref:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
