"""Where images and clips come from. Each source is one function `(cfg) -> Source`, registered in `SOURCES`.

A source only lists samples (and reads their bytes); decoding, normalising and splitting happen in
`prepare`, the same way for every source. Items come out in sorted `path` order, which decides which
copy of a duplicate is kept. Image sources: digits, folder, torchvision; clip sources (`data.kind:
video`): moving_digits (generated, see `ganforge.data.clips`), video_folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ganforge.config import DataConfig
from ganforge.errors import GanforgeError

OUTSIDE_CLASS = "outside any class folder"
TORCHVISION_ROOT = "data/raw/torchvision"
VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".avi", ".mov", ".mkv", ".gif"})
UNSUPPORTED_EXTENSION = "unsupported extension"


@dataclass(frozen=True)
class Item:
    """One sample: a file on disk (`file`), an in-memory uint8 array [H,W] / [H,W,3] (`array`), or a clip
    generated on demand (`render` -> uint8 [T,H,W]; `digits`: the digits it shows, e.g. "3,7")."""

    path: str
    label: int = -1
    class_name: str | None = None
    split: str | None = None  # fixed by the source (torchvision); None: from the content hash
    skip: str | None = None  # a reason the source already knows (e.g. outside any class folder)
    file: Path | None = None
    array: np.ndarray | None = None
    render: Callable[[], np.ndarray] | None = None
    digits: str | None = None

    def read(self) -> bytes:
        """The bytes that are hashed: the file's content, or the raw sample bytes."""
        if self.file is not None:
            return self.file.read_bytes()
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


def digits(cfg: DataConfig) -> Source:
    """The 1,797 8x8 handwritten digits shipped inside scikit-learn (no download)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.rint(data.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    names = [str(n) for n in data.target_names]
    items = _arrays("sklearn-digits", images, data.target, names, None)
    return Source("digits", names, items)


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _walk(top: Path) -> list[Path]:
    """Every non-hidden file under `top`, recursively; hidden directories are not entered, linked ones once."""
    found: list[Path] = []
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:  # a link cycle or a second link to the same folder
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames[:] = [d for d in dirnames if _visible(d)]
        found.extend(Path(dirpath, f) for f in filenames if _visible(f))
    return found


def _class_folder(cfg: DataConfig, skip: Callable[[Path], str | None]) -> tuple[list[str], list[Item]]:
    """`data.path`: flat (unlabelled) or one sub-folder per class (labels from sorted names).

    `skip(file)` gives a reason to report a file instead of using it, or None."""
    root = Path(cfg.path or "")
    if not root.exists():
        raise GanforgeError(f"data.path {root}: no such directory")
    if not root.is_dir():
        raise GanforgeError(f"data.path {root}: not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p.name))
    index = {name: i for i, name in enumerate(classes)}
    items: list[Item] = []
    for file in _walk(root):
        rel = file.relative_to(root).as_posix()
        top = rel.split("/", 1)[0]
        if not classes:
            items.append(Item(path=rel, skip=skip(file), file=file))
        elif top in index and "/" in rel:
            items.append(Item(path=rel, label=index[top], class_name=top, skip=skip(file), file=file))
        else:
            items.append(Item(path=rel, skip=OUTSIDE_CLASS, file=file))
    items.sort(key=lambda it: it.path)
    return classes, items


def folder(cfg: DataConfig) -> Source:
    """A directory of images: flat (unlabelled) or one sub-folder per class (labels from sorted names)."""
    classes, items = _class_folder(cfg, lambda _: None)
    return Source(f"folder:{cfg.path}", classes, items)


def _video_extension(file: Path) -> str | None:
    return None if file.suffix.lower() in VIDEO_EXTENSIONS else UNSUPPORTED_EXTENSION


def video_folder(cfg: DataConfig) -> Source:
    """A directory of videos (.mp4 .webm .avi .mov .mkv .gif), laid out like `folder`; other files are reported."""
    classes, items = _class_folder(cfg, _video_extension)
    return Source(f"video_folder:{cfg.path}", classes, items)


def moving_digits(cfg: DataConfig) -> Source:
    """Moving MNIST (Srivastava et al. 2015) from the built-in digits: `data.num_clips` clips, fixed by `data.seed`."""
    from ganforge.data.clips import MovingDigits  # clips imports prepare, which imports this module

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


SOURCES: dict[str, Callable[[DataConfig], Source]] = {
    "digits": digits,
    "folder": folder,
    "torchvision": torchvision,
    "moving_digits": moving_digits,
    "video_folder": video_folder,
}


def open_source(cfg: DataConfig) -> Source:
    """The source named by `data.source`."""
    return SOURCES[cfg.source](cfg)
