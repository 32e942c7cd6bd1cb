"""`ganforge library export --format F`: the library's assets in the layouts other tools load in one line.

- `copy` (default): the library's own layout and a catalog.parquet of the rows (`catalog.export`).
- `imagefolder`: torchvision's `ImageFolder` tree, DEST/<class>/<asset_id>.png, one folder per class (named by
  the class name, made safe for a file system; `unlabelled` for an unconditional model's images), with
  classes.json (folder -> class number, and ImageFolder's index of each folder) and catalog.csv.
  `torchvision.datasets.ImageFolder(DEST)`.
- `hf`: a Hugging Face `datasets` image folder, DEST/train/<asset_id>.png and DEST/train/metadata.jsonl whose
  rows carry `file_name`, `label` (the class name) and every catalog column.
  `datasets.load_dataset("imagefolder", data_dir=DEST)`.
- `webdataset`: tar shards DEST/shard-000000.tar, ... of --shard-size samples, each sample `<asset_id>.png` (or
  .mp4 for a clip or video), `<asset_id>.cls` (the class number, where there is one) and `<asset_id>.json` (the
  catalog row). `webdataset.WebDataset("DEST/shard-{000000..000003}.tar")`.

ImageFolder and Hugging Face take images: `image` and `translation` assets; other kinds are counted as skipped.
An export is written into a temporary folder beside DEST and moved into place at the end, so a killed export
leaves DEST as it was; DEST must be absent, empty, or an earlier export (its export.json says so), which is
replaced. Every path is checked as for `copy` (`catalog.checked_file`) before anything is written.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ganforge.assets import catalog
from ganforge.errors import GanforgeError

FORMATS = ("copy", "imagefolder", "hf", "webdataset")
IMAGE_KINDS = ("image", "translation")
MARKER = "export.json"
ASSET_ID = re.compile(r"^[0-9a-f]{16}$")


@dataclass
class ExportSummary:
    format: str
    dest: Path
    exported: int
    skipped: int = 0
    shards: int = 0

    def line(self) -> str:
        extra = f" in {self.shards} shards" if self.shards else ""
        n = self.skipped
        skipped = f"; {n} asset{'s' if n != 1 else ''} of other kinds skipped ({self.format} takes images)" if n else ""
        if self.format == "copy":
            return f"library: exported {self.exported} assets to {self.dest} (with catalog.parquet)"
        return f"library: exported {self.exported} assets to {self.dest} as {self.format}{extra}{skipped}"


def jsonable(value: Any) -> Any:
    """A catalog value as plain JSON: lists of ints, ISO timestamps, None for NaN/NA."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or value is pd.NA or (not isinstance(value, (str, int, float)) and pd.isna(value)):
        return None
    return value


def record(row: pd.Series) -> dict[str, Any]:
    return {col: jsonable(row[col]) for col in catalog.SCHEMA}


def folder_names(rows: pd.DataFrame) -> dict[int, str]:
    """class number -> a folder name safe on any file system, unique per class."""
    names: dict[int, str] = {}
    taken: set[str] = set()
    for c, name in sorted({(int(r["class"]), r["class_name"]) for _, r in rows.iterrows()}, key=lambda t: t[0]):
        if c in names:
            continue
        text = name if isinstance(name, str) else ""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:64]
        if c < 0:
            safe = safe or "unlabelled"
        safe = safe or f"class_{c:03d}"
        if safe.lower() in taken:
            safe = f"{safe}_{c}"
        names[c] = safe
        taken.add(safe.lower())
    return names


def _prepare_dest(dest: Path, lib: Path) -> None:
    if dest == lib or lib in dest.parents or dest in lib.parents:
        raise GanforgeError(f"export: DEST {dest} overlaps the library {lib}; choose a folder outside it")
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not (dest / MARKER).is_file())):
        raise GanforgeError(
            f"export: DEST {dest} exists and is not an earlier export (no {MARKER}); choose an empty or new folder"
        )


