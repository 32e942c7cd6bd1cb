"""Training throughput: ganforge's train step (`System` + `train_step`) against a reference loop in the style
of pytorch/examples dcgan.

Both sides train the same network (DCGAN at 64x64, nz=100, ngf=ndf=64, 3 channels), batch 64, Adam 2e-4
(0.5, 0.999), the same non-saturating GAN loss, on a fixed tensor of random uint8 images converted to [-1, 1]
per batch. The reference is written the way the example's `main.py` is: `nn.Sequential` models with a Sigmoid
at the end of D, `nn.BCELoss`, two backward passes for D, the default Adam, fp32 in the default memory format,
and `.item()` on the losses every iteration (the example prints them). ganforge runs its own step with
its defaults (channels_last, bf16 autocast where the hardware has it, fused Adam, statistics kept on the
device) and with each option alone, so every option gets its own ratio; then its defaults with each
regulariser and augmentation on (`--terms`), so each one's cost at its interval is a ratio in the same table.

All variants live in one process and take turns: a few warm-up steps each, then `--rounds` rounds in which
every variant trains `--steps` steps, in an order rotated from round to round. Images/s per round is
steps * 64 / seconds, timed with `time.perf_counter()` after a host sync; the table shows the median and the
range over rounds and ratio = median(variant) / median(reference). The last line is `ratio X.XX` for
ganforge with all its defaults.

    .venv/bin/python benchmarks/train_throughput.py [--device auto|cpu|cuda] [--rounds 5] [--steps 8] [--compile]
                                                    [--terms]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ganforge.config import TrainConfig
from ganforge.models import ModelSpec
from ganforge.models.dcgan import DCGANConfig
from ganforge.training.runtime import pick_precision, precision_name
from ganforge.training.step import train_step
from ganforge.training.system import System

BATCH = 64
RES = 64
NZ, NGF, NDF, NC = 100, 64, 64, 3
LR, BETAS = 2e-4, (0.5, 0.999)
N_IMAGES = 16 * BATCH  # the fixed pool of random images every variant cycles through
SEED = 0


# --- the reference: pytorch/examples dcgan, restated -------------------------------------------------------


class RefGenerator(nn.Module):
    """nz x 1 x 1 -> 3 x 64 x 64 with four stride-2 transposed convs, BN + ReLU between, Tanh out."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(NZ, NGF * 8, 4, 1, 0, bias=False),  # 4x4
            nn.BatchNorm2d(NGF * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(NGF * 8, NGF * 4, 4, 2, 1, bias=False),  # 8x8
            nn.BatchNorm2d(NGF * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(NGF * 4, NGF * 2, 4, 2, 1, bias=False),  # 16x16
            nn.BatchNorm2d(NGF * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False),  # 32x32
            nn.BatchNorm2d(NGF),
            nn.ReLU(True),
            nn.ConvTranspose2d(NGF, NC, 4, 2, 1, bias=False),  # 64x64
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class RefDiscriminator(nn.Module):
    """3 x 64 x 64 -> one probability: stride-2 convs with LeakyReLU (BN after the first), Sigmoid out."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(NC, NDF, 4, 2, 1, bias=False),  # 32x32
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False),  # 16x16
            nn.BatchNorm2d(NDF * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(NDF * 2, NDF * 4, 4, 2, 1, bias=False),  # 8x8
            nn.BatchNorm2d(NDF * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(NDF * 4, NDF * 8, 4, 2, 1, bias=False),  # 4x4
            nn.BatchNorm2d(NDF * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(NDF * 8, 1, 4, 1, 0, bias=False),  # 1x1
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def ref_init(m: nn.Module) -> None:
    """The example's custom init: conv weights N(0, 0.02); BN scale N(1, 0.02), shift 0."""
    name = type(m).__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Reference:
    """One iteration of the example's training loop (D on real, D on fake, D step; then G), fp32."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.netG = RefGenerator().to(device)
        self.netG.apply(ref_init)
        self.netD = RefDiscriminator().to(device)
        self.netD.apply(ref_init)
        self.criterion = nn.BCELoss()
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=LR, betas=BETAS)
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=LR, betas=BETAS)
        self.losses: list[tuple[float, ...]] = []

    def step(self, images_u8: torch.Tensor) -> None:
        real = images_u8.to(self.device).float().mul_(2 / 255).sub_(1)
        b = real.size(0)
        # (1) D: maximise log(D(x)) + log(1 - D(G(z)))
        self.netD.zero_grad()
        label = torch.full((b,), 1.0, dtype=real.dtype, device=self.device)
        output = self.netD(real).view(-1)
        errD_real = self.criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        noise = torch.randn(b, NZ, 1, 1, device=self.device)
        fake = self.netG(noise)
        label.fill_(0.0)
        output = self.netD(fake.detach()).view(-1)
        errD_fake = self.criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        self.optimizerD.step()
        # (2) G: maximise log(D(G(z)))
        self.netG.zero_grad()
        label.fill_(1.0)
        output = self.netD(fake).view(-1)
        errG = self.criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        self.optimizerG.step()
        # the example prints these every iteration; keeping them costs the same host syncs
        self.losses.append((errD.item(), errG.item(), D_x, D_G_z1, D_G_z2))
        del self.losses[:-1]

    def finish(self) -> float:
        return self.losses[-1][0]


# --- ganforge ----------------------------------------------------------------------------------------------

MODEL = DCGANConfig(z_dim=NZ, g_width=NGF, d_width=NDF, g_upsample="convtranspose", d_norm="batch", pack=1)
SPEC = ModelSpec.for_data(MODEL, resolution=RES, channels=NC, num_classes=0)


class Ganforge:
    """`train_step` on a `System`, driven the way `ganforge.training.loop.train` drives it: stats summed on the
    device. `terms` are TrainConfig overrides (a regulariser, an augmentation)."""

    def __init__(
        self,
        device: torch.device,
        channels_last: bool,
        amp: torch.dtype | None,
        fused: bool,
        compile: bool,
        terms: dict | None = None,
    ) -> None:
        tc = TrainConfig(
            model=MODEL,
            conditional=False,
            loss="nonsat",
            batch_size=BATCH,
            lr_g=LR,
            lr_d=LR,
            beta1=BETAS[0],
            beta2=BETAS[1],
            channels_last=channels_last,
            precision=precision_name(amp),
            **(terms or {}),
        )
        self.gan = System(tc, SPEC, device, amp, fused=fused)
        if compile:  # the optimisers and the EMA copy keep pointing at the same parameters
            self.gan.G = torch.compile(self.gan.G)
            self.gan.D = torch.compile(self.gan.D)
        self.acc: torch.Tensor | None = None

    def step(self, images_u8: torch.Tensor) -> None:
        stats = train_step(self.gan, lambda: (self.gan.batch(images_u8), None))
        self.acc = stats if self.acc is None else self.acc + stats

    def finish(self) -> float:
        assert self.acc is not None
        return self.acc[0].item()


# --- harness -----------------------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    make: Callable[[], Reference | Ganforge]
    runner: Reference | Ganforge | None = None
    cursor: int = 0
    rates: list[float] | None = None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_steps(v: Variant, images: torch.Tensor, steps: int, device: torch.device) -> float:
    """Train `steps` steps; return images/s (timed from a synced start to a host sync at the end)."""
    runner = v.runner
    assert runner is not None
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        start = v.cursor * BATCH % len(images)
        runner.step(images[start : start + BATCH])
        v.cursor += 1
    loss = runner.finish()  # .item(): the host waits for the last step
    sync(device)
    seconds = time.perf_counter() - t0
    if loss != loss:  # NaN
        raise SystemExit(f"{v.name}: the loss became NaN")
    return steps * BATCH / seconds


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_native(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per variant (default 5)")
    ap.add_argument("--steps", type=int, default=8, help="training steps per variant per round (default 8)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first (default 3)")
    ap.add_argument("--compile", action="store_true", help="add torch.compile variants (slow cold start)")
    ap.add_argument("--terms", action="store_true", help="add the defaults with each regulariser/augmentation on")
    args = ap.parse_args()

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True  # the example sets it too; it is process-wide, so both get it
    amp = pick_precision("auto", device) or torch.bfloat16  # what ganforge's `precision: auto` picks here
    amp_name = precision_name(amp)
    use_compile = args.compile or cuda

    torch.manual_seed(SEED)
    images = torch.randint(0, 256, (N_IMAGES, NC, RES, RES), dtype=torch.uint8)

    def seeded(make: Callable[[], Reference | Ganforge]) -> Callable[[], Reference | Ganforge]:
        def build() -> Reference | Ganforge:
            torch.manual_seed(SEED)
            return make()

        return build

    def gf(
        channels_last: bool, amp: torch.dtype | None, fused: bool, compile: bool = False, **terms: object
    ) -> Callable:
        return seeded(lambda: Ganforge(device, channels_last, amp, fused, compile, terms))

    auto = pick_precision("auto", device)
    variants = [
        Variant("reference (examples/dcgan style)", seeded(lambda: Reference(device))),
        Variant("ganforge, all options off", gf(False, None, False)),
        Variant("ganforge + channels_last", gf(True, None, False)),
        Variant(f"ganforge + {amp_name} autocast", gf(False, amp, False)),
        Variant("ganforge + fused Adam", gf(False, None, True)),
        Variant("ganforge defaults (all on)", gf(True, auto, True)),
    ]
    if auto is None and device.type == "cpu":  # emulated bf16: ~100x slower, and not what `auto` runs here
        print(f"  (no native bf16 on this CPU: the {amp_name} autocast row is left out; `precision: auto` is fp32)")
        variants.pop(3)
    headline = variants[-1]
    if use_compile:
        variants.append(Variant("ganforge defaults + torch.compile", gf(True, auto, True, True)))
    if args.terms:  # each regulariser / augmentation at the interval the README suggests
        for name, terms in {
            "r1 (every step)": {"r1": {"weight": 1.0}},
            "r1 (lazy, every 16)": {"r1": {"weight": 1.0, "interval": 16}},
            "r1 + r2 (every step)": {"r1": {"weight": 1.0}, "r2": {"weight": 1.0}},
            "gp (every step)": {"gp": {"weight": 10.0}},
            "lecam": {"lecam": {"weight": 0.3}},
            "diffaugment": {"augment": {"kind": "diffaugment"}},
            "ada (p 0.5)": {"augment": {"kind": "ada", "p": 0.5}},
        }.items():
            variants.append(Variant(f"defaults + {name}", gf(True, auto, True, **terms)))

    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if cuda else "")
        + f", native bf16: {'yes' if bf16_native(device) else 'no'}, python {platform.python_version()}",
        flush=True,
    )
    print(
        f"batch {BATCH}, {RES}x{RES}, {args.rounds} rounds x {args.steps} steps per variant, "
        f"{args.warmup} warm-up steps",
        flush=True,
    )

    t_start = time.perf_counter()
    for v in variants:
        t0 = time.perf_counter()
        v.runner = v.make()
        v.rates = []
        run_steps(v, images, args.warmup, device)
        print(f"  warm-up {v.name}: {time.perf_counter() - t0:.1f}s", flush=True)

    ref = variants[0].runner
    gan = variants[1].runner
    assert isinstance(ref, Reference) and isinstance(gan, Ganforge)
    sizes = (n_params(ref.netG), n_params(ref.netD)), (n_params(gan.gan.G), n_params(gan.gan.D))
    if sizes[0] != sizes[1]:
        raise SystemExit(f"the networks differ: reference G/D {sizes[0]} vs ganforge {sizes[1]} parameters")
    print(f"  same network: G {sizes[0][0]:,} / D {sizes[0][1]:,} parameters", flush=True)

    for r in range(args.rounds):
        k = r % len(variants)
        order = variants[k:] + variants[:k]
        if r % 2:
            order.reverse()
        parts = []
        for v in order:
            rate = run_steps(v, images, args.steps, device)
            assert v.rates is not None
            v.rates.append(rate)
            parts.append(f"{v.name.split(' (')[0]} {rate:.0f}")
        print(f"  round {r + 1}/{args.rounds}: " + ", ".join(parts) + " img/s", flush=True)

    ref_median = statistics.median(variants[0].rates or [])
    width = max(len(v.name) for v in variants)
    print()
    print(f"{'variant':<{width}}  {'img/s median':>12}  {'min-max':>11}  {'ratio':>5}")
    for v in variants:
        rates = v.rates or []
        med = statistics.median(rates)
        span = f"{min(rates):.0f}-{max(rates):.0f}"
        print(f"{v.name:<{width}}  {med:>12.1f}  {span:>11}  {med / ref_median:>5.2f}")
    print(f"total {time.perf_counter() - t_start:.0f}s", flush=True)
    print(f"ratio {statistics.median(headline.rates or []) / ref_median:.2f}")


if __name__ == "__main__":
    sys.exit(main())
