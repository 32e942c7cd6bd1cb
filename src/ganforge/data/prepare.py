"""The `prepare` stage: a source -> validated, normalised uint8 NCHW (video: NCTHW) shards + `manifest.parquet`.

Output directory (format 1), written atomically (built in a sibling temp dir, then swapped in):

- `info.json`: format, kind (image | video), source, resolution, channels, num_classes, class_names,
  splits (`{"train": {"count": N, "shards": [...], "labels": "train-labels.npy"}, "test": {...}}`);
  video adds `frames` (T).
- `<split>-00000.npy`...: uint8 [n, C, R, R] (video: [n, C, T, R, R]), at most `data.shard_size` samples
  each; none for an empty split.
- `<split>-labels.npy`: int64 [N], -1 when unlabelled.
- `manifest.parquet`: one row per source file/sample with its hash, original size/mode/format, label,
  split, index within the split, and status (kept / skipped and why). Video: one row per file (or per
  generated clip) with its container, codec, fps, duration, the number of clips it gave and the index of
  the first (its clips are consecutive, all in the split its hash chose); see `ganforge.data.clips`.

Normalisation: EXIF orientation applied; 16-bit modes scaled to 8 bits (/257; mode "I" is read as
16-bit); float "F" read as 0..1 when its maximum is <= 1, else as 0..255; alpha composited on white;
then converted to "L" (channels 1) or "RGB" (channels 3). `fit: crop` centre-crops to a square,
`fit: pad` pads to a square with white (the same colour as the alpha background); then the image is
resized to `data.resolution` with `data.resize_filter`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from ganforge.config import DataConfig
from ganforge.data.sources import Item, Source, open_source
from ganforge.errors import GanforgeError
from ganforge.paths import write_text_atomic

FORMAT = 1
SPLITS = ("train", "test")
PAD_COLOR = "white"
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA = {"RGBA", "RGBa", "LA", "La", "PA"}

MANIFEST_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("sha256", pa.string()),
        ("bytes", pa.int64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("mode", pa.string()),
        ("format", pa.string()),
        ("label", pa.int64()),
        ("class_name", pa.string()),
        ("split", pa.string()),
        ("index", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
    ]
)


@dataclass(frozen=True)
class PrepareSummary:
    """What `prepare` did; also written as the stage's metrics JSON."""

    source: str
    files_seen: int
    kept: int
    skipped: int
    duplicates: int
    skipped_by_reason: dict[str, int]
    train: int
    test: int
    num_classes: int
    resolution: int
    channels: int
    seconds: float
    out_dir: str
    kind: str = "image"
    frames: int | None = None  # video: frames per clip
    clips: int | None = None  # video: clips written (train + test); `kept` counts files

    def line(self) -> str:
        """One-line human summary."""
        why = ", ".join(f"{n} {reason}" for reason, n in self.skipped_by_reason.items())
        skipped = f"{self.skipped} skipped" + (f" ({why})" if why else "")
        classes = f"{self.num_classes} classes" if self.num_classes else "unlabelled"
        shape = f"{self.resolution}x{self.resolution}x{self.channels}"
        if self.kind == "video":
            return (
                f"prepare: {self.clips} clips from {self.kept} kept, {skipped} -> {self.out_dir} "
                f"(train {self.train}, test {self.test}, {classes}, clips {self.frames}x{shape}) in {self.seconds:.1f}s"
            )
        return (
            f"prepare: {self.kept} kept, {skipped} -> {self.out_dir} "
            f"(train {self.train}, test {self.test}, {classes}, {shape}) in {self.seconds:.1f}s"
        )


class Skipped(Exception):
    """A sample that cannot be used: `category` is what the counts group by, `reason` goes in the manifest."""

    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category = category
        self.reason = reason


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _decode_error(exc: Exception) -> Skipped:
    if isinstance(exc, Image.DecompressionBombError):
        return Skipped("too large", f"too large: {_short(exc)}")
    if isinstance(exc, UnidentifiedImageError):
        return Skipped("not an image", "not an image")
    if "truncat" in str(exc).lower():
        return Skipped("truncated", "truncated")
    return Skipped("corrupt", f"corrupt: {_short(exc)}")


