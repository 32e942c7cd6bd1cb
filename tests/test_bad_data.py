"""Bad data: a corpus of broken, hostile and odd files written here, prepared by the API and by the real CLI.

prepare keeps every good file, reports every bad one with its reason, never crashes, never hangs (non-regular
files are never opened; a per-file time limit), and never follows a symlink out of `data.path`.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import ganforge.data.clips as clips
import ganforge.data.prepare as prep
from ganforge.config import DataConfig
from ganforge.data import PreparedData
from ganforge.data.prepare import prepare

ROOT = Path(__file__).resolve().parents[1]
RED, BLUE = (255, 0, 0), (0, 0, 255)
ROOT_USER = os.getuid() == 0
NON_UTF8 = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8, kept by Python as a surrogate escape
NON_UTF8_CLASS = os.fsdecode(b"na\xefve")
DROP_READ_CAPS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


def _noise(size: tuple[int, int], seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _encoded(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(side: int) -> bytes:
    """A PNG whose header says side x side RGB (1.2 GB decoded at 20000) with a few bytes of pixel data."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    signature = b"\x89PNG\r\n\x1a\n"
    return (
        signature
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _fifo_and_socket(folder: Path, fifo: str, sock: str) -> None:
    os.mkfifo(folder / fifo)
    cwd = os.getcwd()
    os.chdir(folder)  # a relative address: AF_UNIX paths are limited to 108 bytes
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(sock)
    finally:
        os.chdir(cwd)


GOOD = {  # kept by every run, whoever runs it
    "cats/animated.gif",
    "cats/cmyk.jpg",
    "cats/exif-garbage.jpg",
    "cats/exif-orientation-9.jpg",
    "cats/gray16.png",
    "cats/one-pixel.png",
    "cats/palette-transparent.png",
    "cats/photo.jpg",
    "dogs/caf\\xe9.png",  # the non-UTF-8 name, escaped
    "dogs/linked.png",  # a link to a file in a hidden folder inside data.path
    "dogs/more/green.png",  # through a link to a hidden folder inside data.path
    "na\\xefve/white.png",  # a class folder whose name is not UTF-8
}
LOCKED = {"dogs/private.png", "dogs/locked/inside.png"}  # mode 000: kept where permissions apply to the reader
BAD = {
    "cats/bomb.png": "too large: 400000000 pixels, over the decompression-bomb limit of 178956970",
    "cats/empty.png": "zero-byte file",
    "cats/notes.png": "not an image (text)",
    "cats/page.jpg": "not an image (HTML)",
    "cats/truncated.jpg": "truncated",
    "cats/truncated.png": "truncated",
    "dogs/again": "symlink to a folder already listed",
    "dogs/back": "symlink loop",
    "dogs/copy-of-photo.jpg": "duplicate of cats/photo.jpg",  # a link inside data.path: read, same content
    "dogs/fifo-link.png": "not a regular file (FIFO)",
    "dogs/gone.png": "broken symlink",
    "dogs/loop.png": "symlink loop",
    "dogs/outside-dir": "symlink outside data.path",
    "dogs/outside.png": "symlink outside data.path",
    "dogs/pipe.png": "not a regular file (FIFO)",
    "dogs/socket.png": "not a regular file (socket)",
    "elsewhere": "symlink outside data.path",  # at the top: not a class either
    "stray.png": "outside any class folder",
}
DENIED = {"dogs/private.png": "unreadable: Permission denied", "dogs/locked": "unreadable folder: Permission denied"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    """tmp/images: {cats, dogs, <non-UTF-8>}/... good and bad files; tmp/outside: what links must not reach."""
    tmp = tmp_path_factory.mktemp("bad-data")
    root, outside = tmp / "images", tmp / "outside"
    cats, dogs, pool = root / "cats", root / "dogs", root / ".pool"
    for d in (cats, dogs, pool / "more", outside):
        d.mkdir(parents=True)
    _noise((64, 48), 0).save(cats / "photo.jpg", quality=90)
    Image.new("RGB", (1, 1), (9, 99, 199)).save(cats / "one-pixel.png")
    Image.fromarray(np.full((12, 12), 257 * 100, np.uint16)).save(cats / "gray16.png")
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(cats / "cmyk.jpg", quality=95)
    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([0, 0, 0] * 256)
    pal.save(cats / "palette-transparent.png", transparency=0)
    frames = [Image.new("RGB", (10, 10), RED), Image.new("RGB", (10, 10), BLUE)]
    frames[0].save(cats / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    _noise((20, 20), 1).save(cats / "exif-garbage.jpg", exif=b"Exif\0\0" + b"garbage!" * 8)
    orientation = Image.Exif()
    orientation[0x0112] = 9  # no such orientation: ignored
    wide = Image.new("RGB", (40, 20), RED)
    wide.paste(BLUE, (20, 0, 40, 20))
    wide.save(cats / "exif-orientation-9.jpg", exif=orientation, quality=95)

    (cats / "bomb.png").write_bytes(_bomb_png(20000))
    (cats / "empty.png").write_bytes(b"")
    (cats / "notes.png").write_text("shopping list: milk, eggs\n")
    (cats / "page.jpg").write_text("<!DOCTYPE html>\n<html><body><h1>404 Not Found</h1></body></html>\n")
    jpeg, png = _encoded(_noise((64, 64), 2), "JPEG"), _encoded(_noise((64, 64), 3), "PNG")
    (cats / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (cats / "truncated.png").write_bytes(png[: len(png) // 2])

    nonutf8 = os.path.join(os.fsencode(dogs), os.fsencode(NON_UTF8))
    Path(os.fsdecode(nonutf8)).write_bytes(_encoded(_noise((16, 16), 4), "PNG"))
    (root / NON_UTF8_CLASS).mkdir()
    Image.new("RGB", (8, 8), (255, 255, 255)).save(root / NON_UTF8_CLASS / "white.png")
    _noise((16, 16), 5).save(pool / "pool.png")
    Image.new("RGB", (8, 8), (0, 255, 0)).save(pool / "more" / "green.png")
    (dogs / "linked.png").symlink_to("../.pool/pool.png")
    (dogs / "more").symlink_to("../.pool/more")
    (dogs / "copy-of-photo.jpg").symlink_to("../cats/photo.jpg")
    (dogs / "again").symlink_to("../cats")
    (dogs / "back").symlink_to("..")
    (dogs / "loop.png").symlink_to("loop.png")
    (dogs / "gone.png").symlink_to("nowhere.png")
    _noise((16, 16), 6).save(outside / "secret.png")
    (dogs / "outside.png").symlink_to(outside / "secret.png")
    (dogs / "outside-dir").symlink_to(outside)
    (root / "elsewhere").symlink_to(outside)
    _fifo_and_socket(dogs, "pipe.png", "socket.png")
    (dogs / "fifo-link.png").symlink_to("pipe.png")
    Image.new("RGB", (8, 8)).save(root / "stray.png")

    _noise((16, 16), 7).save(dogs / "private.png")
    (dogs / "locked").mkdir()
    _noise((16, 16), 8).save(dogs / "locked" / "inside.png")
    (dogs / "private.png").chmod(0)
    (dogs / "locked").chmod(0)
    yield root
    (dogs / "private.png").chmod(0o644)
    (dogs / "locked").chmod(0o755)


def _denied(corpus: Path) -> bool:
    """Whether this process is refused the mode-000 file (root is not, unless it lacks CAP_DAC_OVERRIDE)."""
    try:
        (corpus / "dogs" / "private.png").open("rb").close()
    except PermissionError:
        return True
    return False


def _expected(denied: bool) -> tuple[set[str], dict[str, str]]:
    """The kept paths and the skip reasons, where the reader is (denied) or is not subject to permissions."""
    if denied:
        return set(GOOD), {**BAD, **DENIED}
    return GOOD | LOCKED, dict(BAD)


def _manifest(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "manifest.parquet").set_index("path")


def _check(out: Path, denied: bool) -> pd.DataFrame:
    kept, reasons = _expected(denied)
    m = _manifest(out)
    assert m.index.is_unique
    assert set(m.index[m.status == "kept"]) == kept
    assert m[m.status == "skipped"].reason.to_dict() == reasons
    assert m.loc[list(kept)].sha256.is_unique  # no file twice through a loop or a link
    assert not any(p.startswith(("dogs/back/", "dogs/again/", "dogs/outside-dir/", "elsewhere/")) for p in m.index)
    info = json.loads((out / "info.json").read_text())
    assert info["class_names"] == ["cats", "dogs", "na\\xefve"]  # the outside link is not a class
    return m


def test_image_corpus(corpus: Path, tmp_path: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    start = time.perf_counter()
    summary = prepare(
        DataConfig(source="folder", path=str(corpus), channels=3), tmp_path / "out", tmp_path / "m.json", False
    )
    assert time.perf_counter() - start < 10  # nothing waited on: no FIFO opened, no bomb decoded
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 300 * 1024  # the 20000x20000 bomb (1.2 GB of pixels) was refused from its header

    denied = _denied(corpus)  # root reads mode-000 files: then they are good files (the CLI test denies them)
    m = _check(tmp_path / "out", denied)
    kept, reasons = _expected(denied)
    assert (summary.files_seen, summary.kept, summary.skipped) == (len(kept) + len(reasons), len(kept), len(reasons))
    assert summary.skipped_by_reason["symlink outside data.path"] == 3
    assert summary.skipped_by_reason["not a regular file"] == 3
    assert pd.isna(m.loc["dogs/outside.png", "sha256"]) and pd.isna(m.loc["dogs/pipe.png", "bytes"])  # never read
    assert m.loc["cats/bomb.png", "bytes"] == len(_bomb_png(20000))
    assert (m.loc["dogs/caf\\xe9.png", "class_name"], m.loc["na\\xefve/white.png", "class_name"]) == (
        "dogs",
        "na\\xefve",
    )

    data = PreparedData.open(tmp_path / "out")

    def pixels(path: str) -> np.ndarray:
        images, _ = data.load(m.loc[path, "split"])
        return images[int(m.loc[path, "index"])].numpy().astype(int)

    assert np.allclose(pixels("cats/animated.gif").reshape(3, -1).mean(axis=1), RED)  # the first frame
    assert np.allclose(pixels("cats/one-pixel.png").reshape(3, -1).mean(axis=1), (9, 99, 199), atol=1)
    assert np.allclose(pixels("cats/gray16.png"), 100) and np.allclose(pixels("cats/palette-transparent.png"), 255)
    assert np.allclose(pixels("cats/cmyk.jpg").reshape(3, -1).mean(axis=1), (0, 255, 255), atol=3)
    as_stored = pixels("cats/exif-orientation-9.jpg")  # centre crop of the 40x20 as stored: red left, blue right
    assert np.allclose(as_stored[:, :, :12].reshape(3, -1).mean(axis=1), RED, atol=12)
    assert np.allclose(as_stored[:, :, -12:].reshape(3, -1).mean(axis=1), BLUE, atol=12)
    assert m.loc["cats/exif-garbage.jpg", "width"] == 20


def test_cli_on_the_corpus_exits_0_without_traceback(corpus: Path, tmp_path: Path) -> None:
    """The real CLI, in a process of its own. As root it runs without the capabilities that let root read
    anything (setpriv), so the mode-000 file and folder are really unreadable to it."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    prefix = []
    if ROOT_USER and shutil.which("setpriv") and subprocess.run([*DROP_READ_CAPS, "true"]).returncode == 0:
        prefix = DROP_READ_CAPS
    denied = _denied(corpus) or bool(prefix)
    # the CLI's main, then its own peak memory (VmHWM: this process image only; ru_maxrss would also count the
    # memory of the test process it was forked from, before exec)
    run_cli = (
        "import sys; from ganforge.cli import main; rc = main(sys.argv[1:]); "
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]; "
        "open('peak_kib', 'w').write(hwm); sys.exit(rc)"
    )
    cmd = [*prefix, sys.executable, "-c", run_cli, "prepare", "-q", "--set", "data.source=folder"]
    cmd += ["--set", f"data.path={corpus}", "--set", "data.channels=3"]
    with (tmp_path / "stdout").open("w+") as stdout, (tmp_path / "stderr").open("w+") as stderr:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=stdout, stderr=stderr)
        killer = threading.Timer(120, proc.kill)
        killer.start()
        _, status, _ = os.wait4(proc.pid, 0)
        killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Warning" not in err
    kept, reasons = _expected(denied)
    assert out.startswith(f"prepare: {len(kept)} kept, {len(reasons)} skipped (")
    _check(tmp_path / "data" / "prepared", denied)
    peak = int((tmp_path / "peak_kib").read_text())
    assert peak < 1_500_000  # KiB: ~0.7 GB is torch & co; the bomb's 1.2 GB of pixels were never allocated


def _write_mp4(path: Path, n: int) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(n):
            frame = np.full((32, 32, 3), 10 + 6 * (i % 40), np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def test_video_corpus(tmp_path: Path) -> None:
    root, outside = tmp_path / "videos", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    _write_mp4(root / "good.mp4", 8)
    good = (root / "good.mp4").read_bytes()
    payload = good.index(b"mdat") + 4
    damaged = bytearray(good)
    damaged[payload : payload + 600] = bytes((k * 91) & 0xFF for k in range(600))  # the frames' data
    (root / "broken.mp4").write_bytes(bytes(damaged))
    index = good.index(b"moov") + 4
    damaged = bytearray(good)
    damaged[index : index + 200] = bytes((k * 37) & 0xFF for k in range(200))  # the index (moov box)
    (root / "broken-index.mp4").write_bytes(bytes(damaged))
    _write_mp4(tmp_path / "long.mp4", 40)
    long = (tmp_path / "long.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(long[: len(long) // 3])
    (root / "empty.mp4").write_bytes(b"")
    (root / "page.mp4").write_text("<html><body>403 Forbidden</body></html>\n")
    os.mkfifo(root / "pipe.mp4")
    (tmp_path / "long.mp4").rename(outside / "long.mp4")
    (root / "outside.mp4").symlink_to(outside / "long.mp4")

    cfg = DataConfig(kind="video", source="video_folder", path=str(root), frames=4, resolution=16)
    summary = prepare(cfg, tmp_path / "out", tmp_path / "m.json", progress=False)
    m = _manifest(tmp_path / "out")
    assert set(m.index[m.status == "kept"]) == {"good.mp4"} and m.loc["good.mp4", "clips"] == 2
    assert summary.clips == 2 and summary.kept == 1 and summary.skipped == 7
    reasons = m[m.status == "skipped"].reason.to_dict()
    assert reasons.pop("broken.mp4").startswith("corrupt: frame 0: ")
    assert reasons == {
        "broken-index.mp4": "corrupt: no stream found",
        "empty.mp4": "zero-byte file",
        "outside.mp4": "symlink outside data.path",
        "page.mp4": "not a video (HTML)",
        "pipe.mp4": "not a regular file (FIFO)",
        "truncated.mp4": "truncated",
    }


@pytest.fixture
def release() -> threading.Event:
    """Set at the end of a test: lets its abandoned slow decoders return."""
    event = threading.Event()
    yield event
    event.set()


@pytest.mark.parametrize("thread", ["main", "worker"])
def test_slow_files_are_skipped_after_the_time_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release: threading.Event, thread: str
) -> None:
    """Two files in a row never finish decoding: each is given up after the limit, the others are kept; the
    same when prepare itself runs in a worker thread (as in a Prefect task), where signals cannot reach."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(6):
        _noise((16, 16), 10 + i).save(flat / f"{i}.png")
    real_open = prep._open

    def slow_open(item, raw, meta, resolution):  # a decoder that never finishes on 1.png and 2.png
        if item.path in ("1.png", "2.png"):
            release.wait(30)
        return real_open(item, raw, meta, resolution)

    monkeypatch.setattr(prep, "_open", slow_open)
    start = time.perf_counter()
    cfg = DataConfig(source="folder", path=str(flat), file_timeout_s=0.5)
    args = (cfg, tmp_path / "out", tmp_path / "m.json", False)
    if thread == "main":
        summary = prepare(*args)
    else:
        with ThreadPoolExecutor(1) as pool:
            summary = pool.submit(prepare, *args).result(timeout=30)
    assert time.perf_counter() - start < 6
    m = _manifest(tmp_path / "out")
    assert set(m.index[m.status == "kept"]) == {"0.png", "3.png", "4.png", "5.png"}
    assert m[m.status == "skipped"].reason.to_dict() == {
        "1.png": "took longer than 0.5 s",
        "2.png": "took longer than 0.5 s",
    }
    assert summary.skipped_by_reason == {"timeout": 2}


def test_a_file_that_crashes_its_decoder_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that segfaults on one file (a libjpeg bug, a hostile file) takes only that file with it: its
    worker process dies, the row says so, a new process decodes the rest."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(6):
        _noise((16, 16), 30 + i).save(flat / f"{i}.png")
    real_open = prep._open

    def crashing_open(item, raw, meta, resolution):
        if item.path == "2.png":
            os.kill(os.getpid(), 11)
        return real_open(item, raw, meta, resolution)

    monkeypatch.setattr(prep, "_open", crashing_open)
    summary = prepare(DataConfig(source="folder", path=str(flat), workers=2), tmp_path / "out", tmp_path / "m", False)
    m = _manifest(tmp_path / "out")
    assert set(m.index[m.status == "kept"]) == {"0.png", "1.png", "3.png", "4.png", "5.png"}
    assert m.loc["2.png", "reason"] == "corrupt: the decoder crashed (SIGSEGV)"
    assert summary.skipped_by_reason == {"corrupt": 1}


def test_the_output_does_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    """Files are decoded in parallel and written in order: 1 and 3 workers give the same shards and manifest,
    duplicates, a broken file and all."""
    root = tmp_path / "classes"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(9):
            _noise((20 + i, 18), 100 * ord(c) + i).save(root / c / f"{i}.png")
    shutil.copy(root / "a" / "3.png", root / "b" / "copy.png")
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    outs = []
    for n in (1, 3):
        out = tmp_path / f"out{n}"
        prepare(DataConfig(source="folder", path=str(root), channels=3, workers=n), out, tmp_path / "m", False)
        outs.append(out)
    pd.testing.assert_frame_equal(_manifest(outs[0]), _manifest(outs[1]))
    one, three = (PreparedData.open(o) for o in outs)
    for split in ("train", "test"):
        assert np.array_equal(one.load(split)[0].numpy(), three.load(split)[0].numpy())
    assert _manifest(outs[0]).status.value_counts().to_dict() == {"kept": 18, "skipped": 2}


def test_slow_video_is_skipped_after_the_time_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release: threading.Event
) -> None:
    root = tmp_path / "videos"
    root.mkdir()
    _write_mp4(root / "quick.mp4", 4)
    _write_mp4(root / "slow.mp4", 5)
    real_decode = clips._decode

    def slow_decode(file, *args):
        if file.name == "slow.mp4":
            release.wait(30)
        return real_decode(file, *args)

    monkeypatch.setattr(clips, "_decode", slow_decode)
    cfg = DataConfig(kind="video", source="video_folder", path=str(root), frames=4, file_timeout_s=0.5)
    start = time.perf_counter()
    prepare(cfg, tmp_path / "out", tmp_path / "m.json", progress=False)
    assert time.perf_counter() - start < 6
    m = _manifest(tmp_path / "out")
    assert m.status.to_dict() == {"quick.mp4": "kept", "slow.mp4": "skipped"}
    assert m.loc["slow.mp4", "reason"] == "took longer than 0.5 s" and m.loc["slow.mp4", "clips"] == 0


def test_copies_in_flight_are_duplicates(tmp_path: Path) -> None:
    """Files are read a few ahead: a copy read before its first is recorded is still a duplicate, same row."""
    flat = tmp_path / "flat"
    flat.mkdir()
    data = _encoded(_noise((16, 16), 20), "PNG")
    for name in ("a.png", "b.png", "c.png"):
        (flat / name).write_bytes(data)
    summary = prepare(DataConfig(source="folder", path=str(flat)), tmp_path / "out", tmp_path / "m.json", False)
    assert (summary.kept, summary.duplicates) == (1, 2)
    m = _manifest(tmp_path / "out")
    assert m.status.to_dict() == {"a.png": "kept", "b.png": "skipped", "c.png": "skipped"}
    assert m.reason.dropna().to_dict() == {"b.png": "duplicate of a.png", "c.png": "duplicate of a.png"}
    assert m.loc[["b.png", "c.png"], ["width", "mode", "split"]].isna().all().all()  # as when found at once
    assert (m.loc[["b.png", "c.png"], "index"] == -1).all()
