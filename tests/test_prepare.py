"""The prepare stage on real files written here: every image mode/format, broken files, sources, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torchvision
from PIL import Image

import ganforge.data.prepare as prep
from ganforge.config import DataConfig
from ganforge.data import PreparedData
from ganforge.data.prepare import prepare
from ganforge.errors import GanforgeError

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _halves(size: tuple[int, int], first: tuple[int, int, int], second: tuple[int, int, int]) -> Image.Image:
    """An RGB image whose left half is `first` and right half `second`."""
    img = Image.new("RGB", size, first)
    img.paste(second, (size[0] // 2, 0, size[0], size[1]))
    return img


def _good_images(d: Path) -> list[str]:
    """One good image of every mode and format prepare must handle; returns their names."""
    d.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), RED).save(d / "rgb.png")
    Image.new("L", (10, 10), 77).save(d / "gray.png")
    Image.new("1", (10, 10), 1).save(d / "bilevel.bmp")
    Image.new("LA", (10, 10), (0, 0)).save(d / "transparent-la.png")  # fully transparent -> white
    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([0, 0, 0] * 256)
    pal.save(d / "palette-transparent.png", transparency=0)  # black but transparent -> white
    Image.new("RGBA", (10, 10), (*BLUE, 255)).save(d / "rgba.webp", lossless=True)
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(d / "cmyk.jpg", quality=95)  # cyan
    Image.fromarray(np.full((10, 10), 257 * 100, np.uint16)).save(d / "gray16.png")  # I;16 -> 100
    Image.frombytes("I;16B", (10, 10), np.full((10, 10), 257 * 50, ">u2").tobytes()).save(d / "gray16b.tif")
    Image.fromarray(np.full((10, 10), 65535, np.int32)).save(d / "int32.tif")  # I -> 255
    Image.fromarray(np.full((10, 10), 0.5, np.float32)).save(d / "float.tif")  # F 0..1 -> 128
    Image.new("RGB", (10, 10), BLUE).save(d / "rgb.tif")
    frames = [Image.new("RGB", (10, 10), RED), Image.new("RGB", (10, 10), BLUE)]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:])  # first frame: red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40x20 (red left, blue right); displayed rotated 90° CW: red on top
    _halves((40, 20), RED, BLUE).save(d / "rotated.jpg", exif=exif, quality=95)
    (d / "nested").mkdir()
    Image.new("RGB", (10, 10), (0, 255, 0)).save(d / "nested" / "green.bmp")
    return [p.relative_to(d).as_posix() for p in sorted(d.rglob("*")) if p.is_file()]


def _broken_files(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "empty.png").write_bytes(b"")
    png = d / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(png)
    (d / "truncated.png").write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    png.unlink()
    (d / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    (d / "noise.png").write_bytes(np.random.default_rng(1).bytes(500))


@pytest.fixture
def classes(tmp_path: Path) -> Path:
    """root/{alpha,beta}/...: good images of every kind, broken files, a duplicate, a stray root file."""
    root = tmp_path / "images"
    _good_images(root / "alpha")
    _broken_files(root / "beta")
    Image.new("RGB", (10, 10), (9, 9, 9)).save(root / "beta" / "dark.png")
    (root / "beta" / "copy-of-rgb.png").write_bytes((root / "alpha" / "rgb.png").read_bytes())
    (root / "beta" / "gone.png").symlink_to(root / "nowhere.png")  # dangling link
    Image.new("RGB", (10, 10)).save(root / "stray.png")
    (root / ".cache").mkdir()
    Image.new("RGB", (10, 10)).save(root / ".cache" / "hidden.png")
    (root / "alpha" / ".DS_Store").write_bytes(b"\0\1")
    return root


def _run(tmp_path: Path, name: str = "prepared", **kw: object) -> tuple[prep.PrepareSummary, Path]:
    out = tmp_path / name
    return prepare(DataConfig(**kw), out, tmp_path / "metrics" / f"{name}.json", progress=False), out


def _manifest(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "manifest.parquet").set_index("path")


def _pixels(out: Path, manifest: pd.DataFrame, path: str) -> np.ndarray:
    """The prepared [C, R, R] image of a source path, as int array."""
    row = manifest.loc[path]
    images, _ = PreparedData.open(out).load(row["split"])
    return images[int(row["index"])].numpy().astype(int)


def test_class_folders_every_mode_and_broken_files(classes: Path, tmp_path: Path) -> None:
    summary, out = _run(tmp_path, source="folder", path=str(classes), channels=3, resolution=16, shard_size=4)
    good = 15 + 1  # alpha's images + beta/dark.png
    reasons = {"duplicate": 1, "not an image": 2, "outside any class folder": 1, "truncated": 1, "broken symlink": 1}
    reasons["zero-byte"] = 1
    assert summary.files_seen == good + 7
    assert (summary.kept, summary.skipped, summary.duplicates) == (good, 7, 1)
    assert summary.skipped_by_reason == reasons
    assert summary.train + summary.test == good and summary.num_classes == 2
    assert "16 kept, 7 skipped" in summary.line() and "2 classes, 16x16x3" in summary.line()
    assert json.loads((tmp_path / "metrics" / "prepared.json").read_text())["skipped_by_reason"] == reasons

    m = _manifest(out)
    assert len(m) == summary.files_seen and not any(".cache" in p or "DS_Store" in p for p in m.index)
    assert m.loc["beta/empty.png", "reason"] == "zero-byte file"
    assert m.loc["beta/gone.png", "reason"] == "broken symlink"
    assert pd.isna(m.loc["beta/gone.png", "sha256"])
    assert m.loc["beta/truncated.png", "reason"] == "truncated"
    assert m.loc["beta/truncated.png", "format"] == "PNG"  # header was readable
    assert (
        m.loc["beta/notes.jpg", "reason"] == "not an image (text)"
        and m.loc["beta/noise.png", "reason"] == "not an image"
    )
    assert m.loc["beta/copy-of-rgb.png", "reason"] == "duplicate of alpha/rgb.png"
    assert m.loc["beta/copy-of-rgb.png", "sha256"] == m.loc["alpha/rgb.png", "sha256"]
    assert m.loc["stray.png", "reason"] == "outside any class folder" and m.loc["stray.png", "label"] == -1
    skipped = m[m.status == "skipped"]
    assert skipped.split.isna().all() and (skipped["index"] == -1).all()
    kept = m[m.status == "kept"]
    assert kept.reason.isna().all() and set(kept.split) <= {"train", "test"}
    assert (kept.label == kept.index.str.startswith("beta/").astype(int)).all()
    assert set(kept.class_name) == {"alpha", "beta"}
    modes = dict(zip(kept.index, kept["mode"], strict=True))
    assert modes["alpha/gray16.png"] == "I;16" and modes["alpha/cmyk.jpg"] == "CMYK"
    assert modes["alpha/palette-transparent.png"] == "P" and modes["alpha/float.tif"] == "F"
    assert (m.loc["alpha/rotated.jpg", "width"], m.loc["alpha/rotated.jpg", "height"]) == (40, 20)
    assert m.loc["alpha/animated.gif", "format"] == "GIF"

    info = json.loads((out / "info.json").read_text())
    assert info["format"] == 1 and info["class_names"] == ["alpha", "beta"] and info["num_classes"] == 2
    assert (info["resolution"], info["channels"]) == (16, 3)
    data = PreparedData.open(out)
    for split in ("train", "test"):
        entry = info["splits"][split]
        shards = [np.load(out / s) for s in entry["shards"]]
        assert all(s.dtype == np.uint8 and s.shape[1:] == (3, 16, 16) and 0 < len(s) <= 4 for s in shards)
        assert sum(len(s) for s in shards) == entry["count"] == data.count(split)
        labels = np.load(out / entry["labels"])
        assert labels.dtype == np.int64 and labels.shape == (entry["count"],)
        x, y = data.load(split)
        assert x.dtype == torch.uint8 and y.dtype == torch.int64 and x.shape == (entry["count"], 3, 16, 16)
        assert torch.equal(x, torch.from_numpy(np.concatenate(shards))) if shards else len(x) == 0
        rows = kept[kept.split == split].sort_values("index")
        assert list(rows["index"]) == list(range(entry["count"])) and list(rows.label) == y.tolist()

    def colour(path: str) -> np.ndarray:
        return _pixels(out, m, path).reshape(3, -1).mean(axis=1)

    assert np.allclose(colour("alpha/gray16.png"), 100) and np.allclose(colour("alpha/gray16b.tif"), 50)
    assert np.allclose(colour("alpha/int32.tif"), 255) and np.allclose(colour("alpha/float.tif"), 128)
    assert np.allclose(colour("alpha/transparent-la.png"), 255)
    assert np.allclose(colour("alpha/palette-transparent.png"), 255)
    assert np.allclose(colour("alpha/bilevel.bmp"), 255) and np.allclose(colour("alpha/gray.png"), 77)
    assert np.allclose(colour("alpha/animated.gif"), RED)
    assert np.allclose(colour("alpha/rgba.webp"), BLUE) and np.allclose(colour("alpha/rgb.tif"), BLUE)
    assert np.allclose(colour("alpha/cmyk.jpg"), (0, 255, 255), atol=3)
    assert np.allclose(colour("alpha/nested/green.bmp"), (0, 255, 0))
    rotated = _pixels(out, m, "alpha/rotated.jpg")  # crop of the upright 20x40: top red, bottom blue
    assert np.allclose(rotated[:, :6].reshape(3, -1).mean(axis=1), RED, atol=12)
    assert np.allclose(rotated[:, 10:].reshape(3, -1).mean(axis=1), BLUE, atol=12)


def test_flat_folder_is_unlabelled_and_fits_differ(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    _halves((40, 20), RED, BLUE).save(flat / "wide.png")
    Image.new("L", (16, 16), 200).save(flat / "square.png")
    crop, out_crop = _run(tmp_path, "crop", source="folder", path=str(flat), channels=3, resolution=16)
    pad, out_pad = _run(tmp_path, "pad", source="folder", path=str(flat), channels=3, resolution=16, fit="pad")
    assert crop.num_classes == pad.num_classes == 0 and crop.kept == 2 and "unlabelled" in crop.line()
    m = _manifest(out_crop)
    assert (m.label == -1).all() and m.class_name.isna().all()
    info = json.loads((out_crop / "info.json").read_text())
    assert info["class_names"] == [] and info["num_classes"] == 0
    for split in ("train", "test"):
        assert (PreparedData.open(out_crop).load(split)[1] == -1).all()
    cropped = _pixels(out_crop, m, "wide.png")
    padded = _pixels(out_pad, _manifest(out_pad), "wide.png")
    assert not np.array_equal(cropped, padded)
    assert (padded[:, :3] == 255).all() and (padded[:, -3:] == 255).all()  # white bands above and below
    assert np.allclose(padded[:, 6:10, :4].reshape(3, -1).mean(axis=1), RED, atol=2)
    assert np.allclose(cropped[:, :, :4].reshape(3, -1).mean(axis=1), RED, atol=2)  # no bands, red at left
    assert np.allclose(_pixels(out_crop, m, "square.png"), 200)  # grayscale replicated to 3 channels


@pytest.mark.parametrize(
    ("channels", "resolution", "fit", "flt"), [(1, 16, "crop", "nearest"), (3, 64, "pad", "lanczos")]
)
def test_resolution_and_channels(tmp_path: Path, channels: int, resolution: int, fit: str, flt: str) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    _halves((30, 50), RED, (0, 255, 0)).save(flat / "tall.png")
    Image.new("L", (8, 8), 40).save(flat / "small.png")
    cfg = {"channels": channels, "resolution": resolution, "fit": fit, "resize_filter": flt, "test_fraction": 0.0}
    summary, out = _run(tmp_path, source="folder", path=str(flat), **cfg)
    x, _ = PreparedData.open(out).load("train")
    assert summary.test == 0 and x.shape == (2, channels, resolution, resolution)
    assert json.loads((out / "info.json").read_text())["splits"]["test"] == {
        "count": 0,
        "shards": [],
        "labels": "test-labels.npy",
    }
    assert PreparedData.open(out).load("test")[0].shape == (0, channels, resolution, resolution)
    if channels == 1:  # RGB -> "L": red half has luma 76, green half 150
        tall = _pixels(out, _manifest(out), "tall.png")
        assert set(np.unique(tall)) == {76, 150}


def test_deterministic(classes: Path, tmp_path: Path) -> None:
    cfg = {"source": "folder", "path": str(classes), "channels": 3, "shard_size": 3, "test_fraction": 0.3}
    first, a = _run(tmp_path, "a", **cfg)
    second, b = _run(tmp_path, "b", **cfg)
    assert first.test > 0 and (first.train, first.test) == (second.train, second.test)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        if name.endswith(".npy"):
            assert np.array_equal(np.load(a / name), np.load(b / name)), name
    assert pq.read_table(a / "manifest.parquet").equals(pq.read_table(b / "manifest.parquet"))
    assert (a / "info.json").read_text() == (b / "info.json").read_text()


def test_digits(tmp_path: Path) -> None:
    summary, out = _run(tmp_path)
    assert (summary.source, summary.files_seen, summary.kept, summary.num_classes) == ("digits", 1797, 1797, 10)
    assert 0.07 < summary.test / 1797 < 0.15
    data = PreparedData.open(out)
    assert data.class_names == [str(i) for i in range(10)] and (data.resolution, data.channels) == (32, 1)
    x, y = data.load("train")
    assert x.shape == (summary.train, 1, 32, 32) and set(y.tolist()) == set(range(10))
    assert x.max() == 255 and x.min() == 0
    m = pd.read_parquet(out / "manifest.parquet")
    assert m.path.iloc[42] == "sklearn-digits/00042" and (m.width == 8).all() and m["format"].isna().all()


def test_built_in_digits_are_scikit_learns_without_importing_its_datasets() -> None:
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from ganforge.data.digits import load_digits_arrays

    images, labels = load_digits_arrays()
    reference = load_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
    code = (
        "import sys; from ganforge.data.sources import digits; digits(None); print('sklearn.datasets' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def _idx(path: Path, array: np.ndarray) -> None:
    """Write an MNIST idx file (unsigned bytes, big-endian dims)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_mnist_from_local_idx_files(tmp_path: Path) -> None:
    raw = tmp_path / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    cfg = {"source": "torchvision", "dataset": "MNIST", "path": str(tmp_path / "tv"), "channels": 3}
    summary, out = _run(tmp_path, **cfg)
    assert (summary.source, summary.files_seen, summary.train, summary.test) == ("torchvision:MNIST", 10, 6, 4)
    data = PreparedData.open(out)
    assert data.num_classes == 10 and data.class_names[3] == "3 - three"
    x, y = data.load("test")
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 1, 2, 3]
    assert torch.equal(x[:, 0], x[:, 1])  # grayscale replicated
    m = _manifest(out)
    assert m.loc["MNIST/train/00005", "index"] == 5 and m.loc["MNIST/test/00002", "split"] == "test"


