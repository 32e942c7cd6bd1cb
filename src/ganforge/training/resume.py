"""Resume policy: which checkpoint a run continues from, and which settings may differ from it."""

from __future__ import annotations

from typing import Any

import torch

from ganforge.config import Config
from ganforge.errors import GanforgeError
from ganforge.models import FamilyConfig
from ganforge.paths import Paths
from ganforge.training import checkpoint

# Settings that may change between a checkpoint and its resume: how long and how, not what.
RESUMABLE = {"steps", "max_minutes", "sample_every", "checkpoint_every", "log_every", "device", "precision",
             "on_divergence", "max_rollbacks", "rollback_lr_factor", "grad_norm_limit", "nproc", "dist_timeout_s",
             "load_limit_gb"}  # fmt: skip


def setting_diffs(saved: dict[str, Any], cfg: Config, resumable: set[str]) -> list[str]:
    """The data and train keys whose values differ; a key the checkpoint predates counts as its default (a key
    added later, left at its default, is the model the checkpoint was trained as)."""
    now = cfg.model_dump(mode="json")
    diffs = []
    for section in ("data", "train"):
        fields = type(getattr(cfg, section)).model_fields
        for k, value in now[section].items():
            if section == "train" and k == "model":
                diffs += model_diffs(saved["train"], cfg.train.model)
                continue
            old = saved[section][k] if k in saved[section] else fields[k].get_default(call_default_factory=True)
            if k not in (resumable if section == "train" else ()) and old != value:
                diffs.append(f"{section}.{k}")
    return diffs


# train keys that held the model families' settings before they moved into train.model (checkpoints written
# before then hold them flat beside `model: <family>`)
FLAT_MODEL_KEYS = ("z_dim", "g_width", "d_width", "max_channels", "g_upsample", "d_norm", "pack", "motion_dim",
                    "image_d_frames", "motion_warp")  # fmt: skip


def model_diffs(saved_train: dict[str, Any], model: FamilyConfig) -> list[str]:
    """`train.model.<key>` for each key of the model's config that differs from a checkpoint's train settings, in
    their nested form or the older flat one; a key the checkpoint predates counts as its default."""
    old = saved_train.get("model", "dcgan")
    if isinstance(old, str):  # the flat form: `model: dcgan` and the family's keys beside it
        old = {"family": old, **{k: saved_train[k] for k in FLAT_MODEL_KEYS if k in saved_train}}
    now = model.model_dump(mode="json")
    if old.get("family") != now["family"]:
        return ["train.model.family"]
    fields = type(model).model_fields
    return [f"train.model.{k}" for k, v in now.items() if (old[k] if k in old else fields[k].get_default()) != v]


def check_resumable(saved: dict[str, Any], cfg: Config) -> None:
    if diffs := setting_diffs(saved, cfg, RESUMABLE):
        raise GanforgeError(
            f"--resume: the checkpoint was trained with other settings ({', '.join(diffs)}); "
            "restore them, or train from scratch without --resume"
        )


def to_resume(
    paths: Paths, cfg: Config, resume: bool, device: torch.device, writer: bool = True
) -> tuple[dict[str, Any] | None, str]:
    """The checkpoint state to continue from, and a note saying which and why ("" when none).

    `--resume`: the newest good checkpoint (the previous one when the current is damaged), or an error.
    Without it, a run that was stopped before its end (killed, Ctrl-C, a damaged file) continues by itself when
    its checkpoint was written with exactly these data and train settings and is short of train.steps; a
    finished run (one that reached train.steps or its time budget, train.max_minutes), or one with other
    settings, is not touched: training starts from scratch. Only the `writer`
    (rank 0 under DDP) drops a damaged file."""
    if resume:
        state, used, why = checkpoint.load_latest(paths.checkpoint, map_location=device)
        check_resumable(state["config"], cfg)
        if why and writer:  # the current file is damaged: drop it, or the next save would rotate it over the good one
            paths.checkpoint.unlink(missing_ok=True)
        return state, (f"resuming from {used} (step {state['step']}): {why}" if why else "")
    if not (paths.checkpoint.exists() or checkpoint.previous(paths.checkpoint).exists()):
        return None, ""
    try:
        state, used, why = checkpoint.load_latest(paths.checkpoint, map_location=device)
    except GanforgeError as exc:
        return None, f"starting from scratch: {exc}"
    # a run that ended on its time budget (train.max_minutes) is finished: the next run starts afresh
    if (
        state["step"] >= cfg.train.steps
        or state.get("ended_by") == "max_minutes"
        or setting_diffs(state["config"], cfg, set())
    ):
        return None, ""
    how = ""
    if why:
        if writer:
            paths.checkpoint.unlink(missing_ok=True)
        how = f"; {why}"
    return state, f"continuing the interrupted run of these settings from {used} (step {state['step']}){how}"
