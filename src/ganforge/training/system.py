"""The System: everything a training run changes, in one object whose `state_dict()` is the checkpoint.

It owns the networks (G, D), the EMA generator, the objective (with its state: LeCam's averages), the
augmentation (ADA's p), both optimisers, the grad scaler and the step count. Saving, loading and resuming
iterate `modules` and `optimizers`: a new stateful part is one more entry there, never one more key listed
by hand. RNG streams (torch's, the latents' `noise_gen`, the batch sampler's) are the runtime's (see
`runtime.rng_state`).
"""

from __future__ import annotations

import copy
import hashlib
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from ganforge.config import TrainConfig
from ganforge.errors import GanforgeError
from ganforge.models import DOutput, ModelSpec, build
from ganforge.training.augment import AUGMENTS
from ganforge.training.objective import Objective
from ganforge.training.objective.cycle import CycleTerms
from ganforge.training.runtime import Dist


def make_objective(tc: TrainConfig, heads: int) -> Objective:
    return Objective(
        tc.loss,
        {name: (getattr(tc, name).weight, getattr(tc, name).interval) for name in ("r1", "r2", "gp")},
        class_loss=tc.class_loss,
        lecam=(tc.lecam.weight, tc.lecam.decay),
        n_critic=tc.n_critic,
        heads=heads,
        g_penalties={"pl": (tc.pl.weight, tc.pl.interval, tc.pl.decay)},
    )


def make_augment(tc: TrainConfig) -> nn.Module:
    return AUGMENTS[tc.augment.kind](**tc.augment.model_dump(exclude={"kind"}))


class System:
    def __init__(
        self,
        tc: TrainConfig,
        spec: ModelSpec,
        device: torch.device,
        amp: torch.dtype | None,
        fused: bool = True,
        dist: Dist = Dist(),
    ) -> None:
        self.spec = spec
        self.device = device
        self.amp = amp
        self.ema_decay = tc.ema_decay
        nhwc = tc.channels_last and spec.kind == "image"  # clips are 5-D: 3-D convolutions keep the default layout
        self.memory_format = torch.channels_last if nhwc else torch.contiguous_format
        nets = build(spec)
        if dist.ddp and device.type == "cuda":  # batch statistics over the global batch (SyncBatchNorm is CUDA-only)
            nets = nn.SyncBatchNorm.convert_sync_batchnorm(nets)
        self.G = nets["G"].to(device, memory_format=self.memory_format)
        self.D = nets["D"].to(device, memory_format=self.memory_format)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.dist = dist
        self.noise_gen = torch.Generator(device).manual_seed(tc.seed)  # G's latents (augmentation: torch's own)
        self.objective = make_objective(tc, heads=getattr(self.D, "num_heads", 1)).to(device)
        self.augment = make_augment(tc).to(device)
        # translation families: cycle/identity weights and the history pool (None for generative ones)
        self.translation = CycleTerms(spec).to(device) if spec.task == "translate" else None
        fused = fused and device.type in ("cuda", "cpu")  # one kernel per optimiser step, not one per tensor
        betas = (tc.beta1, tc.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=tc.lr_g, betas=betas, fused=fused)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=tc.lr_d, betas=betas, fused=fused)
        self.base_lr = (tc.lr_g, tc.lr_d)  # before the schedule (train.lr_decay_start) and after rollbacks
        self.decay = (tc.lr_decay_start * tc.steps, tc.steps) if tc.lr_decay_start < 1 else None
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
        self.step_count = 0
        self.check_grads = tc.grad_norm_limit > 0
        self.max_grad_norm = torch.zeros((), device=device)  # since the last `take_grad_norm`, on the device

    # --- what the checkpoint holds ---------------------------------------------------------------------------
    @property
    def modules(self) -> dict[str, nn.Module]:
        mods = {"G": self.G, "D": self.D, "G_ema": self.G_ema, "objective": self.objective, "augment": self.augment}
        return mods | ({"translation": self.translation} if self.translation is not None else {})

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_G": self.opt_G, "opt_D": self.opt_D}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {k: m.state_dict() for k, m in self.modules.items()}
        state |= {k: o.state_dict() for k, o in self.optimizers.items()}
        return state | {"scaler": self.scaler.state_dict(), "step": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, m in self.modules.items():
            if k not in state and not m.state_dict():  # a stateless part (checkpoints from before it existed)
                continue
            if k not in state:
                raise GanforgeError(f"the checkpoint has no {k} state (it predates this setting: train from scratch)")
            m.load_state_dict(state[k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state[k])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step_count = int(state["step"])

    # --- helpers the step uses -------------------------------------------------------------------------------
    def autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None else nullcontext()

    def batch(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> float in [-1, 1] on the device, in the models' memory format."""
        x = images_u8.to(self.device, non_blocking=True).float().mul_(2 / 255).sub_(1)
        return x.contiguous(memory_format=self.memory_format)

    def noise(self, n: int) -> torch.Tensor:
        """Latents for this process's `n` samples: its shard of the global batch's, drawn from one stream that
        every rank draws alike, so a job of N processes draws what one process would."""
        world, rank = self.dist.world, self.dist.rank
        z = torch.randn(n * world, self.spec.latent_dim, device=self.device, generator=self.noise_gen)
        return z[rank * n : (rank + 1) * n] if world > 1 else z

    def judge(self, x: torch.Tensor, y: torch.Tensor | None) -> DOutput:
        """D's verdict on what it sees: x through the augmentation, then D."""
        return self.D(self.augment(x), y)

    def judge_logits(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        return self.judge(x, y).logits

    def update(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """One optimiser step on `loss` (scaled under fp16), with its gradient norm tracked."""
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.dist.average_grads(opt)  # under DDP: the mean over the ranks, as if one process saw the global batch
        self._track_grad_norm(opt)
        self.scaler.step(opt)
        self.scaler.update()  # after every step: a step may update the same optimiser twice (D main, D reg)

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

    @torch.no_grad()
    def update_ema(self) -> None:
        # warm-up: early on the average follows G closely, so short runs are not dragged back to init
        t = self.step_count
        decay = min(self.ema_decay, (1 + t) / (10 + t))
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - decay)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)

    @torch.no_grad()
    def fingerprint(self) -> dict[str, str]:
        """A digest of each part's weights and buffers: the same on every rank of a DDP job, or they drifted apart."""
        out = {}
        for name, m in self.modules.items():
            for key, t in m.state_dict().items():
                if isinstance(t, torch.Tensor) and not key.startswith("pool."):  # each rank pools its own fakes
                    raw = t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                    out[f"{name}.{key}"] = hashlib.sha256(raw).hexdigest()
        return out

    def bad_weights(self) -> str | None:
        """The first of G, D, G_ema holding a NaN/Inf weight, or None."""
        for name, net in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            params = list(net.parameters())
            if not bool(torch.stack([p.isfinite().all() for p in params]).all()):
                return name
        return None

    def set_lr(self, lr_g: float, lr_d: float) -> None:
        """New base learning rates (a rollback lowers them), under the schedule at the current step."""
        self.base_lr = (lr_g, lr_d)
        self.schedule()

    def schedule(self) -> None:
        """The learning rates for the next step: the base ones, or after train.lr_decay_start a linear fall
        towards 0 at train.steps (CycleGAN's schedule)."""
        factor = 1.0
        if self.decay is not None and self.step_count >= self.decay[0]:
            start, end = self.decay
            factor = max(0.0, 1.0 - (self.step_count - start) / (end - start + 1))
        for opt, lr in zip((self.opt_G, self.opt_D), self.base_lr, strict=True):
            for group in opt.param_groups:
                group["lr"] = lr * factor
