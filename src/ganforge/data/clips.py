"""Clips for `data.kind: video`: the prepare step of clip sources (generated moving digits, video files).

`prepare` calls `process_clip(item, cfg, seen)` once per source item; it returns the item's manifest row
and its clips, each uint8 [C, T, R, R] (T = `data.frames`, R = `data.resolution`).

Video files are decoded with PyAV. Frames are first resampled to `data.clip_fps` (each target time takes
the nearest decoded frame; none: every decoded frame), then every `data.clip_stride`-th one is kept; from
that sequence up to `data.clips_per_video` windows of T frames are taken, evenly spaced (each centred in
its share of the video), without overlap when the video holds `clips_per_video * T` frames. Decoding
stops after the last window. Each frame is normalised like an image (`decode.normalise`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
from PIL import Image

from ganforge.config import DataConfig
from ganforge.data.decode import Skipped, normalise, short_message, sniff, unreadable
from ganforge.data.sources import Item, open_regular

FALLBACK_FPS = 25.0  # when a stream states no frame rate

CLIP_MANIFEST_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("sha256", pa.string()),
        ("bytes", pa.int64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("format", pa.string()),  # container (FFmpeg's name)
        ("codec", pa.string()),
        ("fps", pa.float64()),  # the file's own frame rate
        ("duration", pa.float64()),  # seconds, as the container states it
        ("label", pa.int64()),
        ("class_name", pa.string()),
        ("digits", pa.string()),  # moving_digits: every digit shown, e.g. "3,7"
        ("split", pa.string()),
        ("index", pa.int64()),  # of the first clip in the split; the others follow it
        ("clips", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
    ]
)


# -- video files ----------------------------------------------------------------------------------


def plan_starts(total: int, frames: int, clips: int) -> list[int]:
    """Starts of at most `clips` windows of `frames` in a sequence of `total`; [] when `total < frames`.

    When `clips * frames <= total`, `clips` windows, each centred in its 1/clips share (no overlap);
    else the fewest windows that cover every frame, spread from the first frame to the last (they overlap
    as little as they can)."""
    if total < frames:
        return []
    n = min(clips, -(-total // frames))
    if n * frames <= total:
        return [round((i + 0.5) * total / n - frames / 2) for i in range(n)]
    return [round(i * (total - frames) / (n - 1)) for i in range(n)]  # here n >= 2


def _windows(starts: list[int], frames: int) -> set[int]:
    return {s for start in starts for s in range(start, start + frames)}


_MAGIC = {b"RIFF": "avi", b"GIF8": "gif", b"\x1a\x45\xdf\xa3": "matroska"}
_MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"moof", b"styp", b"uuid"}


def _truncated(file: Path, size: int) -> bool | None:
    """From the container's own framing: True when it claims more bytes than the file has, False when it
    does not, None when the file starts like no video container we know."""
    with open_regular(file) as f:
        head = f.read(16)
        if head[4:8] in _MP4_BOXES:  # MP4 / MOV: top-level boxes must tile the file
            offset, boxes = 0, 0
            while offset + 8 <= size and boxes < 100_000:
                f.seek(offset)
                header = f.read(16)
                box = int.from_bytes(header[:4], "big")
                if box == 1 and len(header) == 16:
                    box = int.from_bytes(header[8:16], "big")
                if box == 0:  # the last box runs to the end of the file
                    return False
                if box < 8 or offset + box > size:
                    return True
                offset, boxes = offset + box, boxes + 1
            return False
        kind = _MAGIC.get(head[:4])
        if kind == "avi":
            return int.from_bytes(head[4:8], "little") + 8 > size
        if kind == "gif":  # the trailer byte ends the file (a little padding after it is tolerated)
            f.seek(max(0, size - 16))
            return b"\x3b" not in f.read(16)
        return False if kind else None


def _ffmpeg_message(exc: BaseException) -> str:
    return short_message(exc) if not isinstance(exc, av.FFmpegError) else (exc.strerror or type(exc).__name__)


def _not_a_video(file: Path) -> Skipped:
    try:
        with open_regular(file) as f:
            kind = sniff(f.read(1024))
    except OSError:
        kind = None
    return Skipped("not a video", f"not a video ({kind})" if kind else "not a video")


def _open_container(file: Path, known: bool) -> Any:
    """PyAV's input container; Skipped when FFmpeg cannot open it (`known`: the file looks like a container)."""
    try:
        return av.open(str(file), mode="r")
    except Exception as exc:  # any failure on a user's file is that file's problem, never fatal
        if not known:
            raise _not_a_video(file) from None
        raise Skipped("corrupt", f"corrupt: {_ffmpeg_message(exc)}") from None


