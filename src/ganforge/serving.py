"""The MLflow pyfunc sampler that consumers load: `mlflow.pyfunc.load_model("models:/<name>@champion")`.

Input: a DataFrame with `seed` (int >= 0), optional `class` (int; ignored by unconditional generators, where -1
means "no class") and optional `truncation` (float in (0, 1], default 1). Output: uint8 images [N, C, H, W], or
for video generators (mocogan) uint8 clips [N, C, T, H, W], one clip per row.
Rows are drawn through the one sampler (`ganforge.sampling.Sampler`): the latent of a row depends on its seed
alone (`torch.Generator().manual_seed(seed)`, `spec.latent_dim` values: a video generator's content and motion
noise both come from the seed), so the same seed gives the same image or clip, whatever else is in the batch.
Truncation psi < 1 draws z from a normal truncated to |z| <= 2 and scales it by psi: the library's images and
clips, evaluate's samples and the training grids regenerate exactly from (version, seed, class, psi).

Only the tracking layer (`ganforge.registry`) and consumers import this module: it imports mlflow.
The model is logged with `code_paths=[<ganforge package>]`, so it loads where ganforge is not installed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from ganforge.models import ModelSpec, build_generator
from ganforge.sampling import Sampler

BATCH = 32  # rows per forward pass: bounds memory, not results (each row's latent comes from its own seed)
COLUMNS = ("seed", "class", "truncation")
TRANSLATOR_COLUMNS = ("image", "target")
NORMALISE = ("resolution", "channels", "fit", "resize_filter")  # data keys that say how an input image is sized


def write_artifacts(checkpoint: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """Write the sampler's artifacts from a loaded checkpoint: EMA generator weights and the discriminator's (plain
    state dicts; the library scores candidates with D), and the spec JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"generator": out_dir / "generator.pt", "spec": out_dir / "spec.json"}
    torch.save({k: v.detach().cpu() for k, v in checkpoint["G_ema"].items()}, files["generator"])
    if "D" in checkpoint:
        files["discriminator"] = out_dir / "discriminator.pt"
        torch.save({k: v.detach().cpu() for k, v in checkpoint["D"].items()}, files["discriminator"])
    spec = ModelSpec.from_dict(checkpoint["spec"]).to_dict()  # an older checkpoint's flat spec: the current form
    meta = {"spec": spec, "class_names": list(checkpoint.get("class_names") or [])}
    if ModelSpec.from_dict(spec).task == "translate":  # a translator: its domains, how its inputs are sized
        data = (checkpoint.get("config") or {}).get("data") or {}
        sized = {k: data[k] for k in NORMALISE if k in data} | {
            "resolution": spec["resolution"],
            "channels": spec["channels"],
        }
        meta |= {"domains": list(checkpoint["domains"]), "data": sized}
    files["spec"].write_text(json.dumps(meta))
    return {k: str(v) for k, v in files.items()}


