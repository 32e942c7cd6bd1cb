"""Full-state checkpoints: written atomically, loaded with weights_only=True (no arbitrary unpickling)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ganforge.errors import GanforgeError
from ganforge.models import ModelSpec, build_generator
from ganforge.paths import atomic_path

FORMAT = 1


def save(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise GanforgeError(f"{path}: no checkpoint (run `ganforge train` first)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or holds objects weights_only refuses
        raise GanforgeError(f"{path}: not a readable ganforge checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "G_ema" not in state:
        raise GanforgeError(f"{path}: not a ganforge checkpoint (format {FORMAT})")
    return state


def load_generator(path: Path | str, ema: bool = True, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The generator of a checkpoint, in eval mode: `G(z, y)` -> images in [-1, 1]."""
    return generator_from_state(load(path, map_location=device), ema, device)


def generator_from_state(
    state: dict[str, Any], ema: bool = True, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """The generator of an already loaded checkpoint (EMA or raw weights), in eval mode."""
    G = build_generator(ModelSpec(**state["spec"]))
    G.load_state_dict(state["G_ema" if ema else "G"])
    return G.to(device).eval().requires_grad_(False)
