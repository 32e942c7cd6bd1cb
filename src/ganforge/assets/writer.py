"""The catalog while a build (`library build`, `ganforge translate`) adds to it: rows, known addresses and pHashes
(dedupe), flushed to disk every FLUSH_EVERY rows; and how an asset image is written (atomically, before its row)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ganforge.assets import catalog, scoring
from ganforge.paths import Paths, atomic_path

FLUSH_EVERY = 64


HASH_FRAMES = {"image": 1, "clip": scoring.CLIP_HASH_FRAMES}  # pHashes per asset, by kind (dedupe)


class _HashTable:
    """A growable [N, k] uint64 table of pHashes (doubling: adding is O(1) amortised)."""

    def __init__(self, rows: list[tuple[int, ...]], k: int) -> None:
        self._a = np.zeros((max(256, 2 * len(rows)), k), dtype=np.uint64)
        if rows:
            self._a[: len(rows)] = np.array(rows, dtype=np.uint64)
        self._n = len(rows)

    def view(self) -> np.ndarray:
        return self._a[: self._n]

    def add(self, hashes: tuple[int, ...]) -> None:
        if self._n == len(self._a):
            self._a = np.concatenate([self._a, np.zeros_like(self._a)])
        self._a[self._n] = hashes
        self._n += 1


@dataclass
class Catalog:
    """The catalog being built: rows, known addresses and hashes; flushed to disk every FLUSH_EVERY rows."""

    paths: Paths
    frame: pd.DataFrame
    build_id: str
    new_rows: list[dict[str, Any]] = field(default_factory=list)
    pending: int = 0

    def __post_init__(self) -> None:
        self.known = catalog.addresses(self.frame)
        self._hashes: dict[str, _HashTable] = {}
        for kind, k in HASH_FRAMES.items():
            rows = [
                hs
                for h in self.frame.loc[self.frame["kind"] == kind, "phash"]
                if len(hs := scoring.decode_hashes(h if isinstance(h, str) else "")) == k
            ]
            self._hashes[kind] = _HashTable(rows, k)

    def hashes(self, kind: str) -> np.ndarray:
        """pHashes [N, k] of the library's assets of `kind` (image: k=1; clip: first, middle, last frame);
        a view, valid until the next add."""
        return self._hashes[kind].view()

    def add(self, row: dict[str, Any]) -> None:
        row.update(created_at=pd.Timestamp.now(tz="UTC"), build_id=self.build_id)
        for col in catalog.ADDED_LATER:  # a generated asset has no parent nor domain
            row.setdefault(col, None)
        self.new_rows.append(row)
        key = catalog.address(row["model_sha256"], row["kind"], row["seeds"], row["classes"], row["truncation"])
        self.known.add(key)
        if row["kind"] in self._hashes:
            self._hashes[row["kind"]].add(scoring.decode_hashes(row["phash"]))
        self.pending += 1
        if self.pending >= FLUSH_EVERY:
            self.flush()

    def all(self) -> pd.DataFrame:
        if not self.new_rows:
            return self.frame
        new = pd.DataFrame(self.new_rows)
        for col, dtype in catalog.SCHEMA.items():
            if dtype != "object":
                new[col] = new[col].astype(dtype)
        parts = [f for f in (self.frame, new[list(catalog.SCHEMA)]) if len(f)]
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

    def flush(self) -> None:
        if self.pending or not self.paths.catalog.exists():
            catalog.write(self.all(), self.paths.catalog)
        self.pending = 0


def save_png(image: np.ndarray, path: Any) -> None:
    from PIL import Image

    arr = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
