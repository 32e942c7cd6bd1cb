"""`ganforge generate`: seed-addressed samples from a registered version or a checkpoint, straight to a folder.

    ganforge generate --model champion --seeds 0-99 --class 3 --truncation 0.7 --out DIR

Each file is named by its seed and class (seed000042-class003.png; an unconditional model's seed000042.png; a
video model's clips are .mp4 with a .png poster of the middle frame), drawn through the one `Sampler` the
library, evaluation and the MLflow pyfunc use, so the same seed, class and truncation give the same pixels as
`mlflow.pyfunc.load_model(...).predict(...)` and as the library's asset of that address. DIR/manifest.csv has one
row per file: file, seed, class, class_name, truncation, the model (uri, name, version, weights sha256) and the
file's sha256. Files are written atomically; running the same command again rewrites the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ganforge.errors import ConfigError, GanforgeError

if TYPE_CHECKING:  # the CLI parses --seeds and --truncation before torch is imported
    from ganforge.assets.source import Source

MAX_SEEDS = 1_000_000
SEED_PART = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_seeds(text: str) -> list[int]:
    """ "0-99", "1,5,7" or "0-9,20-29" -> the seeds, in order, each once."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        m = SEED_PART.match(part)
        if not m:
            raise ConfigError(f"--seeds {text!r}: expected numbers and ranges like 0-99 or 1,5,7")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ConfigError(f"--seeds {text!r}: the range {part} runs backwards")
        if hi >= 2**62:
            raise ConfigError(f"--seeds {text!r}: seeds are below 2**62")
        if len(seeds) + hi - lo + 1 > MAX_SEEDS:
            raise ConfigError(f"--seeds {text!r}: more than {MAX_SEEDS} seeds")
        seeds.extend(range(lo, hi + 1))
    return list(dict.fromkeys(seeds))


def check_truncation(psi: float) -> float:
    if not 0.0 < psi <= 1.0:
        raise ConfigError(f"--truncation {psi}: expected a value in (0, 1]")
    return psi


def parse_classes(text: str | None, src: Source) -> list[int]:
    """--class: numbers or names, comma-separated (default: every class); [-1] for an unconditional model."""
    n = src.spec.num_classes
    if not n:
        if text is not None:
            raise ConfigError(f"--class {text}: {src.uri} is unconditional (it has no classes); leave --class out")
        return [-1]
    if text is None or text == "all":
        return list(range(n))
    out = []
    names = {name: i for i, name in enumerate(src.class_names)}
    for part in (p.strip() for p in text.split(",")):
        if part.isdigit() and int(part) < n:
            out.append(int(part))
        elif part in names:
            out.append(names[part])
        else:
            known = ", ".join(f"{i}={name}" for i, name in enumerate(src.class_names)) or f"0-{n - 1}"
            raise ConfigError(f"--class {part!r}: {src.uri} has classes {known}")
    return list(dict.fromkeys(out))


@dataclass
class GenerateSummary:
    files: int
    out: Path
    uri: str

    def line(self) -> str:
        return f"generate: {self.files} files from {self.uri} in {self.out} (manifest.csv)"


def generate(
    src: Source, seeds: list[int], classes: list[int], truncation: float, out: Path, batch_size: int = 64
) -> GenerateSummary:
    import numpy as np
    import pandas as pd

    from ganforge.assets.video import write_video
    from ganforge.assets.writer import save_png
    from ganforge.paths import atomic_path, sha256_file
    from ganforge.sampling import Sampler

    if src.spec.task == "translate":
        raise GanforgeError(
            f"generate: {src.uri} is a translator ({src.spec.model}): it restyles images, it does not sample them; "
            "use `ganforge translate`"
        )
    check_truncation(truncation)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".seed*.tmp"):  # what a killed run left (file writes do not look through the folder)
        stale.unlink(missing_ok=True)
    sampler = Sampler(src.G, src.spec, batch_size=batch_size)
    video = src.spec.kind == "video"
    rows = []
    for c in classes:
        for i in range(0, len(seeds), batch_size):
            chunk = seeds[i : i + batch_size]
            x = sampler.uint8(chunk, None if c < 0 else c, truncation).numpy()
            for seed, item in zip(chunk, x, strict=True):
                stem = f"seed{seed:06d}" + ("" if c < 0 else f"-class{c:03d}")
                if video:  # [C, T, H, W] -> an MP4 at the clip's own size, a WebP preview and a PNG poster
                    frames = np.ascontiguousarray(np.transpose(item, (1, 2, 3, 0)))
                    size = max(16, frames.shape[1] + frames.shape[1] % 2)
                    write_video(frames, out / f"{stem}.mp4", out / f"{stem}.webp", out / f"{stem}.png", fps=8.0,
                                size=size)  # fmt: skip
                    name = f"{stem}.mp4"
                else:
                    name = f"{stem}.png"
                    save_png(item, out / name)
                rows.append({"file": name, "seed": seed, "class": c,
                             "class_name": src.class_names[c] if 0 <= c < len(src.class_names) else "",
                             "truncation": truncation, "model": src.uri, "model_name": src.model_name,
                             "model_version": src.model_version, "model_sha256": src.model_sha256,
                             "sha256": sha256_file(out / name)})  # fmt: skip
    manifest = pd.DataFrame(rows)
    with atomic_path(out / "manifest.csv") as tmp:  # (the files above sweep their folder for stale temps)
        manifest.to_csv(tmp, index=False)
    return GenerateSummary(len(rows), out, src.uri)
