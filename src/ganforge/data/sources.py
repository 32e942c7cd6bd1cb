"""Where images and clips come from. Each source is one function `(cfg) -> Source`, registered in `SOURCES`.

A source only lists samples (and reads their bytes); decoding, normalising and splitting happen in
`prepare`, the same way for every source. Items come out in sorted `path` order, which decides which
copy of a duplicate is kept. Image sources: digits, stacked_digits (three digits per image, one per RGB
channel), folder, torchvision; clip sources (`data.kind: video`): moving_digits (generated, see
`ganforge.data.moving_digits`), video_folder.

Folder sources list every non-hidden entry under `data.path` without opening anything. Only regular files
are ever opened, never a FIFO, socket or device (those are listed with their reason). Symbolic links are
resolved: one that is broken, loops, or leads out of `data.path` is listed with its reason and never
followed; links to folders inside `data.path` are followed after the real tree, to folders not listed yet.
Names that are not valid UTF-8 are shown with `\\xNN` for their undecodable bytes (`display`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ganforge.config import DataConfig
from ganforge.data.digits import load_digits_arrays
from ganforge.data.moving_digits import MovingDigits
from ganforge.errors import GanforgeError

OUTSIDE_CLASS = "outside any class folder"
TORCHVISION_ROOT = "data/raw/torchvision"
OUTSIDE_ROOT = "symlink outside data.path"
SYMLINK_LOOP = "symlink loop"
BROKEN_LINK = "broken symlink"
LISTED_TWICE = "symlink to a folder already listed"
NOT_REGULAR = "not a regular file"
UNREADABLE = "unreadable"


def display(text: str) -> str:
    """`text` as valid UTF-8: the bytes of a file name that are not UTF-8 (which Python keeps as surrogate
    escapes) become `\\xNN`, so the manifest (Parquet), info.json and messages can hold every name."""
    if text.isascii():
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name decodes to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading; OSError when it is not a regular file. Never blocks: the file is opened
    non-blocking (a FIFO without a writer would wait forever) and checked before anything is read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, NOT_REGULAR)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True)
class Item:
    """One sample: a file on disk (`file`), an in-memory uint8 array [H,W] / [H,W,3] (`array`), or a clip
    generated on demand (`render` -> uint8 [T,H,W]; `digits`: the digits it shows, e.g. "3,7"). An entry
    with none of them is listed only to be reported (`skip`), and is never opened."""

    path: str
    label: int = -1
    class_name: str | None = None
    split: str | None = None  # fixed by the source (torchvision); None: from the content hash
    skip: str | None = None  # a reason the source already knows (e.g. outside any class folder): counted by it
    reason: str | None = None  # the manifest's reason for `skip` where it says more (e.g. the OS error)
    file: Path | None = None
    array: np.ndarray | None = None
    render: Callable[[], np.ndarray] | None = None
    digits: str | None = None

    @property
    def has_data(self) -> bool:
        return self.file is not None or self.array is not None or self.render is not None

    def read(self) -> bytes:
        """The bytes that are hashed: the file's content, or the raw sample bytes."""
        if self.file is not None:
            with open_regular(self.file) as f:
                return f.read()
        array = self.render() if self.render is not None else self.array
        assert array is not None
        return np.ascontiguousarray(array).tobytes()


@dataclass(frozen=True)
class Source:
    """What a source function returns: a description, the class names and the items (sorted by path)."""

    name: str
    class_names: list[str]
    items: list[Item]


def _arrays(prefix: str, images: np.ndarray, labels: np.ndarray, names: list[str], split: str | None) -> list[Item]:
    width = max(5, len(str(len(images) - 1)))
    return [
        Item(path=f"{prefix}/{i:0{width}d}", label=int(y), class_name=names[int(y)], split=split, array=x)
        for i, (x, y) in enumerate(zip(images, labels, strict=True))
    ]


