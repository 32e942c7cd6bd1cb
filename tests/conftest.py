import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits16(tmp_path_factory):
    """The built-in digits prepared at 16x16, shared read-only by the training tests."""
    from ganforge.config import DataConfig
    from ganforge.data.prepare import prepare

    root = tmp_path_factory.mktemp("digits16")
    out = root / "data" / "prepared"
    prepare(DataConfig(source="digits", resolution=16), out, root / "metrics" / "prepare.json", progress=False)
    return out


# a generator small enough to train in seconds, without MLflow
TINY_MODEL = [
    "train.g_width=8",
    "train.d_width=8",
    "train.z_dim=8",
    "train.batch_size=16",
    "train.device=cpu",
    "tracking.enabled=false",
]
TINY_TRAIN = [*TINY_MODEL, "train.steps=30", "features.epochs=2"]


@pytest.fixture(scope="session")
def tiny_project(digits16, tmp_path_factory):
    """A project root with digits at 16x16, a 2-epoch classifier and a 30-step tiny generator (no MLflow).
    Tests copy what they need out of it (`copy_project`), never write into it."""
    import shutil

    from ganforge.config import load_config
    from ganforge.metrics.classifier import train_classifier
    from ganforge.paths import Paths
    from ganforge.training.loop import train

    paths = Paths(tmp_path_factory.mktemp("tiny-project"))
    shutil.copytree(digits16, paths.prepared)
    cfg = load_config(ROOT / "params.yaml", TINY_TRAIN)
    train_classifier(cfg.features, paths, progress=False)
    train(cfg, paths, progress=False)
    return paths


def copy_project(src, dest):
    """A writable copy of a tiny project's inputs (prepared data, classifier, checkpoint)."""
    import shutil

    from ganforge.paths import Paths

    paths = Paths(dest)
    shutil.copytree(src.prepared, paths.prepared)
    paths.models.mkdir(parents=True)
    for f in (src.classifier, src.checkpoint):
        shutil.copy2(f, paths.models / f.name)
    return paths
