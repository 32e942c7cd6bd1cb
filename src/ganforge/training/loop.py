"""The train stage: one GAN step (`GANStep`) and the loop around it (`train`).

The loop keeps the host and the device apart: per-step statistics are summed on the device and
read back only at log points, where NaN/Inf is caught before anything is written. Checkpoints hold
the full state (G, D, EMA G, both optimisers, grad scaler, RNG states, step, config), so
`--resume` continues bit-for-bit where the run stopped.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.io import encode_png
from tqdm import tqdm

from ganforge import faults, tracking
from ganforge.config import Config, TrainConfig
from ganforge.data.dataset import KINDS, PreparedData
from ganforge.errors import GanforgeError, TrainingDiverged
from ganforge.losses import LOSSES
from ganforge.models import KINDS as MODEL_KINDS
from ganforge.models import ModelSpec, build
from ganforge.paths import Paths, atomic_path, write_text_atomic
from ganforge.sampling import Sampler
from ganforge.training import checkpoint
from ganforge.training.sampler import BatchSampler

STATS = ("loss_d", "loss_g", "d_real", "d_fake")  # D(x), D(G(z)) as probabilities
# Settings that may change between a checkpoint and its resume: how long and how, not what.
RESUMABLE = {"steps", "sample_every", "checkpoint_every", "log_every", "device", "precision", "on_divergence",
             "max_rollbacks", "rollback_lr_factor", "grad_norm_limit"}  # fmt: skip


def pick_device(pref: str) -> torch.device:
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise GanforgeError(f"train.device={pref}: no CUDA device is available here (use auto or cpu)")
    if pref == "mps" and not torch.backends.mps.is_available():
        raise GanforgeError("train.device=mps: no MPS device is available here (use auto or cpu)")
    return torch.device(pref)


def pick_precision(pref: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. auto = bf16 where the hardware has it."""
    if pref == "fp32":
        return None
    if pref == "bf16":
        return torch.bfloat16
    if pref == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


