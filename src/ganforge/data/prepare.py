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
resized to `data.resolution` with `data.resize_filter`. An EXIF block that cannot be read is ignored (the
pixels are kept as stored). Animated images give their first frame.

Bad files are reported, never fatal: each manifest row says why a file was skipped (see `sources` for what
is never opened: links out of `data.path`, FIFOs, sockets...). Files are read and decoded in a pool of
`data.workers` processes (default: one per core), a few files per worker ahead, and `prepare` waits at most
`data.file_timeout_s` seconds for each: a file that takes longer is skipped ("took longer than N s") and its
process killed; a file whose decoder crashes its process is skipped ("corrupt: the decoder crashed
(SIGSEGV)"). A new process takes the next files; the output does not depend on the number of workers. This
works whichever thread runs `prepare` (a signal alarm would only work in the main one). In-memory and
generated samples (digits, torchvision, moving_digits) are processed inline.
"""

from __future__ import annotations

import contextlib
import faulthandler
import glob
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
import uuid
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from ganforge import faults
from ganforge.config import DataConfig
from ganforge.data.clips import CLIP_MANIFEST_SCHEMA, process_clip
from ganforge.data.decode import Skipped, normalise, open_image, unreadable
from ganforge.data.sources import Item, Source, display, hash_split, open_source
from ganforge.errors import GanforgeError
from ganforge.paths import write_text_atomic

FORMAT = 1
SPLITS = ("train", "test")
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


def _open(item: Item, raw: bytes, meta: dict[str, Any], resolution: int) -> Image.Image:
    """Decode a sample (an in-memory array, or a file's bytes: `decode.open_image`); fill `meta` as it is known."""
    if item.array is not None:
        img = Image.fromarray(item.array)
        meta.update(width=img.width, height=img.height, mode=img.mode)
        return img
    return open_image(raw, resolution, meta)


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
        faults.reach("prepare.shard")
        self.shards.append(name)
        self.filled = 0

    def close(self) -> dict[str, Any]:
        self._flush()
        self.buffer = None
        labels = f"{self.split}-labels.npy"
        np.save(self.out / labels, np.asarray(self.labels, dtype=np.int64))
        return {"count": len(self.labels), "shards": self.shards, "labels": labels}


def _process(item: Item, cfg: DataConfig, seen: dict[str, str]) -> tuple[dict[str, Any], np.ndarray | None]:
    """One manifest row (without split/index) and the normalised image, or None with the row's reason.

    `seen` (hash -> path of the kept copy) is only read: the caller records what is kept."""
    row: dict[str, Any] = {"path": item.path, "label": item.label, "class_name": item.class_name}
    try:
        if not item.has_data:  # listed only to be reported (a link out of data.path, a FIFO...): never opened
            raise Skipped(item.skip or "unreadable", item.reason or item.skip or "unreadable")
        try:
            raw = item.read()
        except OSError as exc:  # vanished, no permission, no longer a regular file
            raise unreadable(exc) from None
        sha = row["sha256"] = hashlib.sha256(raw).hexdigest()
        row["bytes"] = len(raw)
        if item.skip:
            raise Skipped(item.skip, item.reason or item.skip)
        if sha in seen:
            raise Skipped("duplicate", f"duplicate of {seen[sha]}")
        image = normalise(_open(item, raw, row, cfg.resolution), cfg)
    except Skipped as skip:
        row.update(status="skipped", reason=skip.reason, category=skip.category, split=None, index=-1)
        return row, None
    row.update(status="kept", reason=None)
    return row, image


def _process_image(item: Item, cfg: DataConfig, seen: dict[str, str]) -> tuple[dict[str, Any], list[np.ndarray]]:
    row, image = _process(item, cfg, seen)
    return row, [] if image is None else [image]


class _Crashed:
    """What a worker process that died in the middle of a file left: its exit code (negative: the signal)."""

    def __init__(self, exitcode: int | None) -> None:
        self.exitcode = exitcode

    def reason(self) -> str:
        code = self.exitcode
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return f"corrupt: the decoder crashed ({signal.Signals(-code).name})"
        return f"corrupt: the decoder crashed (exit code {code})"


def _serve(conn: Connection, fn: Callable[..., Any], cfg: DataConfig) -> None:
    """A worker process: `fn(item, cfg, {})` for each (seq, item) received, answered (seq, ok, value)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the pool
    faulthandler.disable()  # a decoder that crashes is a manifest row, not a Python traceback on the terminal
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if job is None:
            return
        seq, item = job
        try:
            answer: tuple[int, bool, Any] = (seq, True, fn(item, cfg, {}))
        except BaseException as exc:  # a bug, not a bad file: the parent raises it
            answer = (seq, False, exc)
        try:
            conn.send(answer)
        except Exception:  # an exception that cannot be pickled
            conn.send((seq, False, RuntimeError(f"{type(answer[2]).__name__}: {answer[2]}")))


class _Pool:
    """Up to `size` forked worker processes, each decoding one file at a time (as a DataLoader forks its workers:
    the parent's modules and patches come along, nothing is imported again).

    A file that takes longer than `seconds` has its process killed (a process, unlike a thread, can be stopped
    even inside a decoder's C code); a process that dies on a file (a decoder crash) takes only that file with
    it. Either way a new process takes the next files."""

    def __init__(self, fn: Callable[..., Any], cfg: DataConfig, size: int) -> None:
        self.fn, self.cfg, self.size = fn, cfg, size
        self.idle: list[tuple[Any, Connection]] = []
        self.busy: dict[Connection, tuple[Any, int, float]] = {}  # conn -> (process, seq, monotonic start)
        self.ctx = multiprocessing.get_context("fork")

    def free(self) -> bool:
        return bool(self.idle) or len(self.busy) < self.size

    def send(self, seq: int, item: Item) -> None:
        if self.idle:
            proc, conn = self.idle.pop()
        else:
            conn, child = self.ctx.Pipe()
            proc = self.ctx.Process(target=_serve, args=(child, self.fn, self.cfg), daemon=True, name="prepare")
            proc.start()
            child.close()
        conn.send((seq, item))
        self.busy[conn] = (proc, seq, time.monotonic())

    def wait(self, seconds: float) -> list[tuple[int, Any]]:
        """(seq, result) of the files finished, at least one unless none is in flight: None for a file that ran
        longer than `seconds`, a `_Crashed` for one whose process died; a worker's exception is raised."""
        done: list[tuple[int, Any]] = []
        while self.busy and not done:
            deadline = min(begun for _, _, begun in self.busy.values()) + seconds
            for conn in wait(list(self.busy), timeout=max(deadline - time.monotonic(), 0.0)):
                proc, seq, _ = self.busy.pop(conn)  # type: ignore[call-overload]
                try:
                    got, ok, value = conn.recv()  # type: ignore[union-attr]
                except (EOFError, OSError):
                    proc.join()
                    conn.close()  # type: ignore[union-attr]
                    done.append((seq, _Crashed(proc.exitcode)))
                    continue
                if not ok:
                    raise value
                assert got == seq
                self.idle.append((proc, conn))  # type: ignore[arg-type]
                done.append((seq, value))
            now = time.monotonic()
            for conn, (proc, seq, begun) in list(self.busy.items()):
                if now - begun >= seconds:
                    del self.busy[conn]
                    proc.kill()
                    proc.join()
                    conn.close()
                    done.append((seq, None))
        return done

    def close(self) -> None:
        for proc, conn in self.idle:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
            proc.join(timeout=5)
        for conn, (proc, _, _) in self.busy.items():
            proc.kill()
            proc.join()
            conn.close()
        self.idle, self.busy = [], {}


def workers(cfg: DataConfig) -> int:
    """The number of decoding processes: `data.workers`, or one per core this process may run on."""
    return cfg.workers or len(os.sched_getaffinity(0))


def _supervised(
    process: Callable[[Item, DataConfig, dict[str, str]], Any],
    items: Iterable[Item],
    cfg: DataConfig,
    seen: dict[str, str],
) -> Iterator[tuple[Item, Any]]:
    """(item, process(item, cfg, seen)) for each item, in order: None for a file whose call ran longer than
    `cfg.file_timeout_s`, a `_Crashed` for one that killed its process. Files are decoded in a pool of worker
    processes, a few per worker ahead (they do not see `seen`: the caller finds copies by hash); other items
    (in memory, generated, listed only to be reported) inline, in turn."""
    size = workers(cfg)
    pool = _Pool(process, cfg, size)
    queued: deque[tuple[int, Item]] = deque()  # in order, up to `ahead`
    unsent: deque[tuple[int, Item]] = deque()  # files among them not yet given to a worker
    done: dict[int, Any] = {}
    ahead = 4 * size
    source = enumerate(items)
    try:
        while True:
            while len(queued) < ahead and (nxt := next(source, None)) is not None:
                queued.append(nxt)
                if nxt[1].file is not None:
                    unsent.append(nxt)
            while unsent and pool.free():
                pool.send(*unsent.popleft())
            if not queued:
                return
            seq, item = queued[0]
            if item.file is None:
                queued.popleft()
                yield item, process(item, cfg, seen)
            elif seq in done:
                queued.popleft()
                yield item, done.pop(seq)
            else:
                done.update(pool.wait(cfg.file_timeout_s))
    finally:
        pool.close()


def _duplicate(row: dict[str, Any], first: str) -> dict[str, Any]:
    """`row` of a kept file as the row of a duplicate of `first` (what a file found a duplicate at once gets)."""
    out = {k: row[k] for k in ("path", "label", "class_name", "digits", "sha256", "bytes") if k in row}
    out.update(status="skipped", reason=f"duplicate of {first}", category="duplicate", split=None, index=-1)
    if "clips" in row:
        out["clips"] = 0
    return out


def _lost(item: Item, cfg: DataConfig, crashed: _Crashed | None) -> dict[str, Any]:
    """The row of a file that ran out of time (`crashed` None) or killed the process decoding it."""
    row: dict[str, Any] = {"path": item.path, "label": item.label, "class_name": item.class_name}
    if crashed is None:
        row.update(status="skipped", reason=f"took longer than {cfg.file_timeout_s:g} s", category="timeout")
    else:
        row.update(status="skipped", reason=crashed.reason(), category="corrupt")
    row.update(split=None, index=-1)
    if cfg.kind == "video":
        row.update(digits=item.digits, clips=0)
    return row


def _utf8(row: dict[str, Any]) -> dict[str, Any]:
    """Every text of a manifest row as valid UTF-8 (Parquet refuses the rest); names are escaped at the source."""
    return {k: display(v) if isinstance(v, str) else v for k, v in row.items()}


def _build(source: Source, cfg: DataConfig, out: Path, progress: bool) -> tuple[dict[str, Any], Counter[str]]:
    """Write shards, labels, manifest and info.json into `out`; return info and skip counts."""
    side = (cfg.resolution, cfg.resolution)
    if cfg.kind == "video":
        process, schema, shape = process_clip, CLIP_MANIFEST_SCHEMA, (cfg.channels, cfg.frames, *side)
        unit = "clip" if cfg.source == "moving_digits" else "file"
    else:
        process, schema, shape, unit = _process_image, MANIFEST_SCHEMA, (cfg.channels, *side), "img"
    writers = {s: _SplitWriter(out, s, cfg.shard_size, shape) for s in SPLITS}
    seen: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    bar = tqdm(source.items, desc="prepare", unit=unit, file=sys.stderr, disable=not progress, dynamic_ncols=True)
    results = _supervised(process, bar, cfg, seen)
    with contextlib.closing(results), warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"PIL\.")  # odd metadata: the manifest reports what matters
        for item, result in results:
            lost = result is None or isinstance(result, _Crashed)
            row, samples = (_lost(item, cfg, result), []) if lost else result
            if samples and row["sha256"] in seen:  # a copy of a file that was still in flight when this was read
                row, samples = _duplicate(row, seen[row["sha256"]]), []
            if not samples:
                skipped[row.pop("category")] += 1
            else:  # all samples of one item go to one split, consecutively
                seen[row["sha256"]] = item.path
                split = item.split or hash_split(row["sha256"], cfg.test_fraction)
                indices = [writers[split].add(sample, item.label) for sample in samples]
                row.update(split=split, index=indices[0])
            rows.append(row)
    if not seen:
        why = ", ".join(f"{n} {c}" for c, n in sorted(skipped.items())) or "no files"
        what = "video" if cfg.kind == "video" else "image"
        raise GanforgeError(f"{source.name}: no usable {what} among {len(rows)} samples ({why})")
    pq.write_table(pa.Table.from_pylist([_utf8(r) for r in rows], schema=schema), out / "manifest.parquet")
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


def _remove_leftovers(out_dir: Path) -> None:
    """Remove what a killed prepare left beside `out_dir`: its unfinished tree (`.<name>.tmp-<pid>-*`, when that
    process is gone) and an old tree it had not yet deleted (`.<name>.old-*`)."""
    for stale in out_dir.parent.glob(f".{glob.escape(out_dir.name)}.*-*"):
        kind, _, rest = stale.name[len(out_dir.name) + 2 :].partition("-")
        if kind == "tmp":
            pid = rest.split("-", 1)[0]
            if pid.isdigit() and _alive(int(pid)):
                continue
        elif kind != "old":
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def prepare(cfg: DataConfig, out_dir: Path, metrics_path: Path, progress: bool = True) -> PrepareSummary:
    """Run the prepare stage: read `cfg`'s source, write `out_dir` (atomically) and `metrics_path`."""
    start = time.perf_counter()
    out_dir, metrics_path = Path(out_dir), Path(metrics_path)
    source = open_source(cfg)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_dir)
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
