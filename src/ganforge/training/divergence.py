"""Divergence: NaN/Inf losses or weights, or a gradient norm over the limit, found at a log point. The run
stops (the last good checkpoint intact) or rolls back to it with lower learning rates."""

from __future__ import annotations

import json
import math
from typing import Any

from ganforge import tracking
from ganforge.config import TrainConfig
from ganforge.errors import TrainingDiverged
from ganforge.paths import Paths, write_text_atomic
from ganforge.training import checkpoint
from ganforge.training.system import System


class Watchdog:
    def __init__(
        self, tc: TrainConfig, paths: Paths, run: tracking.TrainRun, good_step: int | None, master: bool = True
    ) -> None:
        self.tc, self.paths, self.run, self.master = tc, paths, run, master  # master: the rank that writes files
        self.good_step = good_step  # the step of this run's last checkpoint on disk (None: none yet)
        self.events: list[dict[str, Any]] = []

    def problem(self, values: dict[str, float], grad_norm: float, s: System, step: int, n: int) -> str | None:
        """Why the run diverged over the last `n` steps, or None."""
        span = f"between steps {step - n + 1} and {step}"
        if bad := [k for k in ("loss_d", "loss_g") if not math.isfinite(values[k])]:
            return f"{bad[0]} became {values[bad[0]]} {span}"
        if name := s.bad_weights():
            return f"{name} holds NaN/Inf weights at step {step}"
        if s.check_grads and not grad_norm <= self.tc.grad_norm_limit:
            return (
                f"a gradient norm of {grad_norm:.4g} {span} is over train.grad_norm_limit={self.tc.grad_norm_limit:g}"
            )
        return None

    def handle(self, problem: str, s: System, step: int) -> int:
        """Roll back (returns the step gone back to) or stop (raises TrainingDiverged), as train.on_divergence says."""
        tc = self.tc
        if tc.on_divergence != "rollback" or self.good_step is None or len(self.events) >= tc.max_rollbacks:
            self.events.append({"step": step, "reason": problem, "action": "stopped"})
            self._record(step)
            again = f" (after {len(self.events) - 1} rollback(s))" if len(self.events) > 1 else ""
            kept = "no checkpoint was written yet" if self.good_step is None else (
                f"the last good checkpoint ({self.paths.checkpoint}, step {self.good_step}) is intact")  # fmt: skip
            raise TrainingDiverged(
                f"train: {problem}{again}; {kept}; try lower train.lr_g/train.lr_d, train.precision=fp32 or "
                "train.on_divergence=rollback"
            )
        # back to the last checkpoint, both learning rates lowered (once more per rollback); the RNG streams go
        # on, so other batches and noise follow
        s.load_state_dict(checkpoint.load_latest(self.paths.checkpoint, map_location=s.device)[0])
        factor = tc.rollback_lr_factor ** (len(self.events) + 1)
        s.set_lr(tc.lr_g * factor, tc.lr_d * factor)
        back = s.step_count
        self.events.append({"step": back, "reason": problem, "action": f"rolled back to step {back}, lr x{factor:g}"})
        self._record(back)
        return back

    def _record(self, step: int) -> None:
        """The divergence in metrics/train.json (status diverged when it stops the run) and on the MLflow run."""
        last = self.events[-1]
        if last["action"] == "stopped" and self.master:
            record = {"status": "diverged", "step": step, "reason": last["reason"],
                      "rollbacks": len(self.events) - 1, "divergences": self.events}  # fmt: skip
            write_text_atomic(self.paths.metrics / "train.json", json.dumps(record, indent=2) + "\n")
        self.run.set_tags({"ganforge.divergence": f"step {last['step']}: {last['reason']} -> {last['action']}"})
        self.run.log_metrics(step, {"divergences": len(self.events)})
