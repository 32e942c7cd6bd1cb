"""Read what `prepare` wrote: `PreparedData.open(out_dir).load("train")` -> (uint8 NCHW, int64 labels), or
`.reader("train")`: the same samples read from the shard files batch by batch (`ShardReader`), for splits larger
than memory should hold.

Video data (clips, uint8 NCTHW) opens only where the caller says it can use it:
`PreparedData.open(out_dir, kinds=KINDS)`; code that handles images only opens with the default and so stops
with one line on video data.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganforge.errors import GanforgeError

FORMAT = 1
KINDS = ("image", "video")


class PreparedData:
    """A prepared-data directory (format 1): its description and its splits."""

    def __init__(self, out_dir: Path, info: dict[str, Any]) -> None:
        self.out_dir = out_dir
        self.info = info
        self.kind: str = str(info.get("kind", "image"))  # written since video data; older ones are images
        self.frames: int | None = int(info["frames"]) if self.kind == "video" else None
        self.resolution: int = int(info["resolution"])
        self.channels: int = int(info["channels"])
        self.num_classes: int = int(info["num_classes"])
        self.class_names: list[str] = [str(n) for n in info["class_names"]]
        self.source: str = str(info["source"])
        self.splits: dict[str, dict[str, Any]] = info["splits"]

    @classmethod
    def open(cls, out_dir: Path, kinds: Collection[str] = ("image",)) -> PreparedData:
        """Read `info.json`; GanforgeError (one line) when the directory is missing, not valid, or holds a
        kind of data (image / video) not in `kinds`: what the caller can use."""
        out_dir = Path(out_dir)
        try:
            info = json.loads((out_dir / "info.json").read_text())
        except FileNotFoundError:
            raise GanforgeError(f"{out_dir}: not found; run `ganforge prepare` first") from None
        except (OSError, ValueError) as exc:
            raise GanforgeError(f"{out_dir}/info.json: unreadable ({exc}); run `ganforge prepare` again") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            found = info.get("format") if isinstance(info, dict) else None
            raise GanforgeError(
                f"{out_dir}: prepared-data format {found!r}, expected {FORMAT}; run `ganforge prepare` again"
            )
        try:
            data = cls(out_dir, info)
        except (KeyError, TypeError, ValueError) as exc:
            raise GanforgeError(f"{out_dir}/info.json: invalid ({exc!r}); run `ganforge prepare` again") from None
        if data.kind not in kinds:
            what = {"image": "images", "video": "video clips"}
            raise GanforgeError(
                f"{out_dir} holds {what.get(data.kind, repr(data.kind))} (data.kind {data.kind}), "
                f"but this needs {' or '.join(what.get(k, k) for k in kinds)}"
            )
        return data

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's shape: (C, R, R) for images, (C, T, R, R) for clips."""
        side = (self.resolution, self.resolution)
        return (self.channels, *side) if self.frames is None else (self.channels, self.frames, *side)

    def _split(self, split: str) -> dict[str, Any]:
        if split not in self.splits:
            raise GanforgeError(f"{self.out_dir}: no split {split!r} (have {', '.join(sorted(self.splits))})")
        return self.splits[split]

    def count(self, split: str) -> int:
        """Number of images (or clips) in `split` ("train" or "test")."""
        return int(self._split(split)["count"])

    def nbytes(self, split: str) -> int:
        """Size of the split's samples in memory (uint8)."""
        return self.count(split) * int(np.prod(self.sample_shape))

    def labels(self, split: str) -> torch.Tensor:
        entry = self._split(split)
        try:
            labels = np.load(self.out_dir / entry["labels"])
        except (OSError, ValueError) as exc:
            raise GanforgeError(
                f"{self.out_dir}: cannot read split {split!r} ({exc}); run `ganforge prepare` again"
            ) from None
        if labels.shape != (int(entry["count"]),):
            raise GanforgeError(
                f"{self.out_dir}: split {split!r} labels do not match info.json; run `ganforge prepare` again"
            )
        return torch.from_numpy(labels.astype(np.int64, copy=False))

    def reader(self, split: str = "train", pin: bool = False) -> ShardReader:
        """The split's samples, read from its shards on demand (`reader[idx]`), never held whole in memory."""
        entry = self._split(split)
        reader = ShardReader([self.out_dir / name for name in entry["shards"]], self.sample_shape, pin=pin)
        if len(reader) != int(entry["count"]):
            reader.close()
            raise GanforgeError(
                f"{self.out_dir}: split {split!r} has {len(reader)} samples in its shards, info.json says "
                f"{entry['count']}; run `ganforge prepare` again"
            )
        return reader

    def load(self, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split in memory: (uint8 [N, C, R, R] or, for clips, [N, C, T, R, R]; int64 [N]),
        shards concatenated in order."""
        entry = self._split(split)
        shape = self.sample_shape
        try:
            shards = [np.load(self.out_dir / name, mmap_mode="r") for name in entry["shards"]]
            labels = np.load(self.out_dir / entry["labels"])
        except (OSError, ValueError) as exc:
            raise GanforgeError(
                f"{self.out_dir}: cannot read split {split!r} ({exc}); run `ganforge prepare` again"
            ) from None
        images = np.concatenate(shards) if shards else np.zeros((0, *shape), dtype=np.uint8)
        count = int(entry["count"])
        if images.shape != (count, *shape) or images.dtype != np.uint8 or labels.shape != (count,):
            raise GanforgeError(
                f"{self.out_dir}: split {split!r} does not match info.json "
                f"(images {tuple(images.shape)}, labels {tuple(labels.shape)}, expected {count}); "
                "run `ganforge prepare` again"
            )
        return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64, copy=False))


class ShardReader:
    """A split's samples read from its `.npy` shards row by row (`os.preadv` at each row's offset, sorted by
    position), so that memory holds the batch being read and the OS page cache does the caching: a 100k-image
    set trains in the memory of a small one. `reader[idx]` -> uint8 [len(idx), *sample_shape], in idx's order;
    `pin=True` gives page-locked tensors (CUDA: the copy to the device overlaps the step)."""

    def __init__(self, files: list[Path], sample_shape: tuple[int, ...], pin: bool = False) -> None:
        self.sample_shape = tuple(sample_shape)
        self.row = int(np.prod(self.sample_shape))
        self.pin = pin
        self.fds: list[int] = []
        self.offsets: list[int] = []
        self.starts: list[int] = [0]
        try:
            for f in files:
                mm = np.load(f, mmap_mode="r")  # reads the header only
                if mm.dtype != np.uint8 or tuple(mm.shape[1:]) != self.sample_shape:
                    raise GanforgeError(
                        f"{f}: shard of {mm.dtype} {tuple(mm.shape)}, expected uint8 [n, {self.sample_shape}]"
                    )
                self.offsets.append(int(mm.offset))
                self.starts.append(self.starts[-1] + int(mm.shape[0]))
                del mm
                self.fds.append(os.open(f, os.O_RDONLY))
        except (OSError, ValueError) as exc:
            self.close()
            raise GanforgeError(f"cannot read shard ({exc}); run `ganforge prepare` again") from None

    def __len__(self) -> int:
        return self.starts[-1]

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.sample_shape)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        rows = idx.tolist()
        out = torch.empty((len(rows), *self.sample_shape), dtype=torch.uint8, pin_memory=self.pin)
        view = out.numpy().reshape(len(rows), self.row)
        for j in sorted(range(len(rows)), key=rows.__getitem__):  # in file order: sequential reads where they can be
            i = rows[j]
            if not 0 <= i < len(self):
                raise IndexError(f"sample {i} of {len(self)}")
            k = bisect.bisect_right(self.starts, i) - 1
            n = os.preadv(self.fds[k], [view[j]], self.offsets[k] + (i - self.starts[k]) * self.row)
            if n != self.row:
                raise GanforgeError(f"a shard ended early at sample {i} (truncated?); run `ganforge prepare` again")
        return out

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def __del__(self) -> None:
        self.close()