def hash_split(sha256: str, test_fraction: float) -> str:
    """Deterministic split from the content hash: stable when the dataset grows."""
    return "test" if int(sha256[:16], 16) / 2**64 < test_fraction else "train"


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The 1,797 digits as uint8 [N, 8, 8] (0..255), their labels and the class names."""
    images, labels = load_digits_arrays()
    images = np.rint(images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return images, labels, [str(n) for n in range(10)]


def digits(cfg: DataConfig) -> Source:
    """The 1,797 8x8 handwritten digits shipped inside scikit-learn (no download)."""
    images, labels, names = _sklearn_digits()
    return Source("digits", names, _arrays("sklearn-digits", images, labels, names, None))


def stacked_digits(cfg: DataConfig) -> Source:
    """StackedMNIST (Metz et al. 2017) from the built-in digits: `data.num_images` RGB images, fixed by `data.seed`.

    Each image holds three digits, one per channel (red, green, blue), each drawn independently: a class uniformly
    from the ten, then one of that class's images uniformly. Its label is the mode, 100*red + 10*green + blue
    (1,000 classes, named "000".."999"). The split is fixed here, never by the image's hash: the
    round(num_images * test_fraction) test images are built only from the digits that the `digits` source puts in
    its test split (same content-hash rule, same `data.test_fraction`), the train images only from its train
    digits, so a digit classifier trained on the `digits` train split has never seen a test image's digits. Each
    channel is that 8x8 digit resized by `prepare` exactly as the `digits` source's image is. Image i of a split
    depends only on (seed, split, i) and the digits split: more images add to the set and change none."""
    images, labels, _ = _sklearn_digits()
    splits = np.array([hash_split(hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest(), cfg.test_fraction)
                       for x in images])  # fmt: skip
    n_test = round(cfg.num_images * cfg.test_fraction)
    width = max(5, len(str(cfg.num_images - 1)))
    items: list[Item] = []
    for code, (split, count) in enumerate((("test", n_test), ("train", cfg.num_images - n_test))):
        pools = [np.flatnonzero((labels == d) & (splits == split)) for d in range(10)]
        if count and any(len(p) == 0 for p in pools):
            raise GanforgeError(
                f"data.test_fraction {cfg.test_fraction}: the digits' {split} split misses a class; "
                "stacked_digits needs every digit in both splits (use a test_fraction of 0.05..0.5, or 0 for no test)"
            )
        u = np.random.default_rng([cfg.seed, code]).random((count, 2, 3))  # per image: classes, then picks
        classes = (u[:, 0] * 10).astype(np.int64)
        for i in range(count):
            which = [pools[d][int(v * len(pools[d]))] for d, v in zip(classes[i], u[i, 1], strict=True)]
            mode = int(classes[i] @ np.array([100, 10, 1]))
            array = np.stack([images[w] for w in which], axis=-1)  # [8, 8, 3]: red, green, blue
            items.append(Item(f"stacked-digits/{split}/{i:0{width}d}", mode, f"{mode:03d}", split, array=array))
    return Source("stacked_digits", [f"{m:03d}" for m in range(1000)], items)


def _visible(name: str) -> bool:
    return not name.startswith(".")


@dataclass(frozen=True)
class _Entry:
    """One entry under `data.path`: a regular file (`skip` None), or something listed only to report it."""

    path: Path  # as listed, through any followed folder link
    rel: str  # relative to data.path, "/"-separated, valid UTF-8 (`display`)
    skip: str | None = None
    reason: str | None = None


def _special(mode: int) -> str:
    tests = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device"))
    return f"{NOT_REGULAR} ({next((name for test, name in tests if test(mode)), 'special file')})"


def _inside(real: str, real_folder: str) -> bool:
    return real == real_folder or real.startswith(real_folder.rstrip(os.sep) + os.sep)


def _walk(root: Path) -> tuple[list[str], list[_Entry]]:
    """The folders walked at the top of `root` (the class folders, sorted), and every non-hidden entry under it.

    Hidden names (a leading dot) are neither listed nor entered. Nothing is opened: entries that are not
    regular files, and links that are broken, loop or lead out of `root`, are listed with their reason. Links
    to folders inside `root` are followed once the real tree is listed, and only to a folder not listed yet,
    so every real folder is listed once (deterministically) whatever the links."""
    real_root = os.path.realpath(root)
    tops: list[str] = []
    found: list[_Entry] = []
    visited = {real_root}
    folders: deque[tuple[Path, str]] = deque([(root, real_root)])  # (as listed, real path)
    links: deque[tuple[Path, str, str]] = deque()  # (link, its real target, the real folder holding it)

    def entry(path: Path, skip: str | None = None, reason: str | None = None) -> _Entry:
        return _Entry(path, display(path.relative_to(root).as_posix()), skip, reason)

    while folders or links:
        if folders:
            folder, real = folders.popleft()
        else:
            folder, real, parent = links.popleft()
            if real in visited:
                found.append(entry(folder, SYMLINK_LOOP if _inside(parent, real) else LISTED_TWICE))
                continue
            visited.add(real)
            if folder.parent == root:
                tops.append(display(folder.name))
        try:
            with os.scandir(folder) as it:
                children = sorted((e for e in it if _visible(e.name)), key=lambda e: e.name)
        except OSError as exc:
            found.append(entry(folder, UNREADABLE, f"unreadable folder: {exc.strerror or exc}"))
            continue
        for child in children:
            path = Path(folder, child.name)
            try:
                if child.is_symlink():
                    try:
                        mode = os.stat(path).st_mode
                    except OSError as exc:
                        if exc.errno == errno.ELOOP:
                            found.append(entry(path, SYMLINK_LOOP))
                        elif exc.errno in (errno.ENOENT, errno.ENOTDIR):
                            found.append(entry(path, BROKEN_LINK))
                        else:
                            found.append(entry(path, UNREADABLE, f"unreadable: {exc.strerror or exc}"))
                        continue
                    target = os.path.realpath(path)
                    if not _inside(target, real_root):
                        found.append(entry(path, OUTSIDE_ROOT))
                    elif stat.S_ISDIR(mode):
                        links.append((path, target, real))
                    else:
                        found.append(entry(path) if stat.S_ISREG(mode) else entry(path, NOT_REGULAR, _special(mode)))
                    continue
                mode = child.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    sub = os.path.join(real, child.name)
                    visited.add(sub)
                    folders.append((path, sub))
                    if folder == root:
                        tops.append(display(child.name))
                else:
                    found.append(entry(path) if stat.S_ISREG(mode) else entry(path, NOT_REGULAR, _special(mode)))
            except OSError as exc:  # vanished while listed, or not allowed to look
                found.append(entry(path, UNREADABLE, f"unreadable: {exc.strerror or exc}"))
    return sorted(tops), found


def _class_folder(cfg: DataConfig, skip: Callable[[Path], str | None]) -> tuple[list[str], list[Item]]:
    """`data.path`: flat (unlabelled) or one sub-folder per class (labels from sorted names).

    `skip(file)` gives a reason to report a readable file instead of using it, or None."""
    root = Path(cfg.path or "")
    if not root.exists():
        raise GanforgeError(f"data.path {root}: no such directory")
    if not root.is_dir():
        raise GanforgeError(f"data.path {root}: not a directory")
    classes, entries = _walk(root)
    index = {name: i for i, name in enumerate(classes)}
    items: list[Item] = []
    for e in entries:
        top = e.rel.split("/", 1)[0]
        label, name = (index[top], top) if top in index and "/" in e.rel else (-1, None)
        if e.skip:  # listed only to be reported: never opened
            items.append(Item(path=e.rel, label=label, class_name=name, skip=e.skip, reason=e.reason))
        elif classes and name is None:
            items.append(Item(path=e.rel, skip=OUTSIDE_CLASS, file=e.path))
        else:
            items.append(Item(path=e.rel, label=label, class_name=name, skip=skip(e.path), file=e.path))
    items.sort(key=lambda it: it.path)
    return classes, items


def folder(cfg: DataConfig) -> Source:
    """A directory of images: flat (unlabelled) or one sub-folder per class (labels from sorted names)."""
    classes, items = _class_folder(cfg, lambda _: None)
    return Source(f"folder:{cfg.path}", classes, items)


def video_folder(cfg: DataConfig) -> Source:
    """A directory of videos, laid out like `folder`. Whether a file is a video is for its content to say, not its
    name: every file goes to PyAV (any container FFmpeg decodes: MP4, MOV, MKV, WebM, AVI, MPEG, Ogg, GIF, ...),
    and what it cannot decode as a moving picture is reported with the reason."""
    classes, items = _class_folder(cfg, lambda _: None)
    return Source(f"video_folder:{cfg.path}", classes, items)


def moving_digits(cfg: DataConfig) -> Source:
    """Moving MNIST (Srivastava et al. 2015) from the built-in digits: `data.num_clips` clips, fixed by `data.seed`."""
    maker = MovingDigits(cfg.resolution, cfg.frames, cfg.max_digits, cfg.seed, cfg.resize_filter)
    width = max(5, len(str(cfg.num_clips - 1)))
    items = []
    for i in range(cfg.num_clips):
        clip = maker.spec(i)
        label = clip.labels[0]
        digits = ",".join(str(d) for d in clip.labels)
        path = f"moving-digits/{i:0{width}d}"
        render = partial(maker.render, clip)
        items.append(Item(path=path, label=label, class_name=str(label), render=render, digits=digits))
    return Source("moving_digits", [str(n) for n in range(10)], items)


def _torchvision_missing(cls: type, dataset: str, root: Path, download: bool, exc: Exception) -> GanforgeError:
    """The one-line error naming the folder (and files) the user should provide."""
    if hasattr(cls, "resources"):  # MNIST-like: uncompressed idx files in <root>/<name>/raw
        where = root / dataset / "raw"
        files = ", ".join(Path(url).name.removesuffix(".gz") for url, _ in cls.resources)
    else:  # CIFAR10: the extracted python batches
        where, files = root / cls.base_folder, "data_batch_1..5, test_batch, batches.meta"
    why = f"download failed ({str(exc).splitlines()[0][:100]})" if download else "dataset files missing or unreadable"
    return GanforgeError(
        f"torchvision {dataset}: {why}; place the files ({files}) in {where}, "
        "or set data.download=true where there is network access"
    )


def torchvision(cfg: DataConfig) -> Source:
    """MNIST / FashionMNIST / CIFAR10 from torchvision.datasets, with their own train/test split."""
    import torchvision.datasets as tvd

    assert cfg.dataset is not None
    root = Path(cfg.path or TORCHVISION_ROOT)
    cls = getattr(tvd, cfg.dataset)
    splits = {}
    for split in ("test", "train"):  # sorted path order: MNIST/test/... before MNIST/train/...
        try:
            splits[split] = cls(root=str(root), train=split == "train", download=cfg.download)
        except Exception as exc:  # RuntimeError when absent or corrupt, URLError/OSError when a download fails
            raise _torchvision_missing(cls, cfg.dataset, root, cfg.download, exc) from None
    names = [str(c) for c in splits["train"].classes]
    items: list[Item] = []
    for split, ds in splits.items():
        images = np.asarray(ds.data, dtype=np.uint8)  # MNIST: [N,28,28] tensor; CIFAR10: [N,32,32,3]
        labels = np.asarray(ds.targets, dtype=np.int64)
        items.extend(_arrays(f"{cfg.dataset}/{split}", images, labels, names, split))
    return Source(f"torchvision:{cfg.dataset}", names, items)


# digit_styles: the fonts inside matplotlib's wheel (DejaVu and STIX, both freely licensed), by style
_FONT_STYLES = {
    "sans": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf"),
    "serif": ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf"),
    "mono": ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf"),
}
_FONT_STYLES["typeset"] = tuple(f for fonts in _FONT_STYLES.values() for f in fonts)
DIGIT_STYLES = ("handwritten", *_FONT_STYLES)


def _font_files(style: str) -> list[Path]:
    import matplotlib

    root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    files = [root / name for name in _FONT_STYLES[style]]
    if missing := [f.name for f in files if not f.is_file()]:
        raise GanforgeError(f"digit_styles: matplotlib's fonts are missing ({', '.join(missing)} in {root})")
    return files


def _typeset_digit(digit: int, fonts: list[Any], rng: np.random.Generator, side: int) -> np.ndarray:
    """One digit as uint8 [side, side], light ink on black like the handwritten ones: a random font of the
    style, size, position, stroke, slant and small rotation."""
    from PIL import Image, ImageDraw

    big = 2 * side  # drawn at twice the size, then reduced: smooth edges
    font = fonts[int(rng.integers(len(fonts)))][int(rng.integers(3))]  # one of three sizes of a random face
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    stroke = int(rng.integers(0, 2)) * max(1, big // 32)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font, stroke_width=stroke)
    x = (big - (right - left)) / 2 - left + rng.uniform(-0.05, 0.05) * big
    y = (big - (bottom - top)) / 2 - top + rng.uniform(-0.05, 0.05) * big
    draw.text((x, y), str(digit), fill=int(rng.integers(200, 256)), font=font, stroke_width=stroke,
              stroke_fill=255)  # fmt: skip
    slant = rng.uniform(-0.3, 0.3)
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, (1, slant, -slant * big / 2, 0, 1, 0),
                              resample=Image.Resampling.BILINEAR)  # fmt: skip
    canvas = canvas.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BILINEAR)
    return np.asarray(canvas.resize((side, side), Image.Resampling.LANCZOS), dtype=np.uint8)


def digit_styles(cfg: DataConfig) -> Source:
    """Digits in several styles, one class per (style, digit), named `<style>_<digit>` ("handwritten_3",
    "serif_7"): the domains of image translation (`translate.domains: [handwritten_*, typeset_*]`), the digit
    being what a translation must keep.

    `handwritten` is the 1,797 built-in digits; each font style (`sans`, `serif`, `mono`, or `typeset`: any of
    them) is `data.num_images` digits rendered from the DejaVu and STIX fonts inside matplotlib's wheel, with
    random font, size, position, stroke, slant and rotation, fixed by `data.seed` (image i of a style depends only
    on (seed, style, i)). Splits come from the content hash, as for any image."""
    from PIL import ImageFont

    items: list[Item] = []
    names = [f"{style}_{d}" for style in cfg.styles for d in range(10)]
    side = max(32, cfg.resolution)
    for k, style in enumerate(cfg.styles):
        if style == "handwritten":
            images, labels, _ = _sklearn_digits()
            for i, (x, y) in enumerate(zip(images, labels, strict=True)):
                name = f"{style}_{int(y)}"
                items.append(Item(f"handwritten/{i:05d}", 10 * k + int(y), name, array=x))
            continue
        sizes = (round(side * 1.9), round(side * 2.15), round(side * 2.4))  # on the 2x canvas: 0.7-0.9 high
        fonts = [[ImageFont.truetype(str(f), size) for size in sizes] for f in _font_files(style)]
        width = max(5, len(str(cfg.num_images - 1)))
        for i in range(cfg.num_images):
            rng = np.random.default_rng([cfg.seed, k, i])
            digit = int(rng.integers(10))
            array = _typeset_digit(digit, fonts, rng, side)
            items.append(Item(f"{style}/{i:0{width}d}", 10 * k + digit, f"{style}_{digit}", array=array))
    return Source("digit_styles", names, items)


SOURCES: dict[str, Callable[[DataConfig], Source]] = {
    "digits": digits,
    "stacked_digits": stacked_digits,
    "digit_styles": digit_styles,
    "folder": folder,
    "torchvision": torchvision,
    "moving_digits": moving_digits,
    "video_folder": video_folder,
}


def open_source(cfg: DataConfig) -> Source:
    """The source named by `data.source`."""
    return SOURCES[cfg.source](cfg)
