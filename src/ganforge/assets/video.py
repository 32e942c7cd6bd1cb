"""Write generated clips as web-ready files: H.264 MP4, animated WebP preview and PNG poster."""

from __future__ import annotations

import math
import os
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from numbers import Real
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace
from PIL import Image

from ganforge.errors import GanforgeError
from ganforge.paths import atomic_path

RESAMPLE: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
MIN_SIZE = 16
MAX_FPS = 120
X264_PRESET = "medium"
WEBP_QUALITY = 80
# ITU-R BT.709 / limited ("MPEG") range, written into the H.264 VUI so browsers decode the colours we encoded.
_AVCOL_BT709 = 1
_AVCOL_RANGE_MPEG = 1


@dataclass(frozen=True)
class VideoFiles:
    """The three files written for one clip, and what the MP4 holds."""

    mp4: Path
    preview: Path
    poster: Path
    width: int
    height: int
    frames: int
    fps: float


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray):
        raise GanforgeError(f"video frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise GanforgeError(f"video frames must be uint8, got dtype {frames.dtype}")
    if frames.ndim != 4:
        raise GanforgeError(f"video frames must be [T, H, W, C], got {frames.ndim} dims (shape {frames.shape})")
    t, h, w, c = frames.shape
    if c not in (1, 3):
        raise GanforgeError(f"video frames must have 1 or 3 channels, got {c} (shape {frames.shape})")
    if t == 0:
        raise GanforgeError("video has zero frames")
    if h == 0 or w == 0:
        raise GanforgeError(f"video frames are empty (shape {frames.shape})")


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise GanforgeError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_resample(resample: str) -> Image.Resampling:
    try:
        return RESAMPLE[resample]
    except (KeyError, TypeError):
        raise GanforgeError(f"unknown resample {resample!r}; choose one of {', '.join(RESAMPLE)}") from None


def _frame_rate(fps: float | Fraction) -> Fraction:
    """fps as an exact fraction: 12.5 -> 25/2, 30000/1001 given as a float -> 30000/1001."""
    if isinstance(fps, bool) or not isinstance(fps, Real):
        raise GanforgeError(f"fps must be a number, got {fps!r}")
    if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise GanforgeError(f"fps must be > 0 and <= {MAX_FPS}, got {fps}")
    rate = Fraction(fps) if isinstance(fps, Fraction) else Fraction(float(fps)).limit_denominator(1001)
    if rate <= 0:  # a tiny positive float can round to zero
        raise GanforgeError(f"fps must be > 0 and <= {MAX_FPS}, got {fps}")
    return rate


def upscale(frames: np.ndarray, size: int, resample: str = "bicubic") -> np.ndarray:
    """[T,H,W,C] uint8 (C 1 or 3) -> [T,size,size,3] uint8 RGB.

    PIL resize per frame; resample is nearest|bilinear|bicubic|lanczos. Non-square frames are stretched."""
    _check_frames(frames)
    size = _check_int("size", size)
    if size < 1:
        raise GanforgeError(f"size must be >= 1, got {size}")
    method = _check_resample(resample)
    t, _h, _w, c = frames.shape
    out = np.empty((t, size, size, 3), dtype=np.uint8)
    for i in range(t):
        if c == 1:  # resize the one channel, then replicate it: a third of the work
            img = Image.fromarray(np.ascontiguousarray(frames[i, :, :, 0]))
            out[i] = np.asarray(img.resize((size, size), method))[:, :, None]
        else:
            img = Image.fromarray(np.ascontiguousarray(frames[i]))
            out[i] = np.asarray(img.resize((size, size), method))
    return out


def _encode_mp4(rgb: np.ndarray, path: Path, rate: Fraction, crf: int) -> None:
    """Encode [T,H,W,3] uint8 RGB to H.264 High profile, yuv420p BT.709, MP4 with the moov atom first."""
    _t, height, width, _c = rgb.shape
    with av.open(str(path), mode="w", format="mp4", container_options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / rate  # one tick per frame: pts are exact for any rational fps
        cc = stream.codec_context
        cc.time_base = 1 / rate
        cc.thread_count = 1  # tiny frames: threads cost more than they save, and output stays byte-identical
        cc.colorspace = _AVCOL_BT709
        cc.color_primaries = _AVCOL_BT709
        cc.color_trc = _AVCOL_BT709
        cc.color_range = _AVCOL_RANGE_MPEG
        stream.options = {"crf": str(crf), "preset": X264_PRESET, "profile": "high"}
        for i, pixels in enumerate(rgb):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
            )
            frame.pts = i
            frame.time_base = cc.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _readable(tmp: Path) -> None:
    """mkstemp creates 0600 files; assets are meant to be served, so make them world-readable like a normal file."""
    os.chmod(tmp, 0o644)


def write_video(
    frames: np.ndarray,
    mp4: Path,
    preview: Path,
    poster: Path,
    *,
    fps: float,
    size: int,
    crf: int = 18,
    preview_size: int | None = None,
    resample: str = "bicubic",
    sweep: bool = True,
) -> VideoFiles:
    """H.264 MP4 (libx264, yuv420p, +faststart) of the frames upscaled to size x size, an animated looping WebP
    preview (at preview_size or size) and a PNG poster (the middle frame at size).

    Each file is written to a temp sibling; the three are renamed into place only after all three are complete,
    so an error or a kill never leaves a half-written file under a final name (a failing rename itself, after
    the others succeeded, can still leave a mix of old and new files). `sweep`: see `paths.atomic_path`."""
    _check_frames(frames)
    size = _check_int("size", size)
    if size < MIN_SIZE or size % 2:
        raise GanforgeError(f"video size must be even and >= {MIN_SIZE} (H.264 4:2:0 needs even sides), got {size}")
    rate = _frame_rate(fps)
    crf = _check_int("crf", crf)
    if not 1 <= crf <= 51:
        hint = " (crf 0 is lossless High 4:4:4, which browsers cannot play)" if crf == 0 else ""
        raise GanforgeError(f"crf must be in 1..51, got {crf}{hint}")
    if preview_size is not None:
        preview_size = _check_int("preview_size", preview_size)
        if preview_size < 1:
            raise GanforgeError(f"preview_size must be >= 1, got {preview_size}")
    _check_resample(resample)
    mp4, preview, poster = Path(mp4), Path(preview), Path(poster)
    if len({p.resolve() for p in (mp4, preview, poster)}) != 3:
        raise GanforgeError(f"mp4, preview and poster must be three different paths, got {mp4}, {preview}, {poster}")

    big = upscale(frames, size, resample)
    small = big if preview_size in (None, size) else upscale(frames, preview_size, resample)

    with ExitStack() as stack:  # renames happen on exit, in reverse order, only if everything below succeeded
        tmp_mp4 = stack.enter_context(atomic_path(mp4, sweep))
        tmp_preview = stack.enter_context(atomic_path(preview, sweep))
        tmp_poster = stack.enter_context(atomic_path(poster, sweep))
        try:
            _encode_mp4(big, tmp_mp4, rate, crf)
        except av.FFmpegError as e:
            raise GanforgeError(f"H.264 encoding of {mp4} failed: {e}") from e
        images = [Image.fromarray(f) for f in small]
        images[0].save(
            tmp_preview,
            format="WEBP",
            save_all=True,
            append_images=images[1:],
            duration=1000 / float(rate),  # PIL accumulates float durations and rounds each timestamp
            loop=0,
            lossless=False,
            quality=WEBP_QUALITY,
        )
        Image.fromarray(big[len(big) // 2]).save(tmp_poster, format="PNG")
        for tmp in (tmp_mp4, tmp_preview, tmp_poster):
            _readable(tmp)

    return VideoFiles(
        mp4=mp4, preview=preview, poster=poster, width=size, height=size, frames=len(big), fps=float(rate)
    )


def probe(mp4: Path) -> dict:
    """{"codec", "width", "height", "frames" (decoded count), "fps", "pix_fmt"} of a video file, via PyAV.

    GanforgeError if the file is missing, not a video, or truncated/corrupt (fewer frames decode than it declares)."""
    path = Path(mp4)
    if not path.is_file():
        raise GanforgeError(f"{path}: no such video file")
    try:
        with av.open(str(path), mode="r", metadata_errors="replace") as container:
            if not container.streams.video:
                raise GanforgeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            declared = stream.frames
            decoded = sum(1 for _ in container.decode(stream))
            cc = stream.codec_context
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            info = {
                "codec": cc.name,
                "width": cc.width,
                "height": cc.height,
                "frames": decoded,
                "fps": float(rate) if rate else 0.0,
                "pix_fmt": cc.pix_fmt,
            }
    except (av.FFmpegError, OSError, ValueError) as e:
        raise GanforgeError(f"{path}: unreadable video ({e})") from None
    if decoded == 0:
        raise GanforgeError(f"{path}: no decodable video frames")
    if declared and decoded < declared:
        raise GanforgeError(f"{path}: truncated or corrupt video (decoded {decoded} of {declared} frames)")
    return info
