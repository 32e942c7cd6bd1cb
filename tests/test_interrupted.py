"""Interrupted work (docs/RELIABILITY.md, promise 1): SIGKILL at the worst moments of train, evaluate and the
library build (`GANFORGE_FAULT`, ganforge/faults.py), then the same command again: it completes, the result equals
an uninterrupted run, and nothing is left half-written or twice. Damaged checkpoints are detected by checksum."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch

from ganforge.assets import catalog as catalog_mod

from .conftest import ROOT, TINY_MODEL, copy_project

pytestmark = pytest.mark.slow

EVAL = ["evaluate.n_fake=100", "evaluate.kid_subsets=5", "evaluate.kid_subset_size=50"]
TRAIN = [*TINY_MODEL, "train.steps=12", "train.checkpoint_every=4", "train.sample_every=4", "train.log_every=2"]


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def ganforge(project, *args, fault=None, env_extra=None):
    """`ganforge ARGS` in `project`: killed runs in a child process (GANFORGE_FAULT), the others in this process
    (cheaper: no imports). Both use one thread, so their arithmetic is the same to the bit."""
    if not fault:
        import contextlib
        import io

        from ganforge.cli import main

        out, err, cwd = io.StringIO(), io.StringIO(), os.getcwd()
        with pytest.MonkeyPatch.context() as mp:
            for k, v in (env_extra or {}).items():
                mp.setenv(k, v)
            os.chdir(project)
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = main(list(args))
            finally:
                os.chdir(cwd)
        return Result(code, out.getvalue(), err.getvalue())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "GANFORGE_"))}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", GANFORGE_FAULT=fault, **(env_extra or {}))
    cmd = [sys.executable, "-m", "ganforge", *args]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sets(*overrides):
    return [a for o in overrides for a in ("--set", o)]


def leftovers(folder):
    """Temporary files a writer left behind."""
    return sorted(p.name for p in folder.rglob("*.tmp"))


@pytest.fixture
def project(tiny_project, tmp_path):
    paths = copy_project(tiny_project, tmp_path / "p")
    paths.checkpoint.unlink()  # each test trains its own
    shutil.copy2(ROOT / "params.yaml", paths.root / "params.yaml")
    return paths


def weights(path):
    state = torch.load(path, weights_only=True)
    return {part: state[part] for part in ("G", "D", "G_ema", "opt_G", "opt_D", "step")}


def assert_same(a, b):
    assert a["step"] == b["step"]
    for part in ("G", "D", "G_ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    for part in ("opt_G", "opt_D"):
        for i, s in a[part]["state"].items():
            for k, v in s.items():
                assert torch.equal(v, b[part]["state"][i][k]), (part, i, k)


def test_prepare_killed_between_shards_then_run_again_equals_an_uninterrupted_run(tmp_path):
    data = ["data.source=digits", "data.resolution=16", "data.shard_size=256"]
    for name in ("ref", "killed"):
        (tmp_path / name).mkdir()
        shutil.copy2(ROOT / "params.yaml", tmp_path / name / "params.yaml")
    assert ganforge(tmp_path / "ref", "prepare", "-q", *sets(*data)).returncode == 0
    killed = ganforge(tmp_path / "killed", "prepare", "-q", *sets(*data), fault="prepare.shard@3")
    assert killed.returncode == -signal.SIGKILL
    assert [p.name[:14] for p in (tmp_path / "killed/data").iterdir()] == [".prepared.tmp-"]  # half a tree
    again = ganforge(tmp_path / "killed", "prepare", "-q", *sets(*data))
    assert again.returncode == 0, again.stderr
    assert [p.name for p in (tmp_path / "killed/data").iterdir()] == ["prepared"]  # the half tree is gone

    def tree(root):
        base = root / "data/prepared"
        return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}

    ref, got = tree(tmp_path / "ref"), tree(tmp_path / "killed")
    assert sorted(ref) == sorted(got) and len([n for n in ref if n.startswith("train-0")]) >= 4
    assert all(ref[n] == got[n] for n in ref if n != "info.json")  # info.json holds the timing


def test_train_killed_anywhere_then_run_again_equals_an_uninterrupted_run(project, tmp_path):
    ref = shutil.copytree(project.root, tmp_path / "ref")
    out = ganforge(ref, "train", "-q", *sets(*TRAIN))
    assert out.returncode == 0, out.stderr
    reference = weights(ref / "models/checkpoint.pt")

    # killed between two steps (step 7: the step-4 checkpoint is the last one), then the same command
    first = ganforge(project.root, "train", "-q", *sets(*TRAIN), fault="train.step@7")
    assert first.returncode == -signal.SIGKILL
    again = ganforge(project.root, "train", "-q", *sets(*TRAIN))
    assert again.returncode == 0, again.stderr
    assert "continuing the interrupted run of these settings from" in again.stdout and "(step 4)" in again.stdout
    assert "trained to step 12 (8 steps" in again.stdout
    assert_same(weights(project.checkpoint), reference)
    # the loss log holds each step once: the rows after the checkpoint were replaced, not appended twice
    log = pd.read_csv(project.root / "plots/train_losses.csv")
    assert log["step"].tolist() == [2, 4, 6, 8, 10, 12]

    # killed in the middle of a checkpoint swap (no current file; the previous one and a temp file on disk)
    project.checkpoint.unlink()
    checkpoint_prev = project.models / "checkpoint.prev.pt"
    checkpoint_prev.unlink()
    swap = ganforge(project.root, "train", "-q", *sets(*TRAIN), fault="checkpoint.swap@2")
    assert swap.returncode == -signal.SIGKILL
    assert not project.checkpoint.exists() and checkpoint_prev.exists() and leftovers(project.models)
    again = ganforge(project.root, "train", "-q", *sets(*TRAIN))
    assert again.returncode == 0, again.stderr
    assert "checkpoint.prev.pt (step 8)" in again.stdout and "checkpoint.pt is missing" in again.stdout
    assert_same(weights(project.checkpoint), reference)
    assert leftovers(project.models) == []  # the killed writer's temp file is gone

    # a finished run is not continued: the same command trains from scratch (DVC decides when to rerun)
    fresh = ganforge(project.root, "train", "-q", *sets(*TRAIN))
    assert "continuing" not in fresh.stdout and "trained to step 12 (12 steps" in fresh.stdout


def test_damaged_checkpoint_is_detected_and_the_previous_one_used(project):
    from ganforge.errors import GanforgeError
    from ganforge.training import checkpoint

    out = ganforge(project.root, "train", "-q", *sets(*TRAIN))
    assert out.returncode == 0, out.stderr
    good = torch.load(project.checkpoint, weights_only=True)
    # one weight changed after the file was written (its checksum left as it was)
    bad = {**good, "G": {**good["G"]}}
    key = next(k for k, v in bad["G"].items() if v.is_floating_point())
    bad["G"][key] = bad["G"][key].clone()
    bad["G"][key].view(-1)[0] += 1e-3
    torch.save(bad, project.checkpoint)
    with pytest.raises(GanforgeError, match="damaged checkpoint"):
        checkpoint.load(project.checkpoint)
    state, used, why = checkpoint.load_latest(project.checkpoint)
    assert used.name == "checkpoint.prev.pt" and state["step"] == 8 and "damaged" in why
    # evaluate refuses it in one line (it must not score another step's weights silently)
    ev = ganforge(project.root, "evaluate", *sets(*TRAIN, *EVAL))
    assert ev.returncode == 1 and ev.stderr.count("\n") == 1 and "damaged checkpoint" in ev.stderr
    # truncated on disk (a copy cut short): unreadable, named, and training goes on from the previous one
    blob = project.checkpoint.read_bytes()
    project.checkpoint.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(GanforgeError, match="not a readable ganforge checkpoint"):
        checkpoint.load(project.checkpoint)
    again = ganforge(project.root, "train", "-q", *sets(*TRAIN), "--resume")
    assert again.returncode == 0, again.stderr
    assert "resuming from" in again.stdout and "checkpoint.prev.pt (step 8)" in again.stdout
    assert "not a readable ganforge checkpoint" in again.stdout
    assert checkpoint.load(project.checkpoint)["step"] == 12
    assert checkpoint.load(checkpoint.previous(project.checkpoint))["step"] == 8  # the damaged file was not kept


def test_evaluate_killed_after_registering_keeps_one_version(project, tmp_path):
    from mlflow.tracking import MlflowClient

    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    run = [*TRAIN, *EVAL, "train.steps=4", "tracking.enabled=true", "registry.model_name=tiny-kill"]
    assert ganforge(project.root, "train", "-q", *sets(*run), env_extra=env).returncode == 0
    killed = ganforge(project.root, "evaluate", *sets(*run), fault="evaluate.registered", env_extra=env)
    assert killed.returncode == -signal.SIGKILL and not (project.metrics / "eval.json").exists()
    again = ganforge(project.root, "evaluate", *sets(*run), env_extra=env)
    assert again.returncode == 0, again.stderr
    ev = json.loads((project.metrics / "eval.json").read_text())
    versions = MlflowClient(env["MLFLOW_TRACKING_URI"]).search_model_versions("name='tiny-kill'")
    assert [str(v.version) for v in versions] == ["1"] and str(ev["registry"]["version"]) == "1"
    # the scores equal those of an evaluation that was never interrupted (same seeds, same weights)
    once = ganforge(project.root, "evaluate", *sets(*run), env_extra=env)
    assert once.returncode == 0, once.stderr
    ev2 = json.loads((project.metrics / "eval.json").read_text())
    assert ev2["fid"] == ev["fid"] and ev2["class_accuracy"] == ev["class_accuracy"]
    assert len(MlflowClient(env["MLFLOW_TRACKING_URI"]).search_model_versions("name='tiny-kill'")) == 1


def test_library_build_killed_midway_resumes_to_the_same_catalog(tiny_project, tmp_path):
    lib = [*TINY_MODEL, "library.model=checkpoint", "library.images=3", "library.videos=1", "library.morphs=0"]
    lib += ["library.keyframes=2", "library.frames_per_key=2", "library.video_size=32", "library.dedupe_hamming=-1"]
    roots = {}
    for name in ("ref", "killed"):
        paths = copy_project(tiny_project, tmp_path / name)
        shutil.copy2(ROOT / "params.yaml", paths.root / "params.yaml")
        roots[name] = paths
    assert ganforge(roots["ref"].root, "library", "build", *sets(*lib)).returncode == 0
    killed = ganforge(roots["killed"].root, "library", "build", *sets(*lib), fault="library.asset@7")
    assert killed.returncode == -signal.SIGKILL
    again = ganforge(roots["killed"].root, "library", "build", *sets(*lib))
    assert again.returncode == 0, again.stderr
    cols = ["asset_id", "kind", "path", "seeds", "class", "phash"]

    def catalog(paths):
        frame = pd.read_parquet(paths.root / "library/catalog.parquet")
        return frame[cols].astype(str).sort_values("asset_id").reset_index(drop=True)

    a, b = catalog(roots["ref"]), catalog(roots["killed"])
    assert len(a) > 10 and a.equals(b) and b["asset_id"].is_unique
    # every file in the library is named by a catalog row (or is the catalog, the gallery, the lock)
    lib_dir = roots["killed"].root / "library"
    files = {p.relative_to(lib_dir).as_posix() for p in lib_dir.rglob("*") if p.is_file()}
    rows = pd.read_parquet(lib_dir / "catalog.parquet")
    named = {v for col in ("path", "preview", "poster") for v in rows[col] if v}
    assert not leftovers(lib_dir) and named <= files
    assets = {f for f in files if f.split("/")[0] in catalog_mod.ASSET_DIRS}  # beside them: thumbs/, gallery/, real/
    assert assets <= named, sorted(assets - named)
