"""library/catalog.parquet: one row per asset, with everything needed to find, judge and regenerate it.

An asset is addressed by (model weights, kind, seeds, classes, truncation): the same address always means the same
pixels, so a build skips addresses already in the catalog. `asset_id` is a hash of the content (pixels, and for
videos the encoding settings). The catalog is rewritten atomically; files are written before their rows, and a
build removes files no row names (what a killed build can leave behind) before it starts.

Kinds: `image` (images/<class>/<id>.png), `latent_walk` and `class_morph` (videos/<id>.mp4|.webp|.png) from image
generators; `clip` (clips/<class>/<id>.mp4|.webp|.png) from video generators, one clip per seed; `translation`
(translations/<domain>/<id>.png) from translators (`ganforge translate`), each with its parent (`parent`,
`parent_sha256`, `parent_path`) and target `domain`, addressed by (translator weights, parent's hash, domain).
`phash` holds 16 hex digits for images and videos (the poster's pHash) and, for clips, the pHashes of the first,
middle and last frames, comma-separated (`scoring.encode_hashes`).
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from ganforge.errors import GanforgeError
from ganforge.paths import atomic_path

KINDS = ("image", "latent_walk", "class_morph", "clip", "translation")
ASSET_DIRS = ("images", "videos", "clips", "translations")  # where asset files live, under the library
# column -> pandas dtype of an empty catalog (list columns are object: lists of ints)
SCHEMA: dict[str, str] = {
    "asset_id": "string",
    "kind": "string",
    "path": "string",
    "preview": "string",
    "poster": "string",
    "width": "int64",
    "height": "int64",
    "frames": "int64",
    "fps": "float64",
    "seeds": "object",
    "class": "int64",
    "classes": "object",
    "class_name": "string",
    "truncation": "float64",
    "model_name": "string",
    "model_version": "string",
    "model_sha256": "string",
    "run_id": "string",
    "source": "string",
    "realism": "float64",
    "d_score": "float64",
    "nearest_real_feature": "float64",
    "nearest_real_pixel": "float64",
    "nearest_real_index": "int64",
    "phash": "string",
    "created_at": "datetime64[us, UTC]",
    "build_id": "string",
    # translations: what was translated (a library asset id, or the source file's path), its file's hash, where
    # its image is (the parent asset's file, or a normalised copy under translations/sources/), the target domain
    "parent": "string",
    "parent_sha256": "string",
    "parent_path": "string",
    "domain": "string",
    # the training image nearest the asset (real/<data key>/<index>.png), shown beside it in the gallery
    "nearest_real_path": "string",
}
# empty in a catalog written before them
ADDED_LATER = ("parent", "parent_sha256", "parent_path", "domain", "nearest_real_path")
REAL_DIR = "real"  # the nearest training images, under the library (not assets: never exported nor reconciled)
ASSET_FILE = re.compile(r"^[0-9a-f]{16}\.(png|mp4|webp)$")


def empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SCHEMA.items()})


def journal(path: Path) -> Path:
    """Where a build appends its rows between full rewrites (catalog.journal/ beside catalog.parquet)."""
    return path.with_name(path.stem + ".journal")


def read(path: Path) -> pd.DataFrame:
    """The catalog at `path` with any rows a running (or killed) build appended to its journal; empty when there
    is none yet; one-line error when it cannot be read."""
    parts = sorted(journal(path).glob("*.parquet")) if journal(path).is_dir() else []
    frames = [_read_one(p) for p in ([path] if path.exists() else []) + parts]
    if not frames:
        return empty()
    if len(frames) == 1:
        return frames[0]
    df = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    # a kill between a full rewrite and the journal's removal leaves rows in both
    return df.drop_duplicates(subset=["asset_id", "kind", "path"], keep="first").reset_index(drop=True)


def _read_one(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:
        raise GanforgeError(
            f"{path}: unreadable catalog ({exc.__class__.__name__}); move it aside and build again "
            "(files no catalog row names are then regenerated or removed)"
        ) from None
    for col in ADDED_LATER:
        if col not in df.columns:
            df[col] = pd.Series([pd.NA] * len(df), dtype=SCHEMA[col])
    missing = [c for c in SCHEMA if c not in df.columns]
    if missing:
        raise GanforgeError(f"{path}: not a ganforge catalog (missing columns {missing})")
    for col in ("seeds", "classes"):
        df[col] = [[int(v) for v in x] for x in df[col]]
    return df[list(SCHEMA)].reset_index(drop=True)


def write(df: pd.DataFrame, path: Path) -> None:
    """Rewrite the whole catalog atomically; the journal's rows are in it, so the journal goes."""
    _write_table(df, path)
    folder = journal(path)
    if folder.is_dir():
        for part in folder.glob("*.parquet"):
            part.unlink()
        folder.rmdir()


