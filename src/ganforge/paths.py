"""Where each stage reads and writes, relative to the project root. Files are the stage contract."""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    root: Path = Path(".")
    library_dir: Path = Path("library")  # `library.dir`, relative to root (or absolute)

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def checkpoint(self) -> Path:
        return self.models / "checkpoint.pt"

    @property
    def classifier(self) -> Path:
        return self.models / "classifier.pt"

    @property
    def clip_classifier(self) -> Path:
        """Video data: the in-domain 3D-conv clip classifier (clip features, class accuracy of clips)."""
        return self.models / "clip_classifier.pt"

    @property
    def cache(self) -> Path:
        """Derived data worth keeping between runs (reference statistics); safe to delete."""
        return self.root / ".ganforge-cache"

    @property
    def mlflow_run(self) -> Path:
        return self.models / "mlflow_run.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def samples_dir(self) -> Path:
        return self.plots / "samples"

    @property
    def samples_latest(self) -> Path:
        return self.plots / "samples.png"

    @property
    def train_losses(self) -> Path:
        return self.plots / "train_losses.csv"

    @property
    def library(self) -> Path:
        """The asset library: images/, videos/, clips/, catalog.parquet, index.html (`library.dir`)."""
        return self.root / self.library_dir

    @property
    def catalog(self) -> Path:
        return self.library / "catalog.parquet"

    @property
    def gallery(self) -> Path:
        return self.library / "index.html"


_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_path(target: Path, sweep: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces `target` in one rename.

    Temporary files a killed writer of the same target left behind (`.<name>.*.tmp`) are removed first: one
    target has one writer at a time (stages hold their outputs; the library holds its lock). That looks through
    the folder, so writers of many files into one folder (the library's assets and thumbnails) pass
    `sweep=False` and remove what a kill left behind once, before they start (`catalog.reconcile`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if sweep:
        for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result should be an ordinary file
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
