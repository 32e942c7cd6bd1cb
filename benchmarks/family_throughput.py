"""Training throughput of each model family at 32, 64 and 128 px: images/s of ganforge's train step.

Each family trains with its own recipe (`train.model.family=<name>` alone: its loss, n_critic, regularisers at
their intervals, augmentation, EMA) and its default widths, class-conditional on 20 classes, RGB, batch 64 (32
at 128 px), fp32 on the CPU (the precision `auto` picks where the hardware has no native bf16; bf16 with
`--precision bf16`) and channels_last, on a fixed pool of random uint8 images. One process; every
(family, resolution) gets `--warmup` untimed steps, then `--rounds` rounds of `--steps` steps, rotated. A "step"
is one `train_step`: n_critic D updates (each on a fresh real batch) and one G update, so images/s counts the
generated images a second of training produces (batch x steps / seconds); the real images D reads per second are
n_critic times that. Wide families (r3gan, stylegan2 at their defaults) are slow on a CPU: the table says how slow.

    .venv/bin/python benchmarks/family_throughput.py [--families dcgan,resnet,r3gan,stylegan2]
        [--resolutions 32,64,128] [--rounds 3] [--steps 2] [--warmup 1] [--precision fp32] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ganforge.config import TrainConfig
from ganforge.models import ModelSpec
from ganforge.training.runtime import pick_precision
from ganforge.training.step import train_step
from ganforge.training.system import System

CLASSES = 20


def batch_for(resolution: int) -> int:
    return 64 if resolution <= 64 else 32


def make(family: str, resolution: int, precision: str, extra: dict) -> tuple[System, torch.Tensor, torch.Tensor]:
    batch = batch_for(resolution)
    model = {"family": family, **{k.removeprefix("model."): v for k, v in extra.items() if k.startswith("model.")}}
    rest = {k: v for k, v in extra.items() if not k.startswith("model.")}
    tc = TrainConfig.model_validate({"model": model, "batch_size": batch, "precision": precision, **rest})
    spec = ModelSpec.for_data(tc.model, resolution=resolution, channels=3, num_classes=CLASSES)
    device = torch.device("cpu")
    system = System(tc, spec, device, pick_precision(tc.precision, device))
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4 * batch, 3, resolution, resolution), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, CLASSES, (4 * batch,), generator=g)
    return system, images, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="dcgan,resnet,r3gan,stylegan2")
    ap.add_argument("--resolutions", default="32,64,128")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    ap.add_argument("--set", action="append", default=[], help="a train key for every family, e.g. model.g_width=32")
    args = ap.parse_args()
    import yaml

    extra = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    cells = [(f, int(r)) for r in args.resolutions.split(",") for f in args.families.split(",")]
    runs, rates = {}, {c: [] for c in cells}
    for cell in cells:
        system, images, labels = make(*cell, args.precision, extra)
        cursor = [0]

        def next_batch(s=system, x=images, y=labels, cursor=cursor, b=batch_for(cell[1])):
            i = cursor[0] * b % len(x)
            cursor[0] += 1
            return s.batch(x[i : i + b]), y[i : i + b]

        for _ in range(args.warmup):
            train_step(system, next_batch)
        runs[cell] = (system, next_batch)
        print(f"# {cell[0]} at {cell[1]}px: G {sum(p.numel() for p in system.G.parameters()):,} params, "
              f"D {sum(p.numel() for p in system.D.parameters()):,}, n_critic {system.objective.n_critic}",
              flush=True)  # fmt: skip
    for r in range(args.rounds):
        for cell in cells[r % len(cells) :] + cells[: r % len(cells)]:
            system, next_batch = runs[cell]
            t0 = time.perf_counter()
            for _ in range(args.steps):
                stats = train_step(system, next_batch)
            stats[0].item()
            rates[cell].append(args.steps * batch_for(cell[1]) / (time.perf_counter() - t0))
    print(f"\n| family | {' | '.join(f'{r} px img/s' for r in args.resolutions.split(','))} |")
    print(f"| --- |{' ---: |' * len(args.resolutions.split(','))}")
    for f in args.families.split(","):
        row = [f"{statistics.median(rates[(f, int(r))]):.1f}" for r in args.resolutions.split(",")]
        print(f"| {f} | {' | '.join(row)} |")


if __name__ == "__main__":
    main()
