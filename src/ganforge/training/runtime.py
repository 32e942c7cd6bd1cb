"""Where and how a run executes: device, precision, RNG streams, and Ctrl-C/SIGTERM handling.

(Distributed runs add their rank and world size here.)
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import torch

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


def place(images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Small sets live on the GPU (no host-to-device copy per step); elsewhere the data stays where it is."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if images.nbytes <= 2**31:
            return images.to(device), labels.to(device)
    return images, labels


def rng_state(device: torch.device, sampler_state: torch.Tensor) -> dict[str, Any]:
    rng = {"torch": torch.get_rng_state(), "sampler": sampler_state}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def set_rng_state(rng: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
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
