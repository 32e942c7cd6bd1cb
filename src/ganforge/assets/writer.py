"""The catalog while a build (`library build`, `ganforge translate`) adds to it: rows, known addresses and pHashes
(dedupe, through an index), appended to the catalog's journal every FLUSH_EVERY rows and rewritten whole once at
the end, so a build's cost grows with what it adds, not with the library; and how an asset image is written
(atomically, before its row)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ganforge.assets import catalog, scoring
from ganforge.assets.hashindex import HashIndex
from ganforge.paths import Paths, atomic_path

FLUSH_EVERY = 64


HASH_FRAMES = {"image": 1, "clip": scoring.CLIP_HASH_FRAMES}  # pHashes per asset, by kind (dedupe)


@dataclass
class Catalog:
    """The catalog being built: rows, known addresses and hashes; flushed to disk every FLUSH_EVERY rows."""

    paths: Paths
    frame: pd.DataFrame
    build_id: str
    dedupe_hamming: int = -1
    new_rows: list[dict[str, Any]] = field(default_factory=list)
    pending: int = 0

    def __post_init__(self) -> None:
        self.known = catalog.addresses(self.frame)
        self._hashes: dict[str, HashIndex] = {}
        for kind, k in HASH_FRAMES.items():
            rows = [
                hs
                for h in self.frame.loc[self.frame["kind"] == kind, "phash"]
                if len(hs := scoring.decode_hashes(h if isinstance(h, str) else "")) == k
            ]
            self._hashes[kind] = HashIndex(k, self.dedupe_hamming, rows)

    def hashes(self, kind: str) -> np.ndarray:
        """pHashes [N, k] of the library's assets of `kind` (image: k=1; clip: first, middle, last frame);
        a view, valid until the next add."""
        return self._hashes[kind].table.view()

    def duplicate(self, kind: str, hashes: tuple[int, ...]) -> bool:
        """Whether an asset of `kind` has every compared frame within `dedupe_hamming` of `hashes`."""
        return self._hashes[kind].near(hashes)

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
        parts = [f for f in (self.frame, _typed(self.new_rows)) if len(f)]
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

    def flush(self, final: bool = False) -> None:
        """Make the rows added so far durable: appended to the journal, or (`final`, or no catalog yet) the whole
        catalog rewritten."""
        if final or not self.paths.catalog.exists():
            if self.pending or not self.paths.catalog.exists() or catalog.journal(self.paths.catalog).exists():
                catalog.write(self.all(), self.paths.catalog)
        elif self.pending:
            catalog.append(_typed(self.new_rows[-self.pending :]), self.paths.catalog)
        self.pending = 0


def _typed(rows: list[dict[str, Any]]) -> pd.DataFrame:
    new = pd.DataFrame(rows)
    for col, dtype in catalog.SCHEMA.items():
        if dtype != "object":
            new[col] = new[col].astype(dtype)
    return new[list(catalog.SCHEMA)]


def save_png(image: np.ndarray, path: Any) -> None:
    from PIL import Image

    arr = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
    with atomic_path(path, sweep=False) as tmp:  # the library's folders are swept once, by catalog.reconcile
        Image.fromarray(arr).save(tmp, format="PNG")