def append(rows: pd.DataFrame, path: Path) -> None:
    """Add rows to the catalog at `path` in time proportional to them (a new journal part), not to the catalog."""
    folder = journal(path)
    folder.mkdir(exist_ok=True)
    last = max((int(p.stem) for p in folder.glob("*.parquet") if p.stem.isdigit()), default=0)
    _write_table(rows, folder / f"{last + 1:08d}.parquet")


def _write_table(df: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = df[list(SCHEMA)].reset_index(drop=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    lists = pa.list_(pa.int64())
    table = table.cast(
        pa.schema(
            [
                pa.field(f.name, lists) if f.name in ("seeds", "classes") else pa.field(f.name, f.type)
                for f in table.schema
            ]
        )
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def address(
    model_sha256: str, kind: str, seeds: list[int], classes: list[int], truncation: float
) -> tuple[str, str, tuple[int, ...], tuple[int, ...], float]:
    """What identifies an asset before it is generated: the same address gives the same pixels."""
    return (model_sha256, kind, tuple(int(s) for s in seeds), tuple(int(c) for c in classes), round(truncation, 9))


def addresses(df: pd.DataFrame) -> set[tuple[str, str, tuple[int, ...], tuple[int, ...], float]]:
    return {
        address(str(r.model_sha256), str(r.kind), list(r.seeds), list(r.classes), float(r.truncation))
        for r in df.itertuples(index=False)
    }


def files_of(row: Any) -> list[str]:
    """The library-relative paths of a row's files (a translation's: its parent's image too)."""
    parent = row.get("parent_path")
    return [p for p in (row["path"], row["preview"], row["poster"], parent) if isinstance(p, str) and p]


def reconcile(df: pd.DataFrame, library: Path) -> tuple[pd.DataFrame, int, int]:
    """Drop rows whose files are gone; delete asset files no row names and temporary files left by a kill.
    Returns (catalog, rows dropped, files removed)."""
    base = os.path.realpath(library)
    cols = [df[c].tolist() for c in ("path", "preview", "poster", "parent_path")]
    files = [[p for p in row if isinstance(p, str) and p] for row in zip(*cols, strict=True)]  # files_of, by column
    keep = [all(os.path.isfile(os.path.join(base, p)) for p in row) for row in files]
    dropped = len(df) - sum(keep)
    df = df[pd.Series(keep, index=df.index, dtype=bool)].reset_index(drop=True)
    # names as os.walk gives them below (a symlinked asset folder reads the same both ways: both under `base`)
    named = {os.path.normpath(os.path.join(base, p)) for row, k in zip(files, keep, strict=True) if k for p in row}
    removed = 0
    for sub in (*ASSET_DIRS, REAL_DIR):
        root = os.path.join(base, sub)
        for folder, _, names in os.walk(root):
            for name in names:
                f = os.path.join(folder, name)
                if os.path.islink(f) or not os.path.isfile(f):
                    continue
                stray = (name.startswith(".") and name.endswith(".tmp")) or (
                    sub != REAL_DIR and ASSET_FILE.match(name) and os.path.normpath(f) not in named
                )
                if stray:
                    os.unlink(f)
                    removed += 1
    return df, dropped, removed


def select(
    df: pd.DataFrame,
    cls: str | None = None,
    kind: str | None = None,
    min_realism: float | None = None,
    ids: list[str] | None = None,
) -> pd.DataFrame:
    """Rows matching a class (number or name), a kind, a minimum realism score and a list of asset ids (each a
    unique prefix of one)."""
    out = df
    if ids is not None:
        exact = set(df["asset_id"])
        keep = {i.lower() if i.lower() in exact else find(df, i)["asset_id"] for i in ids}
        out = out[out["asset_id"].isin(keep)]
    if cls is not None:
        if cls.lstrip("-").isdigit():
            n = int(cls)
            out = out[(out["class"] == n) | out["classes"].map(lambda cs: n in list(cs) and len(cs) > 1)]
        else:
            out = out[out["class_name"] == cls]
    if kind is not None:
        if kind not in KINDS:
            raise GanforgeError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        out = out[out["kind"] == kind]
    if min_realism is not None:
        out = out[out["realism"] >= min_realism]
    return out


def find(df: pd.DataFrame, asset_id: str) -> pd.Series:
    """The row whose asset_id starts with `asset_id` (unique prefix)."""
    hits = df[df["asset_id"].str.startswith(asset_id.lower())] if asset_id else df.iloc[:0]
    if len(hits) == 1:
        return hits.iloc[0]
    if not len(hits):
        raise GanforgeError(f"no asset {asset_id!r} in the catalog ({len(df)} assets; `ganforge library ls`)")
    raise GanforgeError(f"{asset_id!r} is ambiguous: {len(hits)} assets start with it; give more characters")


@contextmanager
def locked(library: Path) -> Iterator[None]:
    """Hold library/.lock for a build: a second build into the same library refuses with the holder's pid."""
    library.mkdir(parents=True, exist_ok=True)
    lock = library / ".lock"
    with lock.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise GanforgeError(
                f"{library}: another library build is running (pid {holder}); wait for it to finish"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def asset_path(rel: Any) -> bool:
    """Whether `rel` is a plain library-relative path into one of ASSET_DIRS: not absolute, no `..`, `.` or empty
    segment, no backslash or control character. What a build writes always is; a hand-edited catalog may not be."""
    if not isinstance(rel, str) or "\\" in rel or any(ord(c) < 32 or ord(c) == 127 for c in rel):
        return False
    parts = rel.split("/")
    return len(parts) >= 2 and parts[0] in ASSET_DIRS and not any(p in ("", ".", "..") for p in parts)


def checked_file(row: Any, rel: str, lib: Path) -> Path:
    """The file `rel` of catalog row `row` inside the (resolved) library `lib`, or a one-line error when the path is
    absolute, has a `..`, lies outside the asset folders, leads out of the library (a symlink) or is missing."""
    asset = f"export: asset {str(row['asset_id'])!r}"
    if not asset_path(rel):
        raise GanforgeError(
            f"{asset} has a path outside the library's {'/, '.join(ASSET_DIRS)}/ folders: {rel!r}; nothing was exported"
        )
    src = (lib / rel).resolve()
    if lib not in src.parents:
        raise GanforgeError(
            f"{asset}: {rel!r} leads outside the library (a symlink to {str(src)!r}); nothing was exported"
        )
    if not src.is_file():
        raise GanforgeError(f"export: {src} is missing; run `ganforge library build` to repair the library")
    return src


def export(rows: pd.DataFrame, library: Path, dest: Path) -> Path:
    """Copy the rows' files from `library` into `dest` (same relative layout) with a catalog.parquet of them.

    A catalog is data, and data may have been edited by someone else: every path is checked before anything is
    written, and one that is absolute, has a `..`, lies outside the asset folders, or leads out of the library
    (a symlink) or out of `dest` (a symlink there) refuses the whole export in one line."""
    import shutil

    dest = dest.resolve()
    lib = library.resolve()
    if dest == lib or lib in dest.parents:
        raise GanforgeError(f"export: DEST {dest} is inside the library {lib}; choose a folder outside it")
    plan: list[tuple[Path, Path]] = []
    for _, row in rows.iterrows():
        for rel in files_of(row):
            src, out = checked_file(row, rel, lib), (dest / rel).resolve()
            asset = f"export: asset {str(row['asset_id'])!r}"
            if dest not in out.parents or out == lib or lib in out.parents:
                raise GanforgeError(
                    f"{asset}: {rel!r} would be written to {str(out)!r}, outside DEST (a symlink in it); "
                    "nothing was exported"
                )
            plan.append((src, out))
    dest.mkdir(parents=True, exist_ok=True)
    for src, out in plan:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            shutil.copyfile(src, tmp)
    write(rows, dest / "catalog.parquet")
    return dest
