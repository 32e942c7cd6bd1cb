"""Full-state checkpoints: written atomically with a checksum, loaded with weights_only=True (no arbitrary
unpickling), the previous one kept beside the current one.

A checkpoint holds `sha256`: a digest of everything else in it (every tensor's dtype, shape and bytes, every
other value's repr, in key order). `load` recomputes it, so a file that was damaged after it was written (a
flipped bit, a truncated copy) is refused with a clear message instead of training or sampling from garbage.
`save` first moves the current file to `<name>.prev.pt`, then puts the new one in place (two renames); a
writer killed at any moment leaves a good current or a good previous file, and `load_latest` takes the
newest good one. Files written before checksums existed (no `sha256`) load without the check.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from ganforge import faults, safeload
from ganforge.errors import GanforgeError
from ganforge.models import ModelSpec, build, build_generator
from ganforge.paths import atomic_path

FORMAT = 1
DIGEST = "sha256"


def previous(path: Path) -> Path:
    """Where `save` keeps the checkpoint it replaced: models/checkpoint.prev.pt."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for k in sorted(obj, key=repr):
            h.update(f"{k!r}:".encode())
            _feed(h, obj[k])
    elif isinstance(obj, list | tuple):
        h.update(f"L{len(obj)};".encode())
        for v in obj:
            _feed(h, v)
    else:
        h.update(f"V{obj!r};".encode())


def digest(state: dict[str, Any]) -> str:
    """The checksum of a checkpoint's contents (its `sha256` entry left out)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != DIGEST})
    return h.hexdigest()


def save(path: Path, state: dict[str, Any], keep_previous: bool = True) -> None:
    payload = {"format": FORMAT, **state}
    payload[DIGEST] = digest(payload)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
        if keep_previous and path.exists():
            os.replace(path, previous(path))
            faults.reach("checkpoint.swap")


def load(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise GanforgeError(f"{path}: no checkpoint (run `ganforge train` first)")
    state = safeload.read_torch_file(path, "ganforge checkpoint", map_location)  # data only; bombs refused
    if not isinstance(state, dict) or state.get("format") != FORMAT or "G_ema" not in state:
        raise GanforgeError(f"{path}: not a ganforge checkpoint (format {FORMAT})")
    if DIGEST in state and digest(state) != state[DIGEST]:
        raise GanforgeError(f"{path}: damaged checkpoint (its contents no longer match the checksum written with it)")
    _check_networks(state, path)
    return state


def _check_networks(state: dict[str, Any], path: Path) -> None:
    """The spec must build (on the meta device: no memory) networks that the stored weights fit exactly, and no
    larger than the file: a forged spec cannot make `generator_from_state` allocate a terabyte."""
    raw = safeload.arch_kwargs(state.get("spec"), path, "ganforge checkpoint", "spec")
    try:
        spec = ModelSpec.from_dict(raw)  # the current form, or the flat one of older checkpoints
    except GanforgeError as exc:
        raise GanforgeError(f"{path}: {exc}") from None

    def networks() -> dict[str, torch.nn.Module]:
        nets = build(spec)
        return {"G_ema": nets["G"], "G": nets["G"], "D": nets["D"]}

    weights = {k: state[k] for k in ("G_ema", "G", "D") if k in state}
    safeload.check_weights(path, "ganforge checkpoint", networks, ("checkpoint", spec), weights)


def load_latest(path: Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path, str | None]:
    """The newest good checkpoint: `path`, else the previous one (`previous(path)`). Returns (state, the file
    used, why the current one was passed over or None). Raises the current file's error when neither is good."""
    try:
        return load(path, map_location), path, None
    except GanforgeError as exc:
        prev = previous(path)
        if not prev.exists():
            raise
        why = str(exc) if path.exists() else f"{path} is missing (a save was stopped between its two renames)"
        try:
            return load(prev, map_location), prev, why
        except GanforgeError:
            raise exc from None


def load_generator(path: Path | str, ema: bool = True, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The generator of a checkpoint, in eval mode: `G(z, y)` -> images in [-1, 1]."""
    return generator_from_state(load(path, map_location=device), ema, device)


def generator_from_state(
    state: dict[str, Any], ema: bool = True, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """The generator of an already loaded checkpoint (EMA or raw weights), in eval mode."""
    G = build_generator(ModelSpec.from_dict(state["spec"]))
    G.load_state_dict(state["G_ema" if ema else "G"])
    return G.to(device).eval().requires_grad_(False)
