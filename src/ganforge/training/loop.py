"""The train stage: `train()` runs the System (training/system.py) through the step (training/step.py).

The loop keeps the host and the device apart: per-step statistics are summed on the device and read back only
at log points, where divergence is caught before anything is written. Checkpoints hold the System's full
state plus RNG streams, spec and config, so a resumed run continues bit for bit where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm import tqdm

from ganforge import faults, tracking
from ganforge.config import Config, TrainConfig
from ganforge.data.dataset import KINDS, PreparedData, ShardReader
from ganforge.errors import GanforgeError
from ganforge.models import KINDS as MODEL_KINDS
from ganforge.models import ModelSpec
from ganforge.paths import Paths, atomic_path, write_text_atomic
from ganforge.training import checkpoint, runtime
from ganforge.training.divergence import Watchdog
from ganforge.training.prefetch import Prefetcher
from ganforge.training.resume import to_resume
from ganforge.training.sampler import BatchSampler, DomainSampler
from ganforge.training.snapshots import LossLog, NoLog, fixed_inputs, sample_grid
from ganforge.training.step import BASE_STATS, stat_names, train_step
from ganforge.training.system import System
from ganforge.training.translation import (
    counterparts,
    domain_table,
    fixed_sources,
    translate_stat_names,
    translate_step,
    translation_grid,
)


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
    out_of_time: bool = False  # ended at train.max_minutes, before train.steps: a finished run
    resumed: str = ""  # how the run continued an earlier one ("" = from scratch)

    @classmethod
    def of(cls, s: System, tc: TrainConfig, start: int, step: int, seconds: float, last: dict[str, float],
           run_id: str | None, resumed: str, dist: runtime.Dist,
           out_of_time: bool = False) -> TrainSummary:  # fmt: skip
        device = f"{dist.world} x {s.device}" if dist.ddp else str(s.device)
        return cls(steps=step, start_step=start, images_per_sec=(step - start) * tc.batch_size / max(seconds, 1e-9),
                   seconds=seconds, **{k: last[k] for k in BASE_STATS}, device=device,
                   precision=runtime.precision_name(s.amp), run_id=run_id or None,
                   interrupted=step < tc.steps and not out_of_time, out_of_time=out_of_time,
                   resumed=resumed)  # fmt: skip

    def line(self, paths: Paths) -> str:
        done = self.steps - self.start_step
        what = "interrupted at" if self.interrupted else "trained to"
        budget = ", train.max_minutes reached" if self.out_of_time else ""
        return (
            (f"train: {self.resumed}\n" if self.resumed else "")
            + f"train: {what} step {self.steps}{budget} ({done} steps, {self.images_per_sec:.0f} img/s, {self.device} "
            f"{self.precision}) in {self.seconds:.0f}s; loss_d {self.loss_d:.3f} loss_g {self.loss_g:.3f} -> "
            f"{paths.checkpoint}, {paths.samples_latest}"
            + (f"; MLflow run {self.run_id}" if self.run_id else "")
            + ("; run `ganforge train` again (or with --resume) to continue" if self.interrupted else "")
        )


def open_data(cfg: Config, paths: Paths) -> tuple[PreparedData, torch.Tensor | ShardReader, torch.Tensor]:
    """The prepared train split, checked against what the model trains on: in memory, or (over
    train.load_limit_gb) a reader of its shards."""
    tc = cfg.train
    data = PreparedData.open(paths.prepared, kinds=KINDS)
    kind = tc.model.kind
    if data.kind != kind:
        what = {"image": "images", "video": "video clips"}
        fit = sorted(m for m, k in MODEL_KINDS.items() if k == data.kind)
        raise GanforgeError(
            f"train.model={tc.model.family} trains on {what[kind]}, but {paths.prepared} holds {what[data.kind]} "
            f"(data.kind {data.kind}): set train.model to {' or '.join(fit)}, or prepare {what[kind]}"
        )
    if tc.conditional and data.num_classes < 2:
        raise GanforgeError(
            f"train.conditional is true but {paths.prepared} has {data.num_classes} classes "
            "(use one sub-folder per class, or set train.conditional=false and drop class_accuracy from "
            "registry.gate.min)"
        )
    if data.nbytes("train") > tc.load_limit_gb * 2**30:  # read from the shards batch by batch: memory stays flat
        pin = tc.device != "cpu" and torch.cuda.is_available()
        images, labels = data.reader("train", pin=pin), data.labels("train")
    else:
        images, labels = data.load("train")
    if len(images) == 0:
        raise GanforgeError(f"{paths.prepared}: the train split is empty (lower data.test_fraction)")
    return data, images, labels


def open_domains(cfg: Config, data: PreparedData, labels: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """A translation family's (domain, class) of each train image ([N, 2]; domain -1: in none) and the domains'
    names, checked."""
    tc, where = cfg.train, data.out_dir
    table, names = domain_table(list(data.class_names), cfg.translate.domains)
    if data.num_classes < 2:
        raise GanforgeError(f"train.model={tc.model.family} translates between classes, but {where} has none "
                            "(prepare an image folder with one sub-folder per domain)")  # fmt: skip
    if tc.model.family == "cyclegan" and len(names) != 2:
        raise GanforgeError(
            f"train.model=cyclegan translates between 2 domains, but there are {len(names)} ({', '.join(names[:6])}"
            f"{', ...' if len(names) > 6 else ''}): set translate.domains to two class names or patterns, or use "
            "train.model=stargan"
        )
    domains = table[labels.cpu()]
    counts = torch.bincount(domains[domains >= 0], minlength=len(names))
    if empty := [n for n, c in zip(names, counts.tolist(), strict=True) if c == 0]:
        raise GanforgeError(f"translate.domains: {empty[0]!r} has no train image in {where}")
    return torch.stack([domains, labels.cpu()], 1).to(labels.device), names  # [N, 2]: domain, class


def model_spec(tc: TrainConfig, data: PreparedData, domains: int = 0) -> ModelSpec:
    model = tc.model
    if domains:  # a translator: D's class head covers the data's classes (train.class_loss), or there is none
        model = model.model_copy(update={"classes": data.num_classes if tc.class_loss > 0 else 0})
    return ModelSpec.for_data(
        model,
        resolution=data.resolution,
        channels=data.channels,
        num_classes=domains or (data.num_classes if tc.conditional else 0),
        frames=data.frames or 0,
        class_head=tc.class_loss > 0 and tc.conditional and data.num_classes > 0,
    )


def train(cfg: Config, paths: Paths, resume: bool = False, progress: bool = True) -> TrainSummary:
    """Train from params; write checkpoint, sample grids, loss CSV, metrics/train.json, MLflow run.

    Under torchrun (WORLD_SIZE > 1) every rank runs this: each takes its shard of every global batch of
    train.batch_size, gradients are averaged over the ranks, and rank 0 alone writes files and logs."""
    dist = runtime.Dist.from_env(cfg.train.device, cfg.train.dist_timeout_s)
    try:
        return _train(cfg, paths, resume, progress, dist)
    finally:
        dist.close()


def _train(cfg: Config, paths: Paths, resume: bool, progress: bool, dist: runtime.Dist) -> TrainSummary:
    tc = cfg.train
    data, images, labels = open_data(cfg, paths)
    device = dist.device(tc.device)
    amp = runtime.pick_precision(tc.precision, device)
    images, labels = runtime.place(images, labels, device)
    translate = tc.model.task == "translate"
    domain_names: list[str] = []
    if translate:  # the labels become domains
        labels, domain_names = open_domains(cfg, data, labels)
    torch.manual_seed(tc.seed)  # the same initial weights on every rank
    spec = model_spec(tc, data, len(domain_names))
    if dist.ddp and tc.batch_size % (dist.world * spec.pack):
        raise GanforgeError(
            f"train.batch_size ({tc.batch_size}) is the global batch: it must be a multiple of the {dist.world} "
            f"processes x train.model.pack ({spec.pack})"
        )
    s = System(tc, spec, device, amp, dist=dist)
    if s.translation is not None and s.translation.by_class:
        s.translation.set_counterparts(counterparts(list(data.class_names), cfg.translate.domains))
    if dist.ddp:
        torch.manual_seed(tc.seed + dist.rank)  # each rank its own augmentation (the latents: noise_gen, shared)
    # one stream of global batches, the same on every rank; each rank takes its shard of each
    sampler: BatchSampler | DomainSampler = (
        DomainSampler(labels[:, 0].cpu(), tc.batch_size, seed=tc.seed)
        if translate
        else BatchSampler(labels.cpu(), tc.batch_size, spec.pack, by_class=tc.conditional, seed=tc.seed)
    )
    state, resumed = to_resume(paths, cfg, resume, device, writer=dist.master)
    dist.barrier()  # rank 0 may have dropped a damaged checkpoint
    if state is not None:
        s.load_state_dict(state)
        sampler.set_state(state["rng"]["sampler"])
        runtime.set_rng_state(_rank_rng(state["rng"], dist, tc.seed + s.step_count), device, s.noise_gen)
    elif paths.samples_dir.exists() and dist.master:  # a fresh run: old snapshots belong to another run
        for old in paths.samples_dir.glob("step_*.png"):
            old.unlink()
    start = step = s.step_count
    if start >= tc.steps:
        raise GanforgeError(f"--resume: the checkpoint is already at step {start} >= train.steps={tc.steps}")

    run = tracking.start_train_run(cfg, paths.mlflow_run, resume=state is not None,
                                   run_id=None if state is None else state.get("run_id")) if dist.master \
        else tracking.NoRun()  # fmt: skip
    names = translate_stat_names(s) if translate else stat_names(s)
    step_fn = translate_step if translate else train_step
    fixed = fixed_sources(images, labels[:, 0].cpu(), spec.num_classes) if translate else fixed_inputs(spec)
    # a translator's checkpoint names its domains (the translate stage, evaluate and the pyfunc read them)
    domains = {"domains": domain_names, "domain_patterns": list(cfg.translate.domains)} if translate else {}
    open_log = LossLog if dist.master else NoLog
    log = open_log(paths.train_losses, start, names)
    watchdog = Watchdog(tc, paths, run, good_step=start if state is not None else None, master=dist.master)
    acc, n_acc, last = torch.zeros(len(names), device=device), 0, {}

    # contiguous shards of each global batch keep PacGAN's same-class groups whole
    shard = (lambda idx: idx.view(dist.world, -1)[dist.rank]) if dist.ddp else (lambda idx: idx)
    on_device = isinstance(images, torch.Tensor) and images.device.type == device.type  # where the step runs
    pin = device.type == "cuda" and isinstance(images, torch.Tensor)  # (a shard reader on CUDA reads pinned)
    read = (lambda idx: images[idx].pin_memory()) if pin and not on_device else (lambda idx: images[idx])
    batches = Prefetcher(sampler, read=read, pick=shard, depth=0 if on_device else tc.prefetch)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor | None]:
        idx, rows = batches.next()
        y = labels[idx].to(device, non_blocking=True) if spec.num_classes else None
        return s.batch(rows), y

    def save_checkpoint(step: int, ended_by: str | None = None) -> None:
        rngs = dist.gather(runtime.rng_state(device, batches.state(), s.noise_gen))  # each rank's augmentation RNG
        if dist.ddp and (apart := _drifted(dist.gather(s.fingerprint()))):
            raise GanforgeError(f"train: the ranks' state differs at step {step} ({apart}; a bug: please report it)")
        if dist.master:
            rng = {**rngs[0], "ranks": rngs} if dist.ddp else rngs[0]
            checkpoint.save(paths.checkpoint, {**s.state_dict(), "spec": spec.to_dict(),
                            "config": cfg.model_dump(mode="json"), "class_names": list(data.class_names), **domains,
                            "rng": rng, "stats": dict(last), "run_id": run.run_id or None,
                            **({"ended_by": ended_by} if ended_by else {})})  # fmt: skip
        dist.barrier()  # no rank reads it (a rollback) before it is whole
        watchdog.good_step = step

    t0, status = time.perf_counter(), "FAILED"
    budget_s = tc.max_minutes * 60 if tc.max_minutes else None
    out_of_time = False  # (the loop may not run: resumed at the end)
    try:
        show = progress and dist.master
        with runtime.StopFlag() as stop, tqdm(total=tc.steps, initial=start, desc="train", unit="step",
                                              disable=not show, mininterval=1.0) as bar:  # fmt: skip
            while step < tc.steps:
                if s.decay is not None:
                    s.schedule()
                acc += step_fn(s, next_batch)
                dist.average_buffers([s.G, s.D, s.G_ema, s.objective, s.augment])
                n_acc, step = n_acc + 1, step + 1
                faults.reach("train.step")
                bar.update(1)
                # a signal to one rank stops every rank at the same step; under DDP they agree at log points (one
                # host sync there, not in every step)
                stopping = dist.any(stop.set, device) if not dist.ddp or step % tc.log_every == 0 else False
                # the time budget, checked at log points (so every rank ends at the same step)
                out_of_time = budget_s is not None and step % tc.log_every == 0 and step < tc.steps \
                    and dist.any(time.perf_counter() - t0 >= budget_s, device)  # fmt: skip
                end = step == tc.steps or stopping or out_of_time
                sample_now = end or step % tc.sample_every == 0
                checkpoint_now = end or step % tc.checkpoint_every == 0
                if sample_now or checkpoint_now or step % tc.log_every == 0:  # nothing is written unchecked
                    values = dict(zip(names, dist.mean(acc / n_acc).tolist(), strict=True))
                    dist.max(s.max_grad_norm)
                    grad_norm = s.take_grad_norm()
                    problem = watchdog.problem(values, grad_norm, s, step, n_acc)
                    acc.zero_()
                    n_acc = 0
                    if problem:
                        step = bar.n = watchdog.handle(problem, s, step)  # rolled back, or raises
                        log.close()
                        log = open_log(paths.train_losses, step, names)
                        continue
                    last = values
                    log.write(step, values)
                    run.log_metrics(step, {**values, "grad_norm": grad_norm} if s.check_grads else values)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()}, refresh=False)
                if sample_now and dist.master:
                    _snapshot(s, fixed, step, paths, run, translate)
                if checkpoint_now:
                    save_checkpoint(step, "max_minutes" if out_of_time else None)
                if stopping or out_of_time:
                    break
        summary = TrainSummary.of(
            s, tc, start, step, time.perf_counter() - t0, last, run.run_id, resumed, dist, out_of_time
        )
        if not summary.interrupted:
            run.log_metrics(step, {"images_per_sec": summary.images_per_sec, "train_seconds": summary.seconds})
        status = "KILLED" if summary.interrupted else "FINISHED"
    finally:
        batches.close()
        log.close()
        run.finish(status)
    if not summary.interrupted and dist.master:
        _write_metrics(paths, summary, watchdog.events)
    return summary


def _drifted(prints: list[dict[str, str]]) -> str:
    """The parts of the System whose digests differ between ranks ("" when every rank holds the same)."""
    keys = [k for k in prints[0] if len({p.get(k) for p in prints}) > 1]
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _rank_rng(rng: dict[str, Any], dist: runtime.Dist, reseed: int) -> dict[str, Any]:
    """This rank's RNG streams from a checkpoint: its own when the checkpoint has one per rank of a job this size;
    a checkpoint of another world size gives each rank a fresh stream (the run goes on, not bit for bit)."""
    ranks = rng.get("ranks")
    if not dist.ddp and not ranks:
        return rng
    if ranks and len(ranks) == dist.world:
        return {**rng, **ranks[dist.rank]}
    gen = torch.Generator().manual_seed(reseed * 1000 + dist.rank)
    return {**rng, "torch": gen.get_state()}


def _snapshot(s: System, fixed: tuple[Any, ...], step: int, paths: Paths, run: tracking.TrainRun,
              translate: bool) -> None:  # fmt: skip
    paths.samples_dir.mkdir(parents=True, exist_ok=True)
    snap = paths.samples_dir / f"step_{step:06d}.png"
    if translate:  # each domain's sources, then their translations into the others
        translation_grid(s.G_ema, *fixed, s.spec.num_classes, snap)
    else:
        sample_grid(s, *fixed, snap)
    with atomic_path(paths.samples_latest) as tmp:
        tmp.write_bytes(snap.read_bytes())
    run.log_artifact(snap, "samples")


def _write_metrics(paths: Paths, summary: TrainSummary, events: list[dict[str, Any]]) -> None:
    hidden = ("start_step", "run_id", "interrupted", "resumed")
    metrics: dict[str, Any] = {k: v for k, v in asdict(summary).items() if k not in hidden}
    metrics["rollbacks"] = len(events)
    if events:
        metrics["divergences"] = events
    write_text_atomic(paths.metrics / "train.json", json.dumps(metrics, indent=2) + "\n")
