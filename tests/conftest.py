import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

# Two pytest-xdist workers on two cores: each worker, and every process it starts (dvc, ganforge, prefect), gets
# its share of the cores. Two processes with two OpenMP threads each on two cores run several times slower than two
# with one (the threads spin-wait on each other): that alone took the suite from ~6 to ~15 minutes.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(_share))

ROOT = Path(__file__).resolve().parents[1]


def make_spec(family="dcgan", resolution=16, channels=1, num_classes=10, *, frames=0, class_head=False, **keys):
    """A ModelSpec of `family` with these keys of its config, the others at the values these tests were written
    against (those of the flat ModelSpec that came before the family configs: d_norm batch, pack 1)."""
    from ganforge.models import FAMILIES, ModelSpec

    config = FAMILIES[family].config(**{"d_norm": "batch", "pack": 1, **keys})
    return ModelSpec.for_data(
        config, resolution=resolution, channels=channels, num_classes=num_classes, frames=frames, class_head=class_head
    )


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
    "train.model.g_width=8",
    "train.model.d_width=8",
    "train.model.z_dim=8",
    "train.batch_size=16",
    "train.device=cpu",
    "tracking.enabled=false",
    "evaluate.cas=false",  # one classifier training per evaluation: test_evaluate and test_cas cover CAS
]
TINY_TRAIN = [*TINY_MODEL, "train.steps=30", "features.epochs=2"]
NO_CLASS_GATE = "registry.gate.min={precision: 0.6, recall: 0.4}"  # unconditional models report no class accuracy


@pytest.fixture(scope="session")
def tiny_project(digits16, tmp_path_factory):
    """A project root with digits at 16x16, a 2-epoch classifier and a 30-step tiny generator (no MLflow).
    Tests copy what they need out of it (`copy_project`), never write into it."""
    import shutil

    from ganforge.config import load_config
    from ganforge.features import train_classifier
    from ganforge.paths import Paths
    from ganforge.training.loop import train

    paths = Paths(tmp_path_factory.mktemp("tiny-project"))
    shutil.copytree(digits16, paths.prepared)
    cfg = load_config(ROOT / "params.yaml", TINY_TRAIN)
    train_classifier(cfg.features, paths, progress=False)
    train(cfg, paths, progress=False)
    return paths


# video: moving digits, 4 frames of 16x16, and a MoCoGAN small enough to train in seconds
TINY_VIDEO_DATA = {
    "kind": "video",
    "source": "moving_digits",
    "resolution": 16,
    "frames": 4,
    "num_clips": 120,
    "max_digits": 1,
    "test_fraction": 0.25,
}
TINY_VIDEO = [
    *(f"data.{k}={v}" for k, v in TINY_VIDEO_DATA.items()),
    "train.model=mocogan",
    "train.model.g_width=8",
    "train.model.d_width=8",
    "train.model.z_dim=8",
    "train.model.motion_dim=4",
    "train.batch_size=8",
    "train.steps=6",
    "train.log_every=2",
    "train.sample_every=3",
    "train.checkpoint_every=3",
    "train.device=cpu",
    "tracking.enabled=false",
    "features.epochs=2",
    "features.width=8",
]


@pytest.fixture(scope="session")
def tiny_video_project(tmp_path_factory):
    """A project root with tiny moving-digits clips (120 clips, 4x16x16) and a 6-step MoCoGAN (no MLflow), plus
    the features stage's classifiers. Tests copy what they need out of it, never write into it."""
    from ganforge.config import load_config
    from ganforge.data.prepare import prepare
    from ganforge.features import train_classifier
    from ganforge.paths import Paths
    from ganforge.training.loop import train

    paths = Paths(tmp_path_factory.mktemp("tiny-video-project"))
    cfg = load_config(ROOT / "params.yaml", TINY_VIDEO)
    prepare(cfg.data, paths.prepared, paths.metrics / "prepare.json", progress=False)
    train(cfg, paths, progress=False)
    train_classifier(cfg.features, paths, progress=False)
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
    if src.clip_classifier.exists():  # video projects
        shutil.copy2(src.clip_classifier, paths.clip_classifier)
    return paths


TINY = {
    "data": {"resolution": 16},
    "train": {
        "steps": 6,
        "model": {"family": "dcgan", "g_width": 8, "d_width": 8, "z_dim": 8},
        "batch_size": 16,
        "log_every": 2,
        "sample_every": 3,
        "checkpoint_every": 3,
    },
    "features": {"epochs": 2, "width": 8},
    "evaluate": {"n_fake": 100, "kid_subsets": 5, "kid_subset_size": 50, "cas": False},
    # a 6-step generator fails every bound, and a version that fails one never becomes champion: no bounds here
    # (tests/test_registry.py covers them), so that the first version is champion and the library stage can run
    "registry": {"model_name": "tiny-digits", "gate": {"fid_margin": 0.0, "min": {}, "max": {}}},
    # a 6-step generator draws near-identical blobs: dedupe off, or the library would keep one image
    "library": {
        "images": 3,
        "videos": 1,
        "morphs": 1,
        "keyframes": 2,
        "frames_per_key": 4,
        "video_size": 32,
        "dedupe_hamming": -1,
    },
}


def run(cmd, cwd, env, timeout=300):
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def make_tiny_repo(dest):
    """A git repo holding exactly what a fresh clone of this checkout holds, with tiny params (TINY).
    Returns (dest, env): env has this interpreter first on PATH and no MLFLOW_/DVC_ variables."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for stale in ("data/prepared", "models", "metrics", "plots", "mlflow.db", "mlartifacts", "library", "dvc.lock"):
        p = dest / stale
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "GANFORGE_", "PREFECT_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    run(["git", "init", "-q", "-b", "main"], dest, env)
    run(["git", "add", "-A"], dest, env)
    run(["git", "commit", "-q", "-m", "tiny"], dest, env)
    return dest, env


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (prefect_test_harness: its own sqlite database) for the session's flow tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