def _frame_image(frame: av.VideoFrame, resolution: int) -> Image.Image:
    """The frame as a PIL image, turned upright by the stream's display rotation (as EXIF orientation is for
    images); large frames are first scaled (area filter) to a short side of 2x `resolution`."""
    kwargs: dict[str, Any] = {}
    short = min(frame.width, frame.height)
    if short > 4 * resolution:
        scale = 2 * resolution / short
        size = {"width": max(1, round(frame.width * scale)), "height": max(1, round(frame.height * scale))}
        kwargs = {**size, "interpolation": "AREA"}
    if any(c.is_alpha for c in frame.format.components):  # composited on white by `normalise`, as for images
        img = Image.fromarray(frame.to_ndarray(format="rgba", **kwargs))
    else:
        img = frame.to_image(**kwargs)
    return img.rotate(frame.rotation, expand=True) if frame.rotation else img  # counter-clockwise degrees


def _resampled(frames: Iterable[av.VideoFrame], fps: float | None, native: float) -> Iterator[av.VideoFrame]:
    """`frames` at `fps`: target time t0 + j/fps takes the nearest frame (repeated or dropped); None: as they are."""
    if fps is None:
        yield from frames
        return
    prev: av.VideoFrame | None = None
    t0 = prev_t = 0.0
    j = 0
    for i, frame in enumerate(frames):
        t = float(frame.time) if frame.time is not None else i / native
        if prev is None:
            t0 = t
        else:
            while t0 + j / fps < (prev_t + t) / 2:
                yield prev
                j += 1
        prev, prev_t = frame, t
    if prev is not None:
        last = float(prev.duration * prev.time_base) if prev.duration and prev.time_base else 1 / native
        while t0 + j / fps < prev_t + last:
            yield prev
            j += 1


@dataclass(frozen=True)
class _Stream:
    fps: float
    duration: float | None
    frames: int  # as the container states it; 0 when unknown


def _describe(container: Any, row: dict[str, Any]) -> _Stream:
    """The first video stream's facts, recorded in `row`; Skipped when there is none."""
    if not container.streams:  # e.g. an MP4 whose index (moov) is damaged
        raise Skipped("corrupt", "corrupt: no stream found")
    if not container.streams.video:
        raise Skipped("no video stream", "no video stream")
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):  # a JPEG, PNG, ... file
        raise Skipped("not a video", f"not a video (a still image: {container.format.name})")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else FALLBACK_FPS
    if stream.duration and stream.time_base:
        duration: float | None = float(stream.duration * stream.time_base)
    else:
        duration = container.duration / av.time_base if container.duration else None
    row.update(
        width=stream.width,
        height=stream.height,
        format=container.format.name,
        codec=stream.codec_context.name,
        fps=float(rate) if rate else None,
        duration=duration,
    )
    return _Stream(fps, duration, int(stream.frames or 0))