class GANStep:
    """Generator, discriminator, EMA generator, optimisers, and one training step (D, then G)."""

    def __init__(
        self, tc: TrainConfig, spec: ModelSpec, device: torch.device, amp: torch.dtype | None, fused: bool = True
    ) -> None:
        self.spec = spec
        self.device = device
        self.amp = amp
        self.loss = LOSSES[tc.loss]
        self.ema_decay = tc.ema_decay
        self.class_loss = tc.class_loss if spec.class_head else 0.0
        # NHWC for image models; clips are 5-D, where the 3-D convolutions keep the default layout
        nhwc = tc.channels_last and spec.kind == "image"
        self.memory_format = torch.channels_last if nhwc else torch.contiguous_format
        G, D = build(spec)
        self.G = G.to(device, memory_format=self.memory_format)
        self.D = D.to(device, memory_format=self.memory_format)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        fused = fused and device.type in ("cuda", "cpu")  # one kernel per optimiser step, not one per tensor
        betas = (tc.beta1, tc.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=tc.lr_g, betas=betas, fused=fused)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=tc.lr_d, betas=betas, fused=fused)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
        self.step_count = 0
        self.check_grads = tc.grad_norm_limit > 0
        self.max_grad_norm = torch.zeros((), device=device)  # since the last `take_grad_norm`, on the device

    def _track_grad_norm(self, opt: torch.optim.Optimizer) -> None:
        """Fold this update's gradient norm into `max_grad_norm` (no host sync). fp16: measured unscaled; a step
        the scaler skips for Inf gradients is not a divergence and is left out."""
        if not self.check_grads:
            return
        self.scaler.unscale_(opt)
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).float()
        if self.scaler.is_enabled():
            norm = torch.where(norm.isfinite(), norm, torch.zeros_like(norm))
        torch.maximum(self.max_grad_norm, norm, out=self.max_grad_norm)

    def take_grad_norm(self) -> float:
        value = float(self.max_grad_norm)
        self.max_grad_norm.zero_()
        return value

    def bad_weights(self) -> str | None:
        """The first of G, D, G_ema holding a NaN/Inf weight, or None."""
        for name, net in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            params = list(net.parameters())
            if not bool(torch.stack([p.isfinite().all() for p in params]).all()):
                return name
        return None

    def set_lr(self, lr_g: float, lr_d: float) -> None:
        for opt, lr in ((self.opt_G, lr_g), (self.opt_D, lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr

    def autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None else nullcontext()

    def batch(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> float in [-1, 1] on the device, in the models' memory format."""
        x = images_u8.to(self.device, non_blocking=True).float().mul_(2 / 255).sub_(1)
        return x.contiguous(memory_format=self.memory_format)

    def heads(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """D's logits as a tuple of heads (one for image models; frames and clips for video models), and the
        cross-entropy of D's class head against y (AC-GAN, `train.class_loss`; 0 when off)."""
        if self.class_loss:
            out, ce = self.D(x, y, classes=True)
        else:
            out, ce = self.D(x, y), torch.zeros((), device=x.device)
        return (tuple(h.float() for h in out) if isinstance(out, tuple) else (out.float(),)), ce

    def step(self, real: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """One D update and one G update on a batch; returns STATS as a device tensor (no host sync).
        With several D heads the losses are summed; D(x) and D(G(z)) are averaged over heads."""
        z = torch.randn(real.shape[0], self.spec.latent_dim, device=self.device)
        with self.autocast():
            fake = self.G(z, y)
            d_real, ce_real = self.heads(real, y)
            d_fake, _ = self.heads(fake.detach(), y)  # D's class head learns from real samples only
            loss_d = torch.stack([self.loss.d(r, f) for r, f in zip(d_real, d_fake, strict=True)]).sum()
            loss_d = loss_d + self.class_loss * ce_real
        self.opt_D.zero_grad(set_to_none=True)
        self.scaler.scale(loss_d).backward()
        self._track_grad_norm(self.opt_D)
        self.scaler.step(self.opt_D)
        with self.autocast():
            g_fake, ce_fake = self.heads(fake, y)
            loss_g = torch.stack([self.loss.g(f) for f in g_fake]).sum() + self.class_loss * ce_fake
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self._track_grad_norm(self.opt_G)
        self.scaler.step(self.opt_G)
        self.scaler.update()
        self.update_ema()
        self.step_count += 1
        p_real = torch.stack([torch.sigmoid(h).mean() for h in d_real]).mean()
        p_fake = torch.stack([torch.sigmoid(h).mean() for h in d_fake]).mean()
        return torch.stack([loss_d, loss_g, p_real, p_fake]).detach()

    @torch.no_grad()
    def update_ema(self) -> None:
        # warm-up: early on the average follows G closely, so short runs are not dragged back to init
        t = self.step_count
        decay = min(self.ema_decay, (1 + t) / (10 + t))
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - decay)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step_count = int(state["step"])


@dataclass(frozen=True)
class TrainSummary:
    steps: int
    start_step: int
    images_per_sec: float
    seconds: float
    loss_d: float
    loss_g: float
    d_real: float
    d_fake: float
    device: str
    precision: str
    run_id: str | None
    interrupted: bool = False
    resumed: str = ""  # how the run continued an earlier one ("" = from scratch)

    def line(self, paths: Paths) -> str:
        done = self.steps - self.start_step
        what = "interrupted at" if self.interrupted else "trained to"
        return (
            (f"train: {self.resumed}\n" if self.resumed else "")
            + f"train: {what} step {self.steps} ({done} steps, {self.images_per_sec:.0f} img/s, {self.device} "
            f"{self.precision}) in {self.seconds:.0f}s; loss_d {self.loss_d:.3f} loss_g {self.loss_g:.3f} -> "
            f"{paths.checkpoint}, {paths.samples_latest}"
            + (f"; MLflow run {self.run_id}" if self.run_id else "")
            + ("; run `ganforge train` again (or with --resume) to continue" if self.interrupted else "")
        )


class _StopFlag:
    """First Ctrl-C/SIGTERM: finish the current step, checkpoint, exit cleanly. Second: abort."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _setting_diffs(saved: dict[str, Any], cfg: Config, resumable: set[str]) -> list[str]:
    """The data and train keys whose values differ; a key the checkpoint predates counts as its default (a key
    added later, left at its default, is the model the checkpoint was trained as)."""
    now = cfg.model_dump(mode="json")
    diffs = []
    for section in ("data", "train"):
        fields = type(getattr(cfg, section)).model_fields
        for k, value in now[section].items():
            old = saved[section][k] if k in saved[section] else fields[k].get_default(call_default_factory=True)
            if k not in (resumable if section == "train" else ()) and old != value:
                diffs.append(f"{section}.{k}")
    return diffs


def _check_resumable(saved: dict[str, Any], cfg: Config) -> None:
    if diffs := _setting_diffs(saved, cfg, RESUMABLE):
        raise GanforgeError(
            f"--resume: the checkpoint was trained with other settings ({', '.join(diffs)}); "
            "restore them, or train from scratch without --resume"
        )


def _to_resume(paths: Paths, cfg: Config, resume: bool, device: torch.device) -> tuple[dict[str, Any] | None, str]:
    """The checkpoint state to continue from, and a note saying which and why ("" when none).

    `--resume`: the newest good checkpoint (the previous one when the current is damaged), or an error.
    Without it, a run that was stopped before its end (killed, Ctrl-C, a damaged file) continues by itself when
    its checkpoint was written with exactly these data and train settings and is short of train.steps; a
    finished run, or one with other settings, is not touched: training starts from scratch."""
    if resume:
        state, used, why = checkpoint.load_latest(paths.checkpoint, map_location=device)
        _check_resumable(state["config"], cfg)
        if why:  # the current file is damaged: drop it, or the next save would rotate it over the good one
            paths.checkpoint.unlink(missing_ok=True)
        return state, (f"resuming from {used} (step {state['step']}): {why}" if why else "")
    if not (paths.checkpoint.exists() or checkpoint.previous(paths.checkpoint).exists()):
        return None, ""
    try:
        state, used, why = checkpoint.load_latest(paths.checkpoint, map_location=device)
    except GanforgeError as exc:
        return None, f"starting from scratch: {exc}"
    if state["step"] >= cfg.train.steps or _setting_diffs(state["config"], cfg, set()):
        return None, ""
    how = ""
    if why:
        paths.checkpoint.unlink(missing_ok=True)
        how = f"; {why}"
    return state, f"continuing the interrupted run of these settings from {used} (step {state['step']}){how}"


def _divergence(
    values: dict[str, float], grad_norm: float, gan: GANStep, tc: TrainConfig, step: int, n: int
) -> str | None:
    """Why the run diverged over the last `n` steps (NaN/Inf loss or weights, a gradient norm over the limit)."""
    span = f"between steps {step - n + 1} and {step}"
    if bad := [k for k in STATS[:2] if not math.isfinite(values[k])]:
        return f"{bad[0]} became {values[bad[0]]} {span}"
    if name := gan.bad_weights():
        return f"{name} holds NaN/Inf weights at step {step}"
    if gan.check_grads and not grad_norm <= tc.grad_norm_limit:
        return f"a gradient norm of {grad_norm:.4g} {span} is over train.grad_norm_limit={tc.grad_norm_limit:g}"
    return None


def _stop(
    problem: str,
    paths: Paths,
    run: tracking.TrainRun,
    divergences: list[dict[str, Any]],
    step: int,
    good: int | None,
) -> None:
    divergences.append({"step": step, "reason": problem, "action": "stopped"})
    _record_divergence(paths, run, divergences, step)
    again = f" (after {len(divergences) - 1} rollback(s))" if len(divergences) > 1 else ""
    kept = "no checkpoint was written yet" if good is None else f"the last good checkpoint ({paths.checkpoint}, step "
    kept += "" if good is None else f"{good}) is intact"
    raise TrainingDiverged(
        f"train: {problem}{again}; {kept}; try lower train.lr_g/train.lr_d, train.precision=fp32 or "
        "train.on_divergence=rollback"
    )


def _roll_back(
    problem: str, gan: GANStep, paths: Paths, tc: TrainConfig, device: torch.device, divergences: list[dict[str, Any]]
) -> int:
    """Back to this run's last checkpoint, with both learning rates lowered (once more per rollback); the RNG
    streams go on, so other batches and noise follow. Returns the checkpoint's step."""
    gan.load_state_dict(checkpoint.load_latest(paths.checkpoint, map_location=device)[0])
    factor = tc.rollback_lr_factor ** (len(divergences) + 1)
    gan.set_lr(tc.lr_g * factor, tc.lr_d * factor)
    step = gan.step_count
    divergences.append({"step": step, "reason": problem, "action": f"rolled back to step {step}, lr x{factor:g}"})
    return step


def _record_divergence(paths: Paths, run: tracking.TrainRun, divergences: list[dict[str, Any]], step: int) -> None:
    """The divergence in metrics/train.json (status diverged when it stops the run) and on the MLflow run."""
    last = divergences[-1]
    if last["action"] == "stopped":
        record = {"status": "diverged", "step": step, "reason": last["reason"], "rollbacks": len(divergences) - 1,
                  "divergences": divergences}  # fmt: skip
        write_text_atomic(paths.metrics / "train.json", json.dumps(record, indent=2) + "\n")
    run.set_tags({"ganforge.divergence": f"step {last['step']}: {last['reason']} -> {last['action']}"})
    run.log_metrics(step, {"divergences": len(divergences)})


def _sample_grid(gan: GANStep, seeds: list[int], y: torch.Tensor | None, cols: int, out: Path) -> None:
    grid = Sampler(gan.G_ema, batch_size=len(seeds)).grid(seeds, y, cols)  # clips: one per row
    with atomic_path(out) as tmp:
        tmp.write_bytes(encode_png(grid).numpy().tobytes())


def _fixed_inputs(spec: ModelSpec) -> tuple[list[int], torch.Tensor | None, int]:
    """The same samples at every snapshot, seed-addressed (seeds 0, 1, ... at psi 1: `ganforge.sampling`, so the
    pyfunc and the library give the same pixels for those seeds): one row per class, or an 8x8 grid."""
    per_class = 1 if spec.kind == "video" else 10  # a video grid shows one clip per row
    if spec.num_classes:
        rows, cols = min(spec.num_classes, 16), per_class
        y = torch.arange(rows).repeat_interleave(cols)
    else:
        rows, cols, y = 8, per_class if spec.kind == "video" else 8, None
    return list(range(rows * cols)), y, cols


class _LossLog:
    """plots/train_losses.csv: one row per log interval (means over the interval)."""

    def __init__(self, path: Path, start_step: int) -> None:
        self.path = path
        rows: list[list[str]] = []
        if start_step and path.exists():
            with path.open(newline="") as f:
                rows = [r for r in list(csv.reader(f))[1:] if r and int(r[0]) <= start_step]
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", *STATS])
            w.writerows(rows)
        self.file = path.open("a", newline="")
        self.writer = csv.writer(self.file)

    def write(self, step: int, values: dict[str, float]) -> None:
        self.writer.writerow([step, *(f"{values[k]:.6g}" for k in STATS)])
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def train(cfg: Config, paths: Paths, resume: bool = False, progress: bool = True) -> TrainSummary:
    """Train from params; write checkpoint, sample grids, loss CSV, metrics/train.json, MLflow run."""
    tc = cfg.train
    data = PreparedData.open(paths.prepared, kinds=KINDS)
    kind = MODEL_KINDS[tc.model]
    if data.kind != kind:
        what = {"image": "images", "video": "video clips"}
        fit = sorted(m for m, k in MODEL_KINDS.items() if k == data.kind)
        raise GanforgeError(
            f"train.model={tc.model} trains on {what[kind]}, but {paths.prepared} holds {what[data.kind]} "
            f"(data.kind {data.kind}): set train.model to {' or '.join(fit)}, or prepare {what[kind]}"
        )
    if tc.conditional and data.num_classes < 2:
        raise GanforgeError(
            f"train.conditional is true but {paths.prepared} has {data.num_classes} classes "
            "(use one sub-folder per class, or set train.conditional=false)"
        )
    images, labels = data.load("train")
    if len(images) == 0:
        raise GanforgeError(f"{paths.prepared}: the train split is empty (lower data.test_fraction)")
    device = pick_device(tc.device)
    amp = pick_precision(tc.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if images.nbytes <= 2**31:  # small sets live on the GPU: no host-to-device copy per step
            images, labels = images.to(device), labels.to(device)

    torch.manual_seed(tc.seed)
    spec = ModelSpec(
        model=tc.model,
        resolution=data.resolution,
        channels=data.channels,
        num_classes=data.num_classes if tc.conditional else 0,
        z_dim=tc.z_dim,
        g_width=tc.g_width,
        d_width=tc.d_width,
        max_channels=tc.max_channels,
        g_upsample=tc.g_upsample,
        d_norm=tc.d_norm,
        pack=tc.pack,
        class_head=tc.class_loss > 0 and tc.conditional and data.num_classes > 0,
        frames=data.frames or 0,
        motion_dim=tc.motion_dim if kind == "video" else 0,
        image_d_frames=tc.image_d_frames if kind == "video" else 0,
        motion_warp=tc.motion_warp if kind == "video" else "none",
    )
    gan = GANStep(tc, spec, device, amp)
    sampler = BatchSampler(labels.cpu(), tc.batch_size, tc.pack, by_class=tc.conditional, seed=tc.seed)
    state, resumed = _to_resume(paths, cfg, resume, device)
    if state is not None:
        gan.load_state_dict(state)
        sampler.set_state(state["rng"]["sampler"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    elif paths.samples_dir.exists():  # a fresh run: old snapshots belong to another run
        for old in paths.samples_dir.glob("step_*.png"):
            old.unlink()
    start = gan.step_count
    if start >= tc.steps:
        raise GanforgeError(f"--resume: the checkpoint is already at step {start} >= train.steps={tc.steps}")

    run = tracking.start_train_run(
        cfg, paths.mlflow_run, resume=state is not None, run_id=None if state is None else state.get("run_id")
    )
    conditional = spec.num_classes > 0
    fixed_seeds, fixed_y, cols = _fixed_inputs(spec)
    paths.samples_dir.mkdir(parents=True, exist_ok=True)
    log = _LossLog(paths.train_losses, start)
    acc = torch.zeros(len(STATS), device=device)
    n_acc = 0
    last: dict[str, float] = {}
    last_good_step = start
    have_checkpoint = state is not None  # this run's checkpoint on disk: where a rollback goes back to
    divergences: list[dict[str, Any]] = []

    def save_checkpoint(step: int) -> None:
        rng = {"torch": torch.get_rng_state(), "sampler": sampler.state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint.save(
            paths.checkpoint,
            {
                **gan.state_dict(),
                "spec": spec.to_dict(),
                "config": cfg.model_dump(mode="json"),
                "class_names": list(data.class_names),
                "rng": rng,
                "stats": dict(last),
                "run_id": run.run_id or None,
            },
        )

    t0 = time.perf_counter()
    status = "FAILED"
    step = start
    try:
        with (
            _StopFlag() as stop,
            tqdm(
                total=tc.steps, initial=start, desc="train", unit="step", disable=not progress, mininterval=1.0
            ) as bar,
        ):
            while step < tc.steps:
                idx = sampler.next()
                y = labels[idx].to(device, non_blocking=True) if conditional else None
                acc += gan.step(gan.batch(images[idx]), y)
                n_acc += 1
                step += 1
                faults.reach("train.step")
                bar.update(1)
                end = step == tc.steps or stop.set
                sample_now = end or step % tc.sample_every == 0
                checkpoint_now = end or step % tc.checkpoint_every == 0
                if sample_now or checkpoint_now or step % tc.log_every == 0:  # nothing is written unchecked
                    values = dict(zip(STATS, (acc / n_acc).tolist(), strict=True))
                    grad_norm = gan.take_grad_norm()
                    problem = _divergence(values, grad_norm, gan, tc, step, n_acc)
                    acc.zero_()
                    n_acc = 0
                    if problem:
                        can_roll_back = have_checkpoint and len(divergences) < tc.max_rollbacks
                        if tc.on_divergence != "rollback" or not can_roll_back:
                            _stop(problem, paths, run, divergences, step, last_good_step if have_checkpoint else None)
                        step = _roll_back(problem, gan, paths, tc, device, divergences)
                        _record_divergence(paths, run, divergences, step)
                        log.close()
                        log = _LossLog(paths.train_losses, step)
                        bar.n = step
                        bar.refresh()
                        continue
                    last = values
                    log.write(step, values)
                    run.log_metrics(step, {**values, "grad_norm": grad_norm} if gan.check_grads else values)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()}, refresh=False)
                if sample_now:
                    snap = paths.samples_dir / f"step_{step:06d}.png"
                    _sample_grid(gan, fixed_seeds, fixed_y, cols, snap)
                    with atomic_path(paths.samples_latest) as tmp:
                        tmp.write_bytes(snap.read_bytes())
                    run.log_artifact(snap, "samples")
                if checkpoint_now:
                    save_checkpoint(step)
                    last_good_step = step
                    have_checkpoint = True
                if stop.set:
                    break
        seconds = time.perf_counter() - t0
        summary = TrainSummary(
            steps=step,
            start_step=start,
            images_per_sec=(step - start) * tc.batch_size / max(seconds, 1e-9),
            seconds=seconds,
            **{k: last[k] for k in STATS},
            device=str(device),
            precision=precision_name(amp),
            run_id=run.run_id or None,
            interrupted=step < tc.steps,
            resumed=resumed,
        )
        if not summary.interrupted:
            run.log_metrics(step, {"images_per_sec": summary.images_per_sec, "train_seconds": seconds})
        status = "KILLED" if summary.interrupted else "FINISHED"
    finally:
        log.close()
        run.finish(status)
    if not summary.interrupted:
        hidden = ("start_step", "run_id", "interrupted", "resumed")
        metrics = {k: v for k, v in asdict(summary).items() if k not in hidden}
        metrics["rollbacks"] = len(divergences)
        if divergences:
            metrics["divergences"] = divergences
        write_text_atomic(paths.metrics / "train.json", json.dumps(metrics, indent=2) + "\n")
    return summary
