"""Where and how a run executes: device, precision, RNG streams, the process group, Ctrl-C/SIGTERM handling.

Distributed runs are nanoGPT-shaped: torchrun (or `train.nproc`, which launches through torch's elastic agent)
sets RANK, LOCAL_RANK and WORLD_SIZE; `Dist.from_env()` joins the group; `ddp = world > 1`, `master = rank == 0`;
each rank takes its shard of every global batch; gradients are averaged over the ranks at every optimiser update;
the objective's, augmentation's and normalisation layers' state is averaged every step, so every rank holds the
same System (checked at every checkpoint) and rank 0 alone writes it.
"""

from __future__ import annotations

import datetime
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn

from ganforge.errors import GanforgeError


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


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank, local rank (its GPU on the host) and world size."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def ddp(self) -> bool:
        return self.world > 1

    @property
    def master(self) -> bool:
        """Rank 0: the one process that writes files, logs to MLflow and draws the progress bar."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device_pref: str, timeout_s: int) -> Dist:
        """Join the process group torchrun describes in the environment (nothing to join without it): NCCL
        on CUDA, gloo on CPU; a rank that stops answering fails the others after `timeout_s`, not never."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if tdist.is_initialized():
            return cls(rank, local, world)
        cuda = device_pref.startswith("cuda") or (device_pref == "auto" and torch.cuda.is_available())
        if cuda:
            torch.cuda.set_device(local)
        tdist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
        return cls(rank, local, world)

    def device(self, pref: str) -> torch.device:
        """Each rank's device: its own GPU (cuda:LOCAL_RANK) under DDP on CUDA."""
        device = pick_device(pref)
        if self.ddp and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def average_grads(self, opt: torch.optim.Optimizer) -> None:
        """Average the gradients of `opt`'s parameters over the ranks, in one all-reduce, before its step: what
        DistributedDataParallel does in backward, done per optimiser update instead. A GAN step is several
        phases (D main, a lazy R1 through double backward that leaves D's class head out, G main whose backward
        runs through a D that is not being trained, G's path length): DDP's reducer expects one forward and one
        backward over a fixed set of parameters and refuses ("Expected to have finished reduction in the prior
        iteration"); StyleGAN3's training loop averages its gradients the same way."""
        if self.ddp:  # the parameters with a gradient are the same on every rank: they ran the same phases
            self._average([p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None])

    def _average(self, tensors: list[torch.Tensor]) -> None:
        """Each of `tensors` replaced by its mean over the ranks, all in one all-reduce of their concatenation."""
        if not tensors:
            return
        flat = torch.cat([t.detach().flatten().float() for t in tensors])
        tdist.all_reduce(flat)
        flat /= self.world
        for t, part in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
            t.copy_(part.view_as(t))

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """`x` averaged over the ranks (in place); `x` itself in a single process."""
        if self.ddp:
            self._average([x])
        return x

    def max(self, x: torch.Tensor) -> torch.Tensor:
        if self.ddp:
            tdist.all_reduce(x, op=tdist.ReduceOp.MAX)
        return x

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on one (a signal that reached one rank stops them all)."""
        if not self.ddp:
            return flag
        t = torch.tensor([float(flag)], device=device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return bool(t.item())

    def average_buffers(self, modules: list[nn.Module]) -> None:
        """Floating-point buffers (BatchNorm's running statistics, LeCam's averages, ADA's r_t counts and p)
        averaged over the ranks in one all-reduce: every rank holds the same state, and checkpoints rank 0's."""
        if self.ddp:
            self._average([b for m in modules for b in m.buffers() if b.is_floating_point()])

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (a collective: every rank calls it)."""
        if not self.ddp:
            return [obj]
        out: list[Any] = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.ddp:
            tdist.barrier()

    def close(self) -> None:
        if self.ddp and tdist.is_initialized():
            tdist.destroy_process_group()


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


def place(images: Any, labels: torch.Tensor, device: torch.device) -> tuple[Any, torch.Tensor]:
    """Small sets live on the GPU (no host-to-device copy per step); elsewhere the data stays where it is (a set
    read from its shards stays there)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if isinstance(images, torch.Tensor) and images.nbytes <= 2**31:
            return images.to(device), labels.to(device)
    return images, labels


def rng_state(device: torch.device, sampler_state: torch.Tensor, noise: torch.Generator) -> dict[str, Any]:
    rng = {"torch": torch.get_rng_state(), "sampler": sampler_state, "noise": noise.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def set_rng_state(rng: dict[str, Any], device: torch.device, noise: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"])
    if "noise" in rng:  # checkpoints from before the latents had their own stream go on with a fresh one
        noise.set_state(rng["noise"])
    if device.type == "cuda" and rng.get("cuda"):
        torch.cuda.set_rng_state_all(rng["cuda"])


class StopFlag:
    """First Ctrl-C/SIGTERM: finish the current step, checkpoint, exit cleanly. Second: abort."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
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