def _estimate(info: _Stream, cfg: DataConfig) -> int | None:
    """How many sampled frames (after clip_fps and clip_stride) the stream should give; None: unknown."""
    if cfg.clip_fps is None:
        n = info.frames or (round(info.duration * info.fps) if info.duration else 0)
    else:
        n = math.ceil(info.duration * cfg.clip_fps - 1e-6) if info.duration else 0
    return -(-n // cfg.clip_stride) if n > 0 else None


def _decode(
    file: Path, known: bool, cfg: DataConfig, row: dict[str, Any], starts: list[int] | None
) -> tuple[dict[int, np.ndarray], int, list[int]]:
    """One pass over `file`: the normalised frames of the clips starting at `starts` (None: planned from the
    container's stated length), by sampled index; how many sampled frames were seen; the starts used.
    Decoding stops after the last clip."""
    kept: dict[int, np.ndarray] = {}
    seen = 0
    with _open_container(file, known) as container:
        info = _describe(container, row)
        if starts is None:
            estimate = _estimate(info, cfg)
            if estimate is None:  # unknown length: consecutive clips from the start (re-planned if it is short)
                starts = [i * cfg.frames for i in range(cfg.clips_per_video)]
            else:
                starts = plan_starts(estimate, cfg.frames, cfg.clips_per_video) or [0]
        wanted, stop = _windows(starts, cfg.frames), starts[-1] + cfg.frames
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for i, frame in enumerate(_resampled(container.decode(stream), cfg.clip_fps, info.fps)):
                if i % cfg.clip_stride:
                    continue
                if seen in wanted:
                    kept[seen] = normalise(_frame_image(frame, cfg.resolution), cfg)
                seen += 1
                if seen == stop:
                    break
        except Skipped:
            raise
        except Exception as exc:  # a decoder failure mid-stream: the file is damaged
            raise Skipped("corrupt", f"corrupt: frame {seen}: {_ffmpeg_message(exc)}") from None
    return kept, seen, starts


def _video_clips(file: Path, size: int, cfg: DataConfig, row: dict[str, Any]) -> list[np.ndarray]:
    """Up to `clips_per_video` clips [C, T, R, R] from one file; Skipped when damaged or too short."""
    try:
        truncated = _truncated(file, size)
    except OSError as exc:
        raise unreadable(exc) from None
    if truncated:  # a decoder may play the part it has without complaint: check the container's own framing
        raise Skipped("truncated", "truncated")
    known = truncated is not None
    kept, seen, starts = _decode(file, known, cfg, row, None)
    if seen < starts[-1] + cfg.frames:  # the stream ended early (or its length was unknown)
        starts = plan_starts(seen, cfg.frames, cfg.clips_per_video)
        if not starts:
            raise Skipped("too short", f"too short: {seen} frames after clip_fps/clip_stride, need {cfg.frames}")
        if not _windows(starts, cfg.frames) <= kept.keys():  # the stated length was too long: once more, exactly
            kept, _, _ = _decode(file, known, cfg, row, starts)
    return [np.stack([kept[s] for s in range(start, start + cfg.frames)], axis=1) for start in starts]


def _file_digest(file: Path) -> tuple[str, int]:
    try:
        with open_regular(file) as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
            return digest, f.tell()
    except OSError as exc:  # vanished, no permission, no longer a regular file
        raise unreadable(exc) from None


def process_clip(item: Item, cfg: DataConfig, seen: dict[str, str]) -> tuple[dict[str, Any], list[np.ndarray]]:
    """One manifest row (without split/index) and the item's clips [C, T, R, R], none when it is skipped.

    `seen` (hash -> path of the kept copy) is only read: the caller records what is kept."""
    row: dict[str, Any] = {"path": item.path, "label": item.label, "class_name": item.class_name}
    row["digits"] = item.digits
    try:
        if not item.has_data:  # listed only to be reported (a link out of data.path, a FIFO...): never opened
            raise Skipped(item.skip or "unreadable", item.reason or item.skip or "unreadable")
        generated = item.render() if item.render is not None else None
        if generated is not None:
            sha, size = hashlib.sha256(generated.tobytes()).hexdigest(), generated.nbytes
        else:
            assert item.file is not None
            sha, size = _file_digest(item.file)
        row.update(sha256=sha, bytes=size)
        if item.skip:
            raise Skipped(item.skip, item.reason or item.skip)
        if sha in seen:
            raise Skipped("duplicate", f"duplicate of {seen[sha]}")
        if generated is not None:
            row.update(width=generated.shape[2], height=generated.shape[1])
            clips = [np.repeat(generated[None], cfg.channels, axis=0)]
        elif size == 0:
            raise Skipped("zero-byte", "zero-byte file")
        else:
            assert item.file is not None
            clips = _video_clips(item.file, size, cfg, row)
    except Skipped as skip:
        row.update(status="skipped", reason=skip.reason, category=skip.category, split=None, index=-1, clips=0)
        return row, []
    row.update(status="kept", reason=None, clips=len(clips))
    return row, clips