def _open(item: Item, raw: bytes, meta: dict[str, Any], resolution: int) -> Image.Image:
    """Decode a sample fully (first frame), apply EXIF orientation; fill `meta` as soon as it is known.

    Large JPEGs are decoded at a reduced scale (PIL's `draft`), never below twice the target resolution.
    """
    if item.array is not None:
        img = Image.fromarray(item.array)
        meta.update(width=img.width, height=img.height, mode=img.mode)
        return img
    if not raw:
        raise Skipped("zero-byte", "zero-byte file")
    try:
        img = Image.open(io.BytesIO(raw))
        meta.update(width=img.width, height=img.height, mode=img.mode, format=img.format)
        if img.format == "JPEG":
            img.draft(img.mode, (2 * resolution, 2 * resolution))
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
    except Exception as exc:  # any decoder failure on a user's file is that file's problem, never fatal
        raise _decode_error(exc) from None
    if not (img.width and img.height):
        raise Skipped("corrupt", "corrupt: empty image")
    return img


def _flatten(img: Image.Image) -> Image.Image:
    """Any mode -> "L" or "RGB": 16-bit /257, float 0..1 (or 0..255), alpha composited on white."""
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        arr = np.asarray(img).astype(np.float64).clip(0, 65535) / 257.0
        return Image.fromarray(np.rint(arr).astype(np.uint8))
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
        return Image.fromarray(np.rint((arr * scale).clip(0, 255)).astype(np.uint8))
    transparent = mode in _ALPHA or "transparency" in img.info
    if mode in ("L", "RGB") and not transparent:
        return img
    try:
        if transparent:
            white = Image.new("RGBA", img.size, PAD_COLOR)
            return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")
        return img.convert("L" if mode == "1" else "RGB")
    except ValueError:
        raise Skipped("unsupported mode", f"unsupported mode {mode}") from None


