"""Mode coverage on stacked digits (the StackedMNIST protocol, 1,000 modes): train for a time budget, count modes.

Data: the built-in source `stacked_digits` (three built-in digits per image, one per RGB channel; see the README).
Training: `ganforge prepare` and `ganforge train` run in a work folder (`--workdir`, default a fresh temp folder,
kept) with the project's `params.yaml` plus the recipe the README recommends for this data (`RECIPE` below:
the default recipe, unconditional, 3 channels, 16x16, MLflow off), then your `--set key=value` overrides (the syntax
of `ganforge train --set`). `train.steps` is set out of reach, so the run stops at the time budget: after
`--minutes` of wall time (the command's few seconds of start-up included) it gets a Ctrl-C (SIGINT), finishes
its step and writes its checkpoint. A `--set train.steps=N` that comes first ends it sooner.

Scoring (the protocol of Metz et al. 2017 / Lin et al. 2018): `--samples` (26,000) images from the EMA
generator, latents from `--seed`; each channel is read by a digit classifier (the `features` stage's network
trained on the built-in `digits` at the same resolution and resize filter, cached in
`.ganforge-cache/stacked_modes/`; its test accuracy is printed, and should be >= 0.97); the mode of an image
is its (red, green, blue) digit triple. modes = distinct triples seen; KL = KL(generated mode histogram ||
uniform over 1,000), natural log. 26,000 perfect samples of the uniform give KL ~ 999 / (2 * 26,000) = 0.019
from counting noise alone.

    .venv/bin/python benchmarks/stacked_modes.py --minutes 15 [--set train.loss=nonsat ...]
    .venv/bin/python benchmarks/stacked_modes.py --real              # the anchor: real stacked images
    .venv/bin/python benchmarks/stacked_modes.py --checkpoint models/checkpoint.pt

It prints the checkpoint's path on one line (`checkpoint: PATH`), writes `stacked_modes.json` beside the work
folder's metrics, and ends with the line `modes N/1000, KL X`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ganforge.config import Config, DataConfig, FeaturesConfig, load_config
from ganforge.data import PreparedData
from ganforge.data.prepare import prepare
from ganforge.errors import GanforgeError
from ganforge.features import train_classifier
from ganforge.metrics import classifier as digit_net
from ganforge.paths import Paths, atomic_path
from ganforge.training.checkpoint import load_generator

ROOT = Path(__file__).resolve().parents[1]
# the recipe the README recommends for stacked digits: the default recipe (hinge, spectral-norm D, PacGAN 2),
# unconditional, at 16x16 (the built-in digits are 8x8 scans: 32x32 only upsamples them, at 4x the cost)
RECIPE = [
    "data.source=stacked_digits",
    "data.channels=3",
    "data.resolution=16",
    "train.conditional=false",
    "registry.gate.min={precision: 0.6, recall: 0.4}",  # an unconditional model reports no class accuracy
    "tracking.enabled=false",
]
UNREACHABLE_STEPS = 10**9
MODES = 1000
MIN_ACCURACY = 0.97


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group()
    what.add_argument("--real", action="store_true", help="score real stacked images (the anchor), no training")
    what.add_argument("--checkpoint", type=Path, help="score this checkpoint, no training")
    p.add_argument("--minutes", type=float, default=15.0, help="training budget, wall clock (default 15)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a param (repeatable)")
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    p.add_argument("--workdir", type=Path, help="where to prepare and train (default: a new temp folder, kept)")
    p.add_argument("--samples", type=int, default=26_000, help="images scored (default 26000)")
    p.add_argument("--seed", type=int, default=0, help="latents of the scored samples")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--device", default="cpu", help="where to sample and classify (default cpu)")
    return p


def _ganforge(workdir: Path, args: argparse.Namespace, command: str, overrides: list[str]) -> subprocess.Popen:
    sets = [x for o in [*RECIPE, *overrides, *args.set] for x in ("--set", o)]
    cmd = [sys.executable, "-m", "ganforge", command, "--params", str(args.params.resolve()), *sets]
    return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, what: str) -> str:
    out, _ = proc.communicate()
    print(out.strip(), flush=True)
    if proc.returncode:
        raise SystemExit(f"error: ganforge {what} exited {proc.returncode}")
    return out


def train(workdir: Path, args: argparse.Namespace) -> Path:
    """Prepare the stacked digits and train on them for `args.minutes`; the checkpoint's path."""
    _finish(_ganforge(workdir, args, "prepare", []), "prepare")
    proc = _ganforge(workdir, args, "train", [f"train.steps={UNREACHABLE_STEPS}"])
    deadline = time.monotonic() + args.minutes * 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0.01)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # finish the step, write the checkpoint, exit 0
    except KeyboardInterrupt:  # Ctrl-C in the terminal reached the train command too: score what it has
        pass
    _finish(proc, "train")
    return workdir / "models" / "checkpoint.pt"