def export(rows: pd.DataFrame, library: Path, dest: Path, fmt: str = "copy", shard_size: int = 1000) -> ExportSummary:
    if fmt not in FORMATS:
        raise GanforgeError(f"export: unknown --format {fmt!r}; formats: {', '.join(FORMATS)}")
    if not len(rows):  # a filter that matches nothing is a mistake more often than a wish for an empty DEST
        raise GanforgeError("export: no assets match the filters; nothing was exported (`ganforge library ls`)")
    if fmt == "copy":
        return ExportSummary(fmt, catalog.export(rows, library, dest), len(rows))
    if shard_size < 1:
        raise GanforgeError(f"export: --shard-size must be at least 1, not {shard_size}")
    dest, lib = dest.resolve(), library.resolve()
    _prepare_dest(dest, lib)
    take = rows if fmt == "webdataset" else rows[rows["kind"].isin(IMAGE_KINDS)]
    if not len(take):
        raise GanforgeError(f"export: none of the {len(rows)} matching assets is an image, which {fmt} takes; "
                            "nothing was exported (webdataset takes every kind)")  # fmt: skip
    for asset_id in take["asset_id"]:  # ids name the exported files and tar members
        if not (isinstance(asset_id, str) and ASSET_ID.match(asset_id)):
            raise GanforgeError(f"export: asset id {str(asset_id)!r} is not 16 hex digits; nothing was exported")
    files = [catalog.checked_file(row, row["path"], lib) for _, row in take.iterrows()]  # all checked first
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        shards = {"imagefolder": _imagefolder, "hf": _hf, "webdataset": _webdataset}[fmt](
            take, files, stage, shard_size
        )
        marker = {"format": fmt, "assets": len(take), "library": str(lib), "shards": shards}
        (stage / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(stage, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return ExportSummary(fmt, dest, len(take), len(rows) - len(take), shards)


def _imagefolder(rows: pd.DataFrame, files: list[Path], out: Path, _: int) -> int:
    names = folder_names(rows)
    for (_, row), src in zip(rows.iterrows(), files, strict=True):
        target = out / names[int(row["class"])] / f"{row['asset_id']}{src.suffix}"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(src, target)
    folders = sorted(names.values())  # ImageFolder numbers the folders in sorted order
    index = {
        "classes": {names[c]: c for c in sorted(names)},
        "imagefolder_index": {f: i for i, f in enumerate(folders)},
    }
    (out / "classes.json").write_text(json.dumps(index, indent=2) + "\n")
    table = pd.DataFrame([record(r) for _, r in rows.iterrows()], columns=list(catalog.SCHEMA))
    pairs = zip(rows.iterrows(), files, strict=True)
    table.insert(0, "file", [f"{names[int(r['class'])]}/{r['asset_id']}{f.suffix}" for (_, r), f in pairs])
    table.to_csv(out / "catalog.csv", index=False)
    return 0


def _hf(rows: pd.DataFrame, files: list[Path], out: Path, _: int) -> int:
    split = out / "train"
    split.mkdir()
    with (split / "metadata.jsonl").open("w") as meta:
        for (_, row), src in zip(rows.iterrows(), files, strict=True):
            name = f"{row['asset_id']}{src.suffix}"
            shutil.copyfile(src, split / name)
            label = row["class_name"] if isinstance(row["class_name"], str) and row["class_name"] else ""
            meta.write(json.dumps({"file_name": name, "label": label, **record(row)}) + "\n")
    return 0


def _webdataset(rows: pd.DataFrame, files: list[Path], out: Path, shard_size: int) -> int:
    shards = 0
    items = list(zip((r for _, r in rows.iterrows()), files, strict=True))
    for start in range(0, len(items), shard_size):
        with tarfile.open(out / f"shard-{shards:06d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for row, src in items[start : start + shard_size]:
                key = str(row["asset_id"])
                members = [(src.suffix.lstrip("."), src.read_bytes()), ("json", json.dumps(record(row)).encode())]
                if int(row["class"]) >= 0:
                    members.append(("cls", str(int(row["class"])).encode()))
                for ext, data in members:
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mode = len(data), 0o644
                    info.mtime = int(row["created_at"].timestamp()) if not pd.isna(row["created_at"]) else 0
                    tar.addfile(info, io.BytesIO(data))
        shards += 1
    return shards