def normalise(img: Image.Image, cfg: DataConfig) -> np.ndarray:
    """A decoded image -> uint8 [C, R, R] following `cfg` (channels, fit, resolution, resize_filter)."""
    img = _flatten(img).convert("L" if cfg.channels == 1 else "RGB")
    size = (cfg.resolution, cfg.resolution)
    method = Image.Resampling[cfg.resize_filter.upper()]
    if cfg.fit == "crop":
        img = ImageOps.fit(img, size, method=method)
    else:
        img = ImageOps.pad(img, size, method=method, color=PAD_COLOR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def hash_split(sha256: str, test_fraction: float) -> str:
    """Deterministic split from the content hash: stable when the dataset grows."""
    return "test" if int(sha256[:16], 16) / 2**64 < test_fraction else "train"


class _SplitWriter:
    """Streams one split's images (or clips) into shards of at most `shard_size`; labels are kept until the end."""

    def __init__(self, out: Path, split: str, shard_size: int, shape: tuple[int, ...]) -> None:
        self.out, self.split, self.shard_size, self.shape = out, split, shard_size, shape
        self.buffer: np.ndarray | None = None
        self.filled = 0
        self.shards: list[str] = []
        self.labels: list[int] = []

    def add(self, image: np.ndarray, label: int) -> int:
        if self.buffer is None:
            self.buffer = np.empty((self.shard_size, *self.shape), dtype=np.uint8)
        self.buffer[self.filled] = image
        self.filled += 1
        self.labels.append(label)
        if self.filled == self.shard_size:
            self._flush()
        return len(self.labels) - 1

    def _flush(self) -> None:
        if self.buffer is None or not self.filled:
            return
        name = f"{self.split}-{len(self.shards):05d}.npy"
        np.save(self.out / name, self.buffer[: self.filled])
        self.shards.append(name)
        self.filled = 0

    def close(self) -> dict[str, Any]:
        self._flush()
        self.buffer = None
        labels = f"{self.split}-labels.npy"
        np.save(self.out / labels, np.asarray(self.labels, dtype=np.int64))
        return {"count": len(self.labels), "shards": self.shards, "labels": labels}


def _process(item: Item, cfg: DataConfig, seen: dict[str, str]) -> tuple[dict[str, Any], np.ndarray | None]:
    """One manifest row (without split/index) and the normalised image, or None with the row's reason."""
    row: dict[str, Any] = {"path": item.path, "label": item.label, "class_name": item.class_name}
    try:
        try:
            raw = item.read()
        except OSError as exc:  # vanished, dangling link, no permission
            raise Skipped("unreadable", f"unreadable: {exc.strerror or exc}") from None
        sha = row["sha256"] = hashlib.sha256(raw).hexdigest()
        row["bytes"] = len(raw)
        if item.skip:
            raise Skipped(item.skip, item.skip)
        if sha in seen:
            raise Skipped("duplicate", f"duplicate of {seen[sha]}")
        image = normalise(_open(item, raw, row, cfg.resolution), cfg)
    except Skipped as skip:
        row.update(status="skipped", reason=skip.reason, category=skip.category, split=None, index=-1)
        return row, None
    seen[sha] = item.path
    row.update(status="kept", reason=None)
    return row, image


def _process_image(item: Item, cfg: DataConfig, seen: dict[str, str]) -> tuple[dict[str, Any], list[np.ndarray]]:
    row, image = _process(item, cfg, seen)
    return row, [] if image is None else [image]


def _build(source: Source, cfg: DataConfig, out: Path, progress: bool) -> tuple[dict[str, Any], Counter[str]]:
    """Write shards, labels, manifest and info.json into `out`; return info and skip counts."""
    side = (cfg.resolution, cfg.resolution)
    if cfg.kind == "video":
        from ganforge.data.clips import CLIP_MANIFEST_SCHEMA, process_clip  # clips imports this module

        process, schema, shape = process_clip, CLIP_MANIFEST_SCHEMA, (cfg.channels, cfg.frames, *side)
        unit = "clip" if cfg.source == "moving_digits" else "file"
    else:
        process, schema, shape, unit = _process_image, MANIFEST_SCHEMA, (cfg.channels, *side), "img"
    writers = {s: _SplitWriter(out, s, cfg.shard_size, shape) for s in SPLITS}
    seen: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    bar = tqdm(source.items, desc="prepare", unit=unit, file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for item in bar:
        row, samples = process(item, cfg, seen)
        if not samples:
            skipped[row.pop("category")] += 1
        else:  # all samples of one item go to one split, consecutively
            split = item.split or hash_split(row["sha256"], cfg.test_fraction)
            indices = [writers[split].add(sample, item.label) for sample in samples]
            row.update(split=split, index=indices[0])
        rows.append(row)
    if not seen:
        why = ", ".join(f"{n} {c}" for c, n in sorted(skipped.items())) or "no files"
        what = "video" if cfg.kind == "video" else "image"
        raise GanforgeError(f"{source.name}: no usable {what} among {len(rows)} samples ({why})")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / "manifest.parquet")
    names = list(source.class_names)
    info: dict[str, Any] = {
        "format": FORMAT,
        "kind": cfg.kind,
        "source": source.name,
        "resolution": cfg.resolution,
        "channels": cfg.channels,
    }
    if cfg.kind == "video":
        info["frames"] = cfg.frames
    info.update(num_classes=len(names), class_names=names, splits={s: w.close() for s, w in writers.items()})
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info, skipped


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace `out_dir` by `tmp` with two renames; the old tree is removed afterwards."""
    old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
    had_old = out_dir.exists() or out_dir.is_symlink()
    if had_old:
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if had_old:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


def prepare(cfg: DataConfig, out_dir: Path, metrics_path: Path, progress: bool = True) -> PrepareSummary:
    """Run the prepare stage: read `cfg`'s source, write `out_dir` (atomically) and `metrics_path`."""
    start = time.perf_counter()
    out_dir, metrics_path = Path(out_dir), Path(metrics_path)
    source = open_source(cfg)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        info, skipped = _build(source, cfg, tmp, progress)
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    splits = info["splits"]
    samples = splits["train"]["count"] + splits["test"]["count"]
    video = cfg.kind == "video"
    summary = PrepareSummary(
        source=source.name,
        files_seen=len(source.items),
        kept=len(source.items) - sum(skipped.values()) if video else samples,
        skipped=sum(skipped.values()),
        duplicates=skipped.get("duplicate", 0),
        skipped_by_reason=dict(sorted(skipped.items())),
        train=splits["train"]["count"],
        test=splits["test"]["count"],
        num_classes=info["num_classes"],
        resolution=cfg.resolution,
        channels=cfg.channels,
        seconds=round(time.perf_counter() - start, 3),
        out_dir=str(out_dir),
        kind=cfg.kind,
        frames=cfg.frames if video else None,
        clips=samples if video else None,
    )
    metrics = {k: v for k, v in asdict(summary).items() if v is not None}  # images: no frames/clips
    write_text_atomic(metrics_path, json.dumps(metrics, indent=2) + "\n")
    return summary
