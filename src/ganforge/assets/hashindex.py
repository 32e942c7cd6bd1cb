"""Near-duplicate search over 64-bit perceptual hashes that does not grow with the library.

Multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012): split the 64 bits into r + 1 chunks; two hashes
within Hamming distance r agree exactly on at least one chunk (pigeonhole), so the only rows worth comparing are
those sharing a chunk value with the query, found in r + 1 hash tables. Every candidate is then checked exactly,
so the answer is the linear scan's, at a cost that depends on how many rows share a chunk, not on the library's
size. A clip is hashed at several frames and is a duplicate when every frame is within r: its first frame must
be, so the tables index the first frame and the check looks at all of them.

Radii of 16 and more leave chunks of 3 bits, which every row shares: the index then scans, as before.
"""

from __future__ import annotations

import numpy as np

from ganforge.assets import scoring

MAX_INDEXED_RADIUS = 15


class HashTable:
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


def _chunks(radius: int) -> list[tuple[int, int]]:
    """(shift, mask) of the radius + 1 nearly equal bit chunks of a 64-bit hash."""
    m = radius + 1
    widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
    out, shift = [], 0
    for w in widths:
        out.append((shift, (1 << w) - 1))
        shift += w
    return out


class HashIndex:
    """The pHashes of one kind of asset, answering "is any row within `radius` of these hashes?" exactly."""

    def __init__(self, k: int, radius: int, rows: list[tuple[int, ...]] = ()) -> None:
        self.k, self.radius = k, radius
        self.table = HashTable([], k)
        indexed = 0 <= radius <= MAX_INDEXED_RADIUS
        self._chunks = _chunks(radius) if indexed else []
        self._buckets: list[dict[int, list[int]]] = [{} for _ in self._chunks]
        for hs in rows:
            self.add(hs)

    def __len__(self) -> int:
        return len(self.table.view())

    def add(self, hashes: tuple[int, ...]) -> None:
        row = len(self)
        self.table.add(hashes)
        for (shift, mask), bucket in zip(self._chunks, self._buckets, strict=True):
            bucket.setdefault((hashes[0] >> shift) & mask, []).append(row)

    def candidates(self, hashes: tuple[int, ...]) -> np.ndarray:
        """Rows that may be within the radius (a superset of those that are)."""
        if not self._chunks:
            return np.arange(len(self))
        rows: set[int] = set()
        for (shift, mask), bucket in zip(self._chunks, self._buckets, strict=True):
            rows.update(bucket.get((hashes[0] >> shift) & mask, ()))
        return np.fromiter(rows, dtype=np.int64, count=len(rows))

    def near(self, hashes: tuple[int, ...]) -> bool:
        """Whether some row has every compared frame within the radius of `hashes`."""
        if self.radius < 0 or not len(self):
            return False
        rows = self.candidates(hashes)
        if not len(rows):
            return False
        return bool((scoring.max_hamming(hashes, self.table.view()[rows]) <= self.radius).any())
