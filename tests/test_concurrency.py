"""Concurrency (docs/RELIABILITY.md, promise 5): two trainings and an evaluation writing to one fresh sqlite MLflow
store at once; two library builds into one library (its lock). Two queued DVC experiments run in parallel in
tests/test_flows.py (the sweep)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT, TINY_MODEL, copy_project

pytestmark = pytest.mark.slow

RUN = [*TINY_MODEL, "tracking.enabled=true", "train.steps=6", "train.log_every=1", "train.checkpoint_every=2"]
RUN += ["evaluate.n_fake=100", "evaluate.kid_subsets=5", "evaluate.kid_subset_size=50", "registry.model_name=busy"]


def start(project, store, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "GANFORGE_"))}
    env.update(OMP_NUM_THREADS="1", MLFLOW_TRACKING_URI=f"sqlite:///{store}")
    sets = [a for o in RUN for a in ("--set", o)]
    cmd = [sys.executable, "-m", "ganforge", *args, *sets]
    return subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_trainings_and_an_evaluation_share_one_fresh_sqlite_store(tiny_project, tmp_path):
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlflow.db"
    projects = []
    for name in ("a", "b", "c"):
        paths = copy_project(tiny_project, tmp_path / name)
        shutil.copy2(ROOT / "params.yaml", paths.root / "params.yaml")
        projects.append(paths)
    jobs = [start(projects[0].root, store, "train", "-q"), start(projects[1].root, store, "train", "-q"),
            start(projects[2].root, store, "evaluate")]  # fmt: skip
    outs = [j.communicate(timeout=300) for j in jobs]
    for j, (_, err) in zip(jobs, outs, strict=True):
        assert j.returncode == 0, err[-3000:]
    client = MlflowClient(f"sqlite:///{store}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trains = [r for r in runs if r.data.tags.get("ganforge.stage") == "train"]
    assert len(trains) == 2 and all(r.info.status == "FINISHED" for r in trains)
    assert all(len(client.get_metric_history(r.info.run_id, "loss_d")) == 6 for r in trains)  # every log point
    ev = json.loads((projects[2].metrics / "eval.json").read_text())
    assert ev["registry"]["version"] == 1
    assert [str(v.version) for v in client.search_model_versions("name='busy'")] == ["1"]


def test_a_second_library_build_refuses_while_one_holds_the_library(tiny_project, tmp_path):
    from ganforge.assets import catalog

    paths = copy_project(tiny_project, tmp_path / "p")
    shutil.copy2(ROOT / "params.yaml", paths.root / "params.yaml")
    lib = [*TINY_MODEL, "library.model=checkpoint", "library.images=1", "library.videos=0", "library.morphs=0"]
    cmd = [sys.executable, "-m", "ganforge", "library", "build", *(a for o in lib for a in ("--set", o))]
    with catalog.locked(paths.root / "library"):  # a build in progress (this process holds the lock)
        busy = subprocess.run(cmd, cwd=paths.root, capture_output=True, text=True, timeout=300)
    assert busy.returncode == 1 and busy.stderr.count("\n") == 1
    assert f"another library build is running (pid {os.getpid()})" in busy.stderr
    assert not (paths.root / "library/catalog.parquet").exists()  # it wrote nothing
    done = subprocess.run(cmd, cwd=paths.root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