def test_torchvision_absent_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(GanforgeError, match=r"train-images-idx3-ubyte.*in \S*tv/MNIST/raw, or set data\.download=true"):
        _run(tmp_path, source="torchvision", dataset="MNIST", path=str(tmp_path / "tv"))
    assert not (tmp_path / "tv").exists()

    class Offline(torchvision.datasets.MNIST):  # what a download without network looks like, without trying
        def download(self) -> None:
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: <urlopen error no network>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(GanforgeError, match=r"MNIST: download failed \(Error downloading .*\); place the files"):
        _run(tmp_path, source="torchvision", dataset="MNIST", path=str(tmp_path / "tv"), download=True)


def test_no_usable_image(tmp_path: Path) -> None:
    _broken_files(tmp_path / "bad")
    with pytest.raises(GanforgeError, match=r"bad: no usable image among 4 samples \(2 not an image, 1 truncated"):
        _run(tmp_path, source="folder", path=str(tmp_path / "bad"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(GanforgeError, match="no usable image among 0 samples"):
        _run(tmp_path, source="folder", path=str(tmp_path / "empty"))
    assert not (tmp_path / "prepared").exists() and not (tmp_path / "metrics").exists()


def test_missing_path_and_missing_prepared(tmp_path: Path) -> None:
    with pytest.raises(GanforgeError, match="nowhere: no such directory"):
        _run(tmp_path, source="folder", path=str(tmp_path / "nowhere"))
    with pytest.raises(GanforgeError, match=r"not found; run `ganforge prepare` first"):
        PreparedData.open(tmp_path / "prepared")


def test_decompression_bomb_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (64, 64)).save(flat / "huge.png")
    Image.new("RGB", (8, 8)).save(flat / "small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x64 > 2x the limit: a "bomb"
    summary, out = _run(tmp_path, source="folder", path=str(flat))
    assert summary.kept == 1 and summary.skipped_by_reason == {"too large": 1}
    assert _manifest(out).loc["huge.png", "reason"].startswith("too large: ")


def test_interrupted_run_keeps_previous_output(classes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = {"source": "folder", "path": str(classes)}
    _, out = _run(tmp_path, **cfg)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = {"n": 0}
    real = prep.normalise

    def flaky(img: Image.Image, c: DataConfig) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(img, c)

    monkeypatch.setattr(prep, "normalise", flaky)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, **cfg, resolution=64)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "metrics", "prepared"]  # no temp dirs left
