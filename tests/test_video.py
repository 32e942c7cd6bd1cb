"""Web-ready clip files: H.264 MP4, animated WebP preview, PNG poster."""

from __future__ import annotations

import os
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from ganforge.assets.video import VideoFiles, probe, upscale, write_video
from ganforge.errors import GanforgeError

T, SRC, SIZE = 24, 32, 64


def moving_square(channels: int, t: int = T, src: int = SRC) -> np.ndarray:
    """A soft bright square drifting left to right over a gentle gradient: smooth content, known motion."""
    yy, xx = np.mgrid[0:src, 0:src].astype(np.float32)
    frames = np.empty((t, src, src, channels), dtype=np.uint8)
    colour = np.array([230, 120, 40][:channels] if channels == 3 else [220], dtype=np.float32)
    for i in range(t):
        cx = 6 + (src - 12) * i / max(t - 1, 1)
        blob = np.exp(-((((xx - cx) / 4) ** 2 + ((yy - src / 2) / 4) ** 2) ** 2))  # super-Gaussian "square"
        background = 20 + 30 * xx / src
        frames[i] = np.clip(background[..., None] * (1 - blob[..., None]) + colour * blob[..., None], 0, 255)
    return frames


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def centroid_x(frame: np.ndarray) -> float:
    weight = frame.astype(np.float64).sum(axis=2)
    weight = np.clip(weight - np.median(weight), 0, None)
    return float((weight.sum(axis=0) * np.arange(frame.shape[1])).sum() / weight.sum())


def write(tmp_path: Path, frames: np.ndarray, name: str = "clip", **kwargs) -> VideoFiles:
    kwargs = {"fps": 24, "size": SIZE} | kwargs
    return write_video(frames, tmp_path / f"{name}.mp4", tmp_path / f"{name}.webp", tmp_path / f"{name}.png", **kwargs)


@pytest.mark.parametrize(
    ("channels", "fps"), [(1, 24), (3, 24), (3, 12.5), (3, 30000 / 1001), (1, Fraction(30000, 1001))]
)
def test_mp4_roundtrip(tmp_path: Path, channels: int, fps: float) -> None:
    frames = moving_square(channels)
    files = write(tmp_path, frames, fps=fps)
    assert (files.width, files.height, files.frames) == (SIZE, SIZE, T)
    assert files.fps == pytest.approx(float(fps), abs=1e-9)

    info = probe(files.mp4)
    assert info == {
        "codec": "h264",
        "width": SIZE,
        "height": SIZE,
        "frames": T,
        "fps": pytest.approx(float(fps), abs=1e-6),
        "pix_fmt": "yuv420p",
    }

    decoded = decode(files.mp4)
    expected = upscale(frames, SIZE)
    assert decoded.shape == expected.shape == (T, SIZE, SIZE, 3)
    mae = np.abs(decoded.astype(np.int16) - expected).mean()
    assert mae < 6, mae
    xs = [centroid_x(f) for f in decoded]
    assert xs[-1] - xs[0] > SIZE / 3  # the square travelled
    assert np.all(np.diff(xs) > -1)  # ... left to right, every frame
    if channels == 1:  # grayscale stays gray through 4:2:0 and back
        assert np.abs(decoded[..., 0].astype(int) - decoded[..., 2]).max() <= 3


