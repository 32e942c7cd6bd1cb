"""Clip data (`data.kind: video`): moving digits, real video files written here with PyAV and PIL, shapes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import ganforge.data.clips as clips
from ganforge.cli import main
from ganforge.config import DataConfig, load_config
from ganforge.data.clips import plan_starts
from ganforge.data.dataset import KINDS, PreparedData
from ganforge.data.moving_digits import MovingDigits, bounce
from ganforge.data.prepare import prepare
from ganforge.errors import ConfigError, GanforgeError

ROOT = Path(__file__).resolve().parents[1]
FPS = 10


def level(i: int) -> int:
    """The gray level of frame `i` in the test videos: each frame is identifiable after decoding."""
    return 10 + 6 * (i % 40)


def write_mp4(path: Path, n: int, size: tuple[int, int] = (48, 32), faststart: bool = False) -> None:
    """H.264 (libx264, yuv420p, lossless) at FPS: frame i is uniform gray `level(i)`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", container_options=options) as out:
        stream = out.add_stream("libx264", rate=FPS, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(n):
            frame = np.full((size[1], size[0], 3), level(i), np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def write_gif(path: Path, n: int) -> None:
    """An animated GIF (PIL save_all) at FPS: frame i is uniform gray `level(i)`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [Image.new("RGB", (30, 20), (level(i),) * 3) for i in range(n)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=1000 // FPS, loop=0)


def write_audio_only(path: Path) -> None:
    """An MP4 holding one AAC audio stream and no video."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        stream.layout = "mono"
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def _levels(clip: torch.Tensor) -> list[int]:
    """The mean gray level of each frame of a clip [C, T, H, W]."""
    return [round(float(v)) for v in clip.float().mean(dim=(0, 2, 3))]


def _run(tmp_path: Path, name: str = "prepared", **kw: object):
    cfg = DataConfig(kind="video", **kw)
    out = tmp_path / name
    return prepare(cfg, out, tmp_path / "metrics" / f"{name}.json", progress=False), out


def _manifest(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "manifest.parquet").set_index("path")


# -- moving digits ----------------------------------------------------------------------------------


def test_bounce_reflects_at_the_walls() -> None:
    pos = bounce(np.array([[0.5, 5.0]]), np.array([[-1.0, 2.0]]), frames=5, limit=10)
    assert pos[0, :, 0].tolist() == [0.5, 0.5, 1.5, 2.5, 3.5]  # y hits 0 and comes back
    assert pos[0, :, 1].tolist() == [5.0, 7.0, 9.0, 9.0, 7.0]  # x hits 10 and comes back


def test_moving_digits_physics() -> None:
    maker = MovingDigits(resolution=32, frames=24, max_digits=1, seed=3, resize_filter="bilinear")
    assert (maker.size, maker.limit) == (14, 18)
    bounces = 0
    for i in range(40):
        spec = maker.spec(i)
        assert len(spec.which) == 1 and spec.labels[0] in range(10)
        pos = spec.positions[0]
        assert pos.shape == (24, 2) and (pos >= 0).all() and (pos <= maker.limit).all()
        step = np.diff(pos, axis=0)
        lengths = np.linalg.norm(step, axis=1)
        speed = lengths.max()  # a step is shorter only where it meets a wall
        assert maker.limit / 12 - 1e-9 <= speed <= maker.limit / 6 + 1e-9
        assert np.isclose(lengths, speed).mean() > 0.5
        bounces += int((np.diff(np.sign(step), axis=0) != 0).any())

        clip = maker.render(spec).astype(float)
        assert clip.shape == (24, 32, 32) and clip.max() > 200
        ys, xs = np.arange(32)[:, None], np.arange(32)[None, :]
        mass = clip.sum(axis=(1, 2))
        centroid = np.stack([(clip * ys).sum(axis=(1, 2)) / mass, (clip * xs).sum(axis=(1, 2)) / mass], axis=1)
        assert np.allclose(centroid - np.rint(pos), (centroid - np.rint(pos))[0])  # the digit moves rigidly
        assert (np.linalg.norm(np.diff(centroid, axis=0), axis=1) > 0).mean() > 0.5  # and moves most frames
    assert bounces > 10


def test_moving_digits_are_deterministic(tmp_path: Path) -> None:
    cfg = {"source": "moving_digits", "num_clips": 40, "frames": 6, "resolution": 16, "test_fraction": 0.2}
    first, a = _run(tmp_path, "a", **cfg)
    second, b = _run(tmp_path, "b", **cfg)
    _, c = _run(tmp_path, "c", **cfg, seed=1)
    assert (first.train, first.test) == (second.train, second.test) and first.test > 0
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert not np.array_equal(np.load(a / "train-00000.npy")[:5], np.load(c / "train-00000.npy")[:5])
    assert (_manifest(a).sha256 != _manifest(c).sha256).all()
    # clip i depends on (seed, i) only: more clips keep the first ones, in the same split
    _, d = _run(tmp_path, "d", **{**cfg, "num_clips": 60})
    assert _manifest(d).iloc[:40][["sha256", "split"]].equals(_manifest(a)[["sha256", "split"]])


@pytest.mark.parametrize(("channels", "resolution", "frames", "max_digits"), [(1, 32, 16, 2), (3, 16, 4, 1)])
def test_clip_shapes_and_labels(tmp_path: Path, channels: int, resolution: int, frames: int, max_digits: int) -> None:
    cfg = {"channels": channels, "resolution": resolution, "frames": frames, "max_digits": max_digits}
    summary, out = _run(tmp_path, source="moving_digits", num_clips=200, **cfg)
    assert (summary.kind, summary.frames, summary.clips) == ("video", frames, 200)
    assert (summary.kept, summary.skipped) == (200, 0)
    assert summary.train + summary.test == 200 and summary.test > 0
    shape = f"clips {frames}x{resolution}x{resolution}x{channels}"
    assert f"prepare: 200 clips from 200 kept, 0 skipped -> {out}" in summary.line() and shape in summary.line()

    info = json.loads((out / "info.json").read_text())
    assert (info["kind"], info["frames"], info["source"], info["num_classes"]) == ("video", frames, "moving_digits", 10)
    data = PreparedData.open(out, kinds=KINDS)
    assert (data.kind, data.frames, data.class_names) == ("video", frames, [str(d) for d in range(10)])
    m = _manifest(out)
    for split in ("train", "test"):
        x, y = data.load(split)
        assert x.dtype == torch.uint8 and x.shape == (data.count(split), channels, frames, resolution, resolution)
        assert data.sample_shape == x.shape[1:]
        rows = m[m.split == split].sort_values("index")
        assert list(rows["index"]) == list(range(len(x))) and rows.label.tolist() == y.tolist()
        first_digit = rows.digits.str.split(",").str[0].astype(int)
        assert (first_digit == rows.label).all() and (rows.clips == 1).all()
        if channels == 3:
            assert torch.equal(x[:, 0], x[:, 2])  # grayscale replicated
    counts = m.digits.str.count(",") + 1
    assert set(counts) == set(range(1, max_digits + 1))
    assert set(m.label) == set(range(10)) and (m.status == "kept").all() and (m.width == resolution).all()


# -- video files ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/{cats,dogs}/...: an MP4 and a GIF that are good, and every kind of bad file."""
    root = tmp_path_factory.mktemp("videos")
    write_mp4(root / "cats" / "walk.mp4", 40)
    write_gif(root / "dogs" / "run.gif", 20)
    write_gif(root / "dogs" / "blink.gif", 5)  # shorter than a clip
    whole = root / "whole.mp4"
    for name, faststart in (("cut.mp4", False), ("cut-faststart.mp4", True)):
        write_mp4(whole, 60, faststart=faststart)
        data = whole.read_bytes()
        (root / "dogs" / name).write_bytes(data[: len(data) // 3])
    whole.unlink()
    (root / "dogs" / "notes.mp4").write_text("this is a text file, not a video\n")
    (root / "dogs" / "empty.webm").write_bytes(b"")
    (root / "dogs" / "readme.txt").write_text("videos of dogs\n")
    write_audio_only(root / "dogs" / "bark.mp4")
    shutil.copy(root / "cats" / "walk.mp4", root / "dogs" / "walk-again.mov")
    write_gif(root / "stray.gif", 20)
    return root


def write_video(path: Path, codec: str, pix_fmt: str, shade: int, n: int = 20, fps: int = 25) -> None:
    """n frames of `codec` in the container of `path`'s suffix (`format`d where FFmpeg does not guess it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".ogv": "ogg", ".mpg": "mpeg"}.get(path.suffix)
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 48, 32, pix_fmt
        for i in range(n):
            frame = np.full((32, 48, 3), (shade + 5 * i) % 256, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def test_every_container_pyav_decodes_is_kept_whatever_its_name(tmp_path: Path) -> None:
    """AVI, MOV, MKV, MP4, MPEG-1 (.mpg), VP8 in Ogg (.ogv: PyAV cannot encode Theora), WebM, GIF and a video
    with no extension at all are clips; a still image and a text file are reported with PyAV's reason."""
    root = tmp_path / "mixed"
    files = {"a/clip.avi": ("mpeg4", "yuv420p"), "a/clip.mov": ("libx264", "yuv420p"),
             "a/clip.mkv": ("ffv1", "yuv420p"), "a/clip.mp4": ("libx264", "yuv420p"),
             "b/clip.mpg": ("mpeg1video", "yuv420p"), "b/clip.ogv": ("libvpx", "yuv420p"),
             "b/clip.webm": ("libvpx", "yuv420p")}  # fmt: skip
    for k, (name, (codec, pix)) in enumerate(files.items()):
        write_video(root / name, codec, pix, shade=20 * k)
    write_gif(root / "b" / "clip.gif", 20)
    shutil.copy(root / "a" / "clip.mkv", root / "a" / "no-extension")
    (root / "a" / "clip.mkv").write_bytes(b"")  # the copy keeps its content; this one is now empty
    Image.new("RGB", (48, 32), (9, 9, 9)).save(root / "b" / "cover.jpg")
    (root / "b" / "notes.md").write_text("not a video\n")
    summary, out = _run(tmp_path, source="video_folder", path=str(root), frames=8, clips_per_video=1)
    m = _manifest(out)
    kept = sorted(m[m.status == "kept"].index)
    assert kept == ["a/clip.avi", "a/clip.mov", "a/clip.mp4", "a/no-extension", "b/clip.gif", "b/clip.mpg",
                    "b/clip.ogv", "b/clip.webm"], m[["status", "reason"]]  # fmt: skip
    assert m.loc["b/cover.jpg", "reason"].startswith("not a video (a still image")
    assert m.loc["b/notes.md", "reason"] == "not a video (text)"
    assert m.loc["a/clip.mkv", "reason"] == "zero-byte file"
    assert summary.kept == 8 and summary.clips == 8


def test_video_folder_good_and_bad_files(videos: Path, tmp_path: Path) -> None:
    summary, out = _run(tmp_path, source="video_folder", path=str(videos), frames=8, clips_per_video=3)
    reasons = {"duplicate": 1, "not a video": 2, "outside any class folder": 1, "too short": 1, "truncated": 2}
    reasons |= {"no video stream": 1, "zero-byte": 1}  # readme.txt: PyAV's verdict, not its name's
    assert summary.skipped_by_reason == reasons
    assert (summary.files_seen, summary.kept, summary.skipped, summary.clips) == (11, 2, 9, 6)
    assert "6 clips from 2 kept, 9 skipped" in summary.line() and "2 classes, clips 8x32x32x1" in summary.line()

    m = _manifest(out)
    assert m.loc["dogs/cut.mp4", "reason"] == m.loc["dogs/cut-faststart.mp4", "reason"] == "truncated"
    assert (
        m.loc["dogs/notes.mp4", "reason"] == "not a video (text)"
        and m.loc["dogs/empty.webm", "reason"] == "zero-byte file"
    )
    assert m.loc["dogs/readme.txt", "reason"] == "not a video (text)"
    assert m.loc["dogs/bark.mp4", "reason"] == "no video stream"
    assert m.loc["dogs/walk-again.mov", "reason"] == "duplicate of cats/walk.mp4"
    assert m.loc["dogs/blink.gif", "reason"] == "too short: 5 frames after clip_fps/clip_stride, need 8"
    assert m.loc["stray.gif", "reason"] == "outside any class folder"
    skipped = m[m.status == "skipped"]
    assert skipped.split.isna().all() and (skipped["index"] == -1).all() and (skipped.clips == 0).all()

    walk, run = m.loc["cats/walk.mp4"], m.loc["dogs/run.gif"]
    assert (walk.codec, walk.width, walk.height, walk.fps, walk.duration, walk.clips) == ("h264", 48, 32, 10, 4.0, 3)
    assert (run.codec, run.fps, run.duration, run.clips, run.label, run.class_name) == ("gif", 10, 2.0, 3, 1, "dogs")

    data = PreparedData.open(out, kinds=KINDS)
    assert data.class_names == ["cats", "dogs"] and data.sample_shape == (1, 8, 32, 32)
    for path, starts in (("cats/walk.mp4", [3, 16, 29]), ("dogs/run.gif", [0, 6, 12])):
        row = m.loc[path]
        x, y = data.load(row.split)
        assert y[row["index"] : row["index"] + 3].tolist() == [row.label] * 3  # one file's clips: one split, in a row
        for k, start in enumerate(starts):
            got = _levels(x[row["index"] + k])
            assert np.allclose(got, [level(start + j) for j in range(8)], atol=2), (path, k, got)


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    red, blue = (255, 0, 0), (0, 0, 255)
    with av.open(str(tmp_path / "phone.mp4"), "w") as out:  # stored 48x32, red left, blue right
        stream = out.add_stream("libx264", rate=FPS, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.set_display_rotation(90)  # shown turned 90 degrees counter-clockwise: 32x48, blue on top
        frame = np.zeros((32, 48, 3), np.uint8)
        frame[:, :24], frame[:, 24:] = red, blue
        for _ in range(4):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    _, out = _run(tmp_path, source="video_folder", path=str(tmp_path), frames=4, channels=3, resolution=16)
    row = _manifest(out).loc["phone.mp4"]
    assert (row.width, row.height, row.clips) == (48, 32, 1)  # as stored, like images before EXIF
    x, _ = PreparedData.open(out, kinds=KINDS).load(row.split)
    top, bottom = x[0, :, :, :6].float().mean(dim=(1, 2, 3)), x[0, :, :, 10:].float().mean(dim=(1, 2, 3))
    assert np.allclose(top, blue, atol=12) and np.allclose(bottom, red, atol=12)


def test_clip_fps_and_stride_pick_frames(videos: Path, tmp_path: Path) -> None:
    cats = tmp_path / "cats"
    shutil.copytree(videos / "cats", cats)
    base = {"source": "video_folder", "path": str(cats), "frames": 8, "clips_per_video": 2, "test_fraction": 0.0}
    expected = {
        "native": [level(i) for i in (*range(6, 14), *range(26, 34))],  # 40 frames: each clip centred in its half
        "stride": [level(2 * i) for i in (*range(1, 9), *range(11, 19))],  # 20 frames (0, 2, 4, ...): the same
    }
    runs = {"native": {}, "stride": {"clip_stride": 2}, "fps": {"clip_fps": 5}}
    got = {}
    for name, extra in runs.items():
        summary, out = _run(tmp_path, name, **base, **extra)
        x, _ = PreparedData.open(out, kinds=KINDS).load("train")
        assert summary.clips == 2 and x.shape == (2, 1, 8, 32, 32)
        got[name] = _levels(x[0]) + _levels(x[1])
    assert np.allclose(got["native"], expected["native"], atol=2)
    assert np.allclose(got["stride"], expected["stride"], atol=2) and got["fps"] == got["stride"]

    summary, out = _run(tmp_path, "upsampled", **{**base, "clip_fps": 25, "clips_per_video": 1})  # 100 frames
    x, _ = PreparedData.open(out, kinds=KINDS).load("train")
    steps = np.diff([(v - 10) / 6 for v in _levels(x[0])])
    assert summary.clips == 1 and set(np.round(steps)) <= {0, 1} and 0 in np.round(steps)  # repeats, no gaps


def test_stated_length_wrong_or_missing(videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cats = tmp_path / "cats"
    shutil.copytree(videos / "cats", cats)
    base = {"source": "video_folder", "path": str(cats), "frames": 8, "clips_per_video": 3, "test_fraction": 0.0}
    _, out = _run(tmp_path, "truth", **base)
    truth, _ = PreparedData.open(out, kinds=KINDS).load("train")
    log = tmp_path / "passes.jsonl"  # files are decoded in worker processes: they write down their passes
    real_decode = clips._decode

    def counting(*args: object) -> object:
        with log.open("a") as f:
            f.write(json.dumps(args[-1]) + "\n")
        return real_decode(*args)

    def passes() -> list[object]:
        found = [json.loads(line) for line in log.read_text().splitlines()]
        log.unlink()
        return found

    monkeypatch.setattr(clips, "_decode", counting)
    monkeypatch.setattr(clips, "_estimate", lambda info, cfg: 1000)  # the container overstates its length
    _, out = _run(tmp_path, "overstated", **base)
    assert torch.equal(PreparedData.open(out, kinds=KINDS).load("train")[0], truth)
    assert passes() == [None, [3, 16, 29]]  # a second pass with the true length

    monkeypatch.setattr(clips, "_estimate", lambda info, cfg: None)  # no stated length: clips from the start
    _, out = _run(tmp_path, "unknown", **base)
    x, _ = PreparedData.open(out, kinds=KINDS).load("train")
    assert passes() == [None] and np.allclose(_levels(x[1]), [level(i) for i in range(8, 16)], atol=2)


def test_plan_starts() -> None:
    assert plan_starts(40, 8, 3) == [3, 16, 29]  # room for all: each centred in its third
    assert plan_starts(24, 8, 3) == [0, 8, 16]  # exactly tiled
    assert plan_starts(20, 8, 3) == [0, 6, 12]  # too short for 3 apart: the fewest that cover it
    assert plan_starts(12, 8, 5) == [0, 4]
    assert plan_starts(8, 8, 4) == [0] and plan_starts(7, 8, 4) == []
    assert plan_starts(100, 8, 1) == [46]


def test_flat_folder_is_unlabelled_and_no_usable_video(videos: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(videos / "dogs" / "run.gif", flat / "run.gif")
    summary, out = _run(tmp_path, source="video_folder", path=str(flat), frames=8, channels=3, resolution=16)
    assert summary.num_classes == 0 and summary.clips == 3 and "unlabelled" in summary.line()
    data = PreparedData.open(out, kinds=KINDS)
    x, y = data.load(_manifest(out).loc["run.gif", "split"])
    assert x.shape == (3, 3, 8, 16, 16) and (y == -1).all() and torch.equal(x[:, 0], x[:, 1])

    bad = tmp_path / "bad"
    shutil.copytree(videos / "dogs", bad, ignore=shutil.ignore_patterns("run.gif", "walk-again.mov"))
    why = r"bad: no usable video among 7 samples \(1 no video stream, 2 not a video, 1 too short"
    with pytest.raises(GanforgeError, match=why):
        _run(tmp_path, "nothing", source="video_folder", path=str(bad), frames=8)
    assert not (tmp_path / "nothing").exists()


# -- config and the other stages --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["data.kind=video"], "data.kind 'video' needs a video data.source: moving_digits or video_folder"),
        (["data.source=moving_digits"], "data.source 'moving_digits' makes clips: set data.kind=video"),
        (["data.kind=video", "data.source=video_folder"], "data.source 'video_folder' needs data.path"),
        (["data.kind=movie"], "data.kind: Input should be 'image' or 'video'"),
        (["data.frames=1"], "data.frames: Input should be greater than or equal to 2 (got 1)"),
        (["data.max_digits=3"], "data.max_digits: Input should be less than or equal to 2 (got 3)"),
        (["data.clip_fps=0"], "data.clip_fps: Input should be greater than 0"),
        (["data.clip_stride=0"], "data.clip_stride: Input should be greater than or equal to 1"),
    ],
)
def test_bad_video_config_names_the_key(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "params.yaml", overrides)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_cli_prepares_clips_and_image_models_refuse_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    video = ["--set", "data.kind=video", "--set", "data.source=moving_digits", "--set", "data.num_clips=30"]
    assert main(["prepare", "-q", *video, "--set", "data.frames=4"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("prepare: 30 clips from 30 kept, 0 skipped") and "clips 4x32x32x1" in line
    assert json.loads((tmp_path / "metrics" / "prepare.json").read_text())["clips"] == 30
    with pytest.raises(GanforgeError, match=r"holds video clips \(data.kind video\), but this needs images"):
        PreparedData.open(tmp_path / "data" / "prepared")
    assert main(["train", "--set", "tracking.enabled=false", *video]) == 1  # params.yaml's model is dcgan
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.model=dcgan trains on images, but data/prepared holds video clips" in err
    assert "set train.model to mocogan" in err
    assert not (tmp_path / "models" / "checkpoint.pt").exists()