def signature(channels: int, resolution: int, frames: int = 0) -> Any:
    """Input columns and output tensor: uint8 [-1, C, H, W] images, or [-1, C, T, H, W] clips when `frames` > 0."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    inputs = Schema(
        [
            ColSpec("long", "seed"),
            ColSpec("long", "class", required=False),
            ColSpec("double", "truncation", required=False),
        ]
    )
    shape = (-1, channels, *([frames] if frames else []), resolution, resolution)
    outputs = Schema([TensorSpec(np.dtype(np.uint8), shape)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(num_classes: int) -> pd.DataFrame:
    classes = [0, min(1, num_classes - 1)] if num_classes else [-1, -1]
    return pd.DataFrame({"seed": [0, 1], "class": classes, "truncation": [1.0, 0.7]})


class GeneratorSampler(mlflow.pyfunc.PythonModel):
    """Seed-addressed sampling from a ganforge generator (EMA weights), on CPU: images, or clips from a video one."""

    def load_context(self, context: Any) -> None:
        meta = json.loads(Path(context.artifacts["spec"]).read_text())
        self.spec = ModelSpec.from_dict(meta["spec"])
        self.class_names: list[str] = list(meta.get("class_names") or [])
        G = build_generator(self.spec)
        G.load_state_dict(torch.load(context.artifacts["generator"], map_location="cpu", weights_only=True))
        self.G = G.to("cpu").eval().requires_grad_(False)
        self.sampler = Sampler(self.G, self.spec, batch_size=BATCH)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        seeds, classes, truncation = self._validate(model_input)
        return self.sampler.uint8(seeds, classes, truncation).numpy()

    def _validate(self, frame: pd.DataFrame) -> tuple[list[int], list[int], list[float]]:
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"expected a pandas DataFrame with columns {list(COLUMNS)}, got {type(frame).__name__}")
        unknown = [c for c in frame.columns if c not in COLUMNS]
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; expected {list(COLUMNS)}")
        if "seed" not in frame.columns:
            raise ValueError("missing column 'seed' (one int >= 0 per image)")
        n = len(frame)
        seeds = [_int(v, "seed") for v in frame["seed"]]
        if any(s < 0 or s >= 2**63 for s in seeds):
            raise ValueError("column 'seed': expected ints from 0 to 2**63 - 1")
        num = self.spec.num_classes
        if num:
            if "class" not in frame.columns:
                raise ValueError(f"missing column 'class': this generator is class-conditional ({self._known()})")
            classes = [_int(v, "class") for v in frame["class"]]
            bad = sorted({c for c in classes if not 0 <= c < num})
            if bad:
                raise ValueError(f"column 'class': unknown class(es) {bad[:10]}; {self._known()}")
        else:
            classes = [-1] * n  # an unconditional generator ignores the class column
        if "truncation" in frame.columns:
            truncation = [float(v) for v in frame["truncation"]]
            if any(not (math.isfinite(t) and 0.0 < t <= 1.0) for t in truncation):
                raise ValueError("column 'truncation': expected floats in (0, 1]")
        else:
            truncation = [1.0] * n
        return seeds, classes, truncation

    def _known(self) -> str:
        names = self.class_names or [str(i) for i in range(self.spec.num_classes)]
        return "known: " + ", ".join(f"{i}={name}" for i, name in enumerate(names))


def _int(value: Any, column: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer | float | np.floating):
        raise ValueError(f"column {column!r}: expected ints, got {value!r}")
    if value != value or int(value) != value:  # NaN or a fraction
        raise ValueError(f"column {column!r}: expected ints, got {value!r}")
    return int(value)


class ImageTranslator(mlflow.pyfunc.PythonModel):
    """A ganforge translator (cyclegan, stargan; EMA weights) on CPU.

    Input: a DataFrame with `image` (a file path, encoded image bytes, or a uint8 array [H, W], [H, W, C] or
    [C, H, W]) and `target` (a domain name or index). Each image is normalised as the training data was (channels,
    fit, resolution) and translated into its target domain. Output: uint8 images [N, C, H, W]."""

    def load_context(self, context: Any) -> None:
        from ganforge.config import DataConfig

        meta = json.loads(Path(context.artifacts["spec"]).read_text())
        self.spec = ModelSpec.from_dict(meta["spec"])
        self.domains: list[str] = list(meta["domains"])
        self.data = DataConfig(**meta.get("data", {}))
        G = build_generator(self.spec)
        G.load_state_dict(torch.load(context.artifacts["generator"], map_location="cpu", weights_only=True))
        self.G = G.to("cpu").eval().requires_grad_(False)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        from ganforge.sampling import translate

        if not isinstance(model_input, pd.DataFrame) or set(model_input.columns) != set(TRANSLATOR_COLUMNS):
            raise ValueError(f"expected a pandas DataFrame with columns {list(TRANSLATOR_COLUMNS)}")
        images = torch.from_numpy(np.stack([self._image(v) for v in model_input["image"]]))
        targets = [self._domain(v) for v in model_input["target"]]
        return translate(self.G, images, targets, BATCH).numpy()

    def _domain(self, value: Any) -> int:
        if isinstance(value, str) and value in self.domains:
            return self.domains.index(value)
        if isinstance(value, int | np.integer) and 0 <= int(value) < len(self.domains):
            return int(value)
        known = ", ".join(f"{i}={d}" for i, d in enumerate(self.domains))
        raise ValueError(f"column 'target': unknown domain {value!r}; known: {known}")

    def _image(self, value: Any) -> np.ndarray:
        from PIL import Image

        from ganforge.data.decode import Skipped, normalise, open_image

        try:
            if isinstance(value, str | Path):
                value = Path(value).read_bytes()
            if isinstance(value, bytes):
                return normalise(open_image(value, self.data.resolution), self.data)
        except (OSError, Skipped) as exc:
            raise ValueError(f"column 'image': {exc}") from None
        arr = np.asarray(value)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
            raise ValueError(
                "column 'image': expected a path, image bytes or a uint8 array [H, W] / [H, W, C] / [C, H, W]"
            )
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[2] not in (1, 3):
            arr = arr.transpose(1, 2, 0)
        return normalise(Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr), self.data)