def _classifier(cfg: DataConfig, resolution: int) -> tuple[torch.nn.Module, float, Path]:
    """The digit classifier at `resolution` (trained once on the built-in digits, then cached), its test accuracy."""
    key = f"digits-{resolution}px-{cfg.resize_filter}-test{cfg.test_fraction:g}"
    cached = ROOT / ".ganforge-cache" / "stacked_modes" / f"classifier-{key}.pt"
    if not cached.exists():
        with tempfile.TemporaryDirectory(prefix="stacked-modes-classifier-") as tmp:
            paths = Paths(root=Path(tmp))
            digits = DataConfig(resolution=resolution, resize_filter=cfg.resize_filter, test_fraction=cfg.test_fraction)
            prepare(digits, paths.prepared, paths.metrics / "prepare.json", progress=False)
            print(train_classifier(FeaturesConfig(), paths).line(cached), flush=True)
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cached) as out:
                shutil.copyfile(paths.classifier, out)
    net, record = digit_net.load(cached)
    return net, float(record["test_accuracy"]), cached


@torch.no_grad()
def read_modes(net: torch.nn.Module, images_u8: torch.Tensor, batch: int) -> np.ndarray:
    """uint8 [N, 3, R, R] -> the mode of each image, 100 * red + 10 * green + blue digit, int64 [N]."""
    out = []
    for i in tqdm(range(0, len(images_u8), batch), desc="read digits", unit="batch", file=sys.stderr):
        x = images_u8[i : i + batch]
        channels = x.reshape(-1, 1, *x.shape[2:])  # [3B, 1, R, R]: red, green, blue of each image in turn
        digits = net(digit_net.to_float(channels))[1].argmax(1).reshape(-1, 3)
        out.append((digits * torch.tensor([100, 10, 1], device=digits.device)).sum(1).cpu())
    return torch.cat(out).numpy()


def _to_u8(x: torch.Tensor) -> torch.Tensor:
    return x.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def generate(checkpoint: Path, n: int, seed: int, batch: int, device: str) -> torch.Tensor:
    """`n` uint8 samples of the checkpoint's EMA generator, latents from `seed` (classes in turn if conditional)."""
    G = load_generator(checkpoint, device=device)
    spec = G.spec
    z_dim, num_classes = int(spec.latent_dim), int(spec.num_classes)
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in tqdm(range(0, n, batch), desc="sample", unit="batch", file=sys.stderr):
        b = min(batch, n - i)
        z = torch.randn(b, z_dim, generator=g).to(device)
        y = (torch.arange(i, i + b) % num_classes).to(device) if num_classes else None
        out.append(_to_u8(G(z, y)).cpu())
    return torch.cat(out)


def coverage(modes: np.ndarray) -> tuple[int, float]:
    """(distinct modes, KL(histogram || uniform over MODES)) of an array of mode indices."""
    p = np.bincount(modes, minlength=MODES) / len(modes)
    seen = p > 0
    return int(seen.sum()), float((p[seen] * np.log(p[seen] * MODES)).sum())


def real_images(cfg: Config, workdir: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` images (and modes) of the stacked digits' train split, prepared in `workdir`."""
    paths = Paths(root=workdir)
    data_cfg = cfg.data.model_copy(
        update={"num_images": max(cfg.data.num_images, round(n / (1 - cfg.data.test_fraction)) + 10)}
    )
    print(prepare(data_cfg, paths.prepared, paths.metrics / "prepare.json", progress=False).line(), flush=True)
    images, labels = PreparedData.open(paths.prepared).load("train")
    return images[:n], labels[:n]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.params, [*RECIPE, *args.set])
    except GanforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="stacked-modes-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    truth = None
    if args.real:
        what = "real stacked digits (train split)"
        images, truth = real_images(cfg, workdir, args.samples)
    else:
        checkpoint = args.checkpoint.resolve() if args.checkpoint else train(workdir, args)
        print(f"checkpoint: {checkpoint}", flush=True)
        what = f"EMA generator of {checkpoint}"
        images = generate(checkpoint, args.samples, args.seed, args.batch, args.device)
    if images.shape[1] != 3:
        print(f"error: {what} has {images.shape[1]} channel(s); stacked digits need 3", file=sys.stderr)
        return 2
    net, accuracy, cached = _classifier(cfg.data, images.shape[-1])
    net = net.to(args.device)
    modes = read_modes(net, images.to(args.device), args.batch)
    found, kl = coverage(modes)
    result = {
        "scored": what,
        "n": len(modes),
        "seed": args.seed,
        "resolution": images.shape[-1],
        "classifier": str(cached),
        "classifier_test_accuracy": accuracy,
        "modes": found,
        "kl": kl,
        "seconds": round(time.perf_counter() - t0, 1),
        "overrides": args.set,
    }
    if truth is not None:  # real images: how often the classifier reads all three digits right
        result["triples_read_right"] = float((modes == truth.numpy()).mean())
    (workdir / "stacked_modes.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"scored {len(modes)} images of the {what} ({images.shape[-1]}px), seed {args.seed}")
    print(f"digit classifier: test accuracy {accuracy:.4f} on the built-in digits ({cached})")
    if accuracy < MIN_ACCURACY:
        print(f"warning: the digit classifier is below {MIN_ACCURACY}: modes and KL are not trustworthy")
    if truth is not None:
        print(f"classifier reads all three digits right in {result['triples_read_right']:.4f} of the real images")
    print(f"results: {workdir / 'stacked_modes.json'}")
    print(f"modes {found}/{MODES}, KL {kl:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