def test_mp4_is_web_ready(tmp_path: Path) -> None:
    files = write(tmp_path, moving_square(3), fps=30000 / 1001)
    head = files.mp4.read_bytes()[:64]
    assert head[4:8] == b"ftyp"
    assert b"moov" in head  # +faststart: the index comes before the media data
    with av.open(str(files.mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.profile == "High"
        pts = [f.pts * f.time_base for f in container.decode(stream)]
    assert set(np.diff(pts)) == {Fraction(1001, 30000)}  # exact timestamps at fractional fps


def test_preview_and_poster(tmp_path: Path) -> None:
    frames = moving_square(3)
    files = write(tmp_path, frames, fps=12.5, preview_size=48)
    with Image.open(files.preview) as img:
        assert img.format == "WEBP"
        assert img.is_animated
        assert img.n_frames == T
        assert img.size == (48, 48)
        assert img.info["loop"] == 0
        img.seek(1)
        img.load()
        assert img.info["duration"] == 80
    with Image.open(files.poster) as img:
        assert img.format == "PNG"
        assert img.size == (SIZE, SIZE)
        poster = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(poster, upscale(frames, SIZE)[T // 2])


def test_preview_defaults_to_size(tmp_path: Path) -> None:
    files = write(tmp_path, moving_square(1))
    with Image.open(files.preview) as img:
        assert img.size == (SIZE, SIZE)


def test_no_temp_files_and_overwrite(tmp_path: Path) -> None:
    for name in ("clip.mp4", "clip.webp", "clip.png"):
        (tmp_path / name).write_bytes(b"old")
    files = write(tmp_path, moving_square(3))
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4", "clip.png", "clip.webp"]
    assert probe(files.mp4)["frames"] == T
    assert files.mp4.stat().st_mode & 0o044 == 0o044  # servable, not mkstemp's 0600


def test_failure_leaves_old_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("clip.mp4", "clip.webp", "clip.png"):
        (tmp_path / name).write_bytes(b"old")
    real_save = Image.Image.save

    def failing_save(self: Image.Image, fp: object, format: str | None = None, **params: object) -> None:
        if format == "WEBP":
            raise OSError("disk full")
        real_save(self, fp, format, **params)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write(tmp_path, moving_square(3))
    for name in ("clip.mp4", "clip.webp", "clip.png"):  # the MP4 was complete, but nothing was renamed into place
        assert (tmp_path / name).read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4", "clip.png", "clip.webp"]


def test_deterministic(tmp_path: Path) -> None:
    frames = moving_square(3)
    a = write(tmp_path, frames, name="a", fps=30000 / 1001)
    b = write(tmp_path, frames, name="b", fps=30000 / 1001)
    assert a.mp4.read_bytes() == b.mp4.read_bytes()
    assert a.poster.read_bytes() == b.poster.read_bytes()
    np.testing.assert_array_equal(decode(a.mp4), decode(b.mp4))


def test_upscale() -> None:
    gray = moving_square(1, t=3, src=20)
    out = upscale(gray, 40, "nearest")
    assert out.shape == (3, 40, 40, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, ::2, ::2, 1], gray[..., 0])
    assert (out[..., 0] == out[..., 2]).all()
    for resample in ("bilinear", "bicubic", "lanczos"):
        assert upscale(moving_square(3, t=2), 48, resample).shape == (2, 48, 48, 3)


def test_single_frame(tmp_path: Path) -> None:
    files = write(tmp_path, moving_square(3, t=1))
    assert probe(files.mp4)["frames"] == 1
    with Image.open(files.preview) as img:
        assert img.format == "WEBP"


GOOD = moving_square(3, t=4)


@pytest.mark.parametrize(
    ("frames", "kwargs", "message"),
    [
        (GOOD.astype(np.float32), {}, "uint8"),
        (GOOD[0], {}, "[T, H, W, C]"),
        (np.zeros((4, 32, 32, 4), np.uint8), {}, "channels"),
        (np.zeros((4, 32, 32, 2), np.uint8), {}, "channels"),
        (GOOD[:0], {}, "zero frames"),
        (GOOD, {"size": 63}, "even"),
        (GOOD, {"size": 14}, ">= 16"),
        (GOOD, {"size": 64.0}, "integer"),
        (GOOD, {"fps": 0}, "fps"),
        (GOOD, {"fps": -5}, "fps"),
        (GOOD, {"fps": 121}, "fps"),
        (GOOD, {"fps": float("nan")}, "fps"),
        (GOOD, {"fps": "24"}, "fps"),
        (GOOD, {"crf": -1}, "crf"),
        (GOOD, {"crf": 52}, "crf"),
        (GOOD, {"crf": 0}, "lossless"),
        (GOOD, {"resample": "cubic"}, "resample"),
        (GOOD, {"preview_size": 0}, "preview_size"),
    ],
)
def test_bad_input(tmp_path: Path, frames: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(GanforgeError) as err:
        write(tmp_path, frames, **kwargs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert os.listdir(tmp_path) == []


def test_bad_upscale_input() -> None:
    with pytest.raises(GanforgeError, match="resample"):
        upscale(GOOD, 32, "box")
    with pytest.raises(GanforgeError, match="uint8"):
        upscale(GOOD.astype(np.int64), 32)


def test_same_path_twice(tmp_path: Path) -> None:
    with pytest.raises(GanforgeError, match="different paths"):
        write_video(GOOD, tmp_path / "a.mp4", tmp_path / "a.mp4", tmp_path / "a.png", fps=24, size=SIZE)


def probe_with_deadline(path: Path, seconds: float = 10) -> dict | GanforgeError:
    """probe in a thread, so a hang fails the test instead of stalling the suite."""
    result: list = []

    def run() -> None:
        try:
            result.append(probe(path))
        except GanforgeError as e:
            result.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"probe({path.name}) hung"
    assert result, "probe raised something other than GanforgeError"
    return result[0]


def test_probe_truncated(tmp_path: Path) -> None:
    files = write(tmp_path, moving_square(3, t=48, src=48), size=128)
    data = files.mp4.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    result = probe_with_deadline(cut)
    if isinstance(result, GanforgeError):
        assert "cut.mp4" in str(result)
    else:
        assert result["frames"] < 48


@pytest.mark.parametrize("content", [b"this is not a video\n" * 10, b""])
def test_probe_not_a_video(tmp_path: Path, content: bytes) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(content)
    result = probe_with_deadline(fake)
    assert isinstance(result, GanforgeError)
    assert "fake.mp4" in str(result)


def test_probe_missing(tmp_path: Path) -> None:
    with pytest.raises(GanforgeError, match="no such"):
        probe(tmp_path / "nope.mp4")
