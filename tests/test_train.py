import csv
import json
import shutil
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.config import load_config
from ganforge.errors import GanforgeError, TrainingDiverged
from ganforge.models import ModelSpec
from ganforge.paths import Paths
from ganforge.sampling import Sampler, tile
from ganforge.training import checkpoint, loop
from ganforge.training.loop import train

from .conftest import NO_CLASS_GATE, ROOT

TINY = [
    "train.model.g_width=8",
    "train.model.d_width=8",
    "train.model.z_dim=8",
    "train.batch_size=16",
    "train.log_every=2",
    "train.sample_every=4",
    "train.checkpoint_every=4",
    "train.device=cpu",
    "tracking.enabled=false",
]


def workdir(tmp_path, digits16, name):
    paths = Paths(tmp_path / name)
    shutil.copytree(digits16, paths.prepared)
    return paths


def cfg(*extra):
    return load_config(ROOT / "params.yaml", [*TINY, *extra])


def straight_and_halves(tmp_path, prepared, make_cfg, steps, *extra):
    """Train `steps` straight, and `steps // 2` then a resume to `steps`; assert the two end bit for bit equal.
    Returns (straight, halves) paths for further checks."""
    straight = workdir(tmp_path, prepared, "straight")
    train(make_cfg(f"train.steps={steps}", *extra), straight, progress=False)
    halves = workdir(tmp_path, prepared, "halves")
    train(make_cfg(f"train.steps={steps // 2}", *extra), halves, progress=False)
    s = train(make_cfg(f"train.steps={steps}", *extra), halves, resume=True, progress=False)
    assert s.start_step == steps // 2 and s.steps == steps
    states_equal(checkpoint.load(straight.checkpoint), checkpoint.load(halves.checkpoint))
    return straight, halves


def states_equal(a, b):
    for key in ("G", "D", "G_ema", "objective", "augment"):
        assert set(a.get(key, {})) == set(b.get(key, {})), key
        for name, t in a.get(key, {}).items():
            assert torch.equal(t, b[key][name]), f"{key}.{name}"
    for key in ("opt_G", "opt_D"):
        for pid, st in a[key]["state"].items():
            for name, t in st.items():
                assert torch.equal(t, b[key]["state"][pid][name]), f"{key}.{pid}.{name}"
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert torch.equal(a["rng"]["sampler"], b["rng"]["sampler"])


def test_train_writes_every_output(tmp_path, digits16):
    paths = workdir(tmp_path, digits16, "run")
    s = train(cfg("train.steps=8"), paths, progress=False)
    assert s.steps == 8 and s.images_per_sec > 0 and not s.interrupted
    assert sorted(p.name for p in paths.samples_dir.iterdir()) == ["step_000004.png", "step_000008.png"]
    grid = Image.open(paths.samples_latest)
    assert grid.size == (10 * 17 + 1, 10 * 17 + 1)  # one row per class, 10 columns, 16 px + padding
    rows = list(csv.DictReader(paths.train_losses.open()))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    assert set(rows[0]) == {"step", "loss_d", "loss_g", "d_real", "d_fake"}
    metrics = (paths.metrics / "train.json").read_text()
    assert '"steps": 8' in metrics and "images_per_sec" in metrics
    state = checkpoint.load(paths.checkpoint)
    assert state["step"] == 8 and state["class_names"] == [str(i) for i in range(10)]
    G = checkpoint.load_generator(paths.checkpoint)
    assert G(torch.randn(3, 8), torch.tensor([1, 2, 3])).shape == (3, 1, 16, 16)
    # the grid is the sampler's: seeds 0..99 at psi 1, class = row; cell (r, c) is what the pyfunc gives seed 10r+c
    cells = Sampler(G).uint8(range(100), torch.arange(10).repeat_interleave(10))
    assert np.array_equal(np.asarray(grid), tile(cells, 10)[0].numpy())
    assert np.array_equal(np.asarray(grid)[1 + 17 * 2 : 17 * 3, 1 + 17 * 3 : 17 * 4], cells[23, 0].numpy())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_is_exact(tmp_path, digits16, precision):
    straight, halves = straight_and_halves(tmp_path, digits16, cfg, 10, f"train.precision={precision}")
    # the same loss rows wherever the log intervals coincide (the first half also logged its last step, 5)
    rows_a = {r["step"]: r for r in csv.DictReader(straight.train_losses.open())}
    rows_b = {r["step"]: r for r in csv.DictReader(halves.train_losses.open())}
    assert list(rows_b) == ["2", "4", "5", "6", "8", "10"]
    assert all(rows_a[k] == rows_b[k] for k in ("2", "4", "8", "10"))


def test_time_budget_ends_a_finished_run_that_the_next_run_does_not_continue(tmp_path, digits16):
    """train.max_minutes ends the run at the first log point past the budget, as a finished run: checkpoint, grid
    and metrics written, not "interrupted"; a plain rerun starts afresh, --resume continues it."""
    paths = workdir(tmp_path, digits16, "run")
    s = train(cfg("train.steps=40", "train.max_minutes=0.000001"), paths, progress=False)
    assert (s.steps, s.out_of_time, s.interrupted) == (2, True, False)  # the first log point (log_every 2)
    assert "trained to step 2, train.max_minutes reached (2 steps" in s.line(paths) and "again" not in s.line(paths)
    assert checkpoint.load(paths.checkpoint)["ended_by"] == "max_minutes"
    assert json.loads((paths.metrics / "train.json").read_text())["out_of_time"] is True
    assert paths.samples_latest.exists()
    again = train(cfg("train.steps=40", "train.max_minutes=0.000001"), paths, progress=False)
    assert again.start_step == 0 and again.steps == 2  # afresh, not "continuing the interrupted run"
    more = train(cfg("train.steps=6"), paths, resume=True, progress=False)  # max_minutes may change on resume
    assert (more.start_step, more.steps, more.out_of_time) == (2, 6, False)
    assert "ended_by" not in checkpoint.load(paths.checkpoint)


def test_resume_refuses_other_settings(tmp_path, digits16):
    paths = workdir(tmp_path, digits16, "run")
    train(cfg("train.steps=4"), paths, progress=False)
    with pytest.raises(GanforgeError, match=r"other settings \(train.lr_g\)"):
        train(cfg("train.steps=8", "train.lr_g=0.001"), paths, resume=True, progress=False)
    with pytest.raises(GanforgeError, match="already at step 4"):
        train(cfg("train.steps=4"), paths, resume=True, progress=False)


def as_before_family_configs(state):
    """A checkpoint as ganforge wrote it before the families owned their config: a flat spec (`model: dcgan` with
    every family's keys beside the data's) and flat train settings (the same keys beside the loop's)."""
    spec, train_cfg = dict(state["spec"]), dict(state["config"]["train"])
    model, spec_model = train_cfg.pop("model"), spec.pop("model")
    flat_train = {**train_cfg, "model": model["family"], "motion_dim": 16, "image_d_frames": 2, "motion_warp": "none"}
    flat_train.update({k: v for k, v in model.items() if k != "family"})
    flat_spec = {**spec, "model": spec_model["family"], "motion_dim": 0, "image_d_frames": 0, "motion_warp": "none"}
    flat_spec.update({k: v for k, v in spec_model.items() if k != "family"})
    return {**state, "spec": flat_spec, "config": {**state["config"], "train": flat_train}}


def test_checkpoints_with_the_old_flat_spec_load_and_resume(tmp_path, digits16):
    """A checkpoint written before train.model held the family's keys builds, loads, and resumes bit for bit with
    the same settings; a change inside train.model is named by its key."""
    straight = workdir(tmp_path, digits16, "straight")
    train(cfg("train.steps=8"), straight, progress=False)
    paths = workdir(tmp_path, digits16, "old")
    train(cfg("train.steps=4"), paths, progress=False)
    state = checkpoint.load(paths.checkpoint)
    old = as_before_family_configs(state)
    assert old["spec"]["model"] == "dcgan" and old["spec"]["z_dim"] == 8 and old["config"]["train"]["g_width"] == 8
    paths.checkpoint.unlink()
    checkpoint.save(paths.checkpoint, old, keep_previous=False)
    G = checkpoint.load_generator(paths.checkpoint)
    assert G.spec == ModelSpec.from_dict(state["spec"]) and G(torch.randn(2, 8), torch.tensor([1, 2])).shape[0] == 2
    with pytest.raises(GanforgeError, match=r"other settings \(train\.model\.g_width\)"):
        train(cfg("train.steps=8", "train.model.g_width=16"), paths, resume=True, progress=False)
    s = train(cfg("train.steps=8"), paths, resume=True, progress=False)
    assert (s.start_step, s.steps) == (4, 8)
    states_equal(checkpoint.load(straight.checkpoint), checkpoint.load(paths.checkpoint))


def test_interrupt_checkpoints_then_resume_matches(tmp_path, digits16, monkeypatch):
    straight = workdir(tmp_path, digits16, "straight")
    train(cfg("train.steps=8"), straight, progress=False)

    paths = workdir(tmp_path, digits16, "interrupted")
    real_step = loop.train_step

    def step_then_ctrl_c(s, next_batch):
        out = real_step(s, next_batch)
        if s.step_count == 3:
            signal.raise_signal(signal.SIGINT)  # as a user's Ctrl-C: the loop finishes the step and saves
        return out

    monkeypatch.setattr(loop, "train_step", step_then_ctrl_c)
    s = train(cfg("train.steps=8"), paths, progress=False)
    assert s.interrupted and s.steps == 3 and "--resume" in s.line(paths)
    assert checkpoint.load(paths.checkpoint)["step"] == 3
    assert not (paths.metrics / "train.json").exists()
    monkeypatch.setattr(loop, "train_step", real_step)
    train(cfg("train.steps=8"), paths, resume=True, progress=False)
    states_equal(checkpoint.load(straight.checkpoint), checkpoint.load(paths.checkpoint))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, digits16, monkeypatch):
    paths = workdir(tmp_path, digits16, "nan")
    real_step = loop.train_step

    def poisoned(s, next_batch):
        def batch():
            real, y = next_batch()
            if s.step_count >= 5:  # from step 6 on, the data carries a NaN
                real = real.clone()
                real[0, 0, 0, 0] = float("nan")
            return real, y

        return real_step(s, batch)

    monkeypatch.setattr(loop, "train_step", poisoned)
    with pytest.raises(TrainingDiverged) as err:
        train(cfg("train.steps=12"), paths, progress=False)
    msg = str(err.value)
    assert "loss_d became nan between steps 5 and 6" in msg and "step 4" in msg and "\n" not in msg
    state = checkpoint.load(paths.checkpoint)
    assert state["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["G"].values() if t.is_floating_point())
    assert [int(r["step"]) for r in csv.DictReader(paths.train_losses.open())] == [2, 4]
    record = json.loads((paths.metrics / "train.json").read_text())  # the reason, for DVC and the user
    assert record["status"] == "diverged" and record["step"] == 6 and "loss_d became nan" in record["reason"]


def test_unconditional_and_nonsat(tmp_path, digits16):
    paths = workdir(tmp_path, digits16, "uncond")
    uncond = cfg("train.steps=2", "train.conditional=false", NO_CLASS_GATE, "train.loss=nonsat", "train.model.pack=1")
    s = train(uncond, paths, progress=False)
    assert s.steps == 2
    assert Image.open(paths.samples_latest).size == (8 * 17 + 1, 8 * 17 + 1)


def test_clear_errors(tmp_path, digits16):
    with pytest.raises(GanforgeError, match="run `ganforge prepare` first"):
        train(cfg("train.steps=2"), Paths(tmp_path / "empty"), progress=False)
    paths = workdir(tmp_path, digits16, "run")
    with pytest.raises(GanforgeError, match="no checkpoint"):
        train(cfg("train.steps=2"), paths, resume=True, progress=False)
    paths.checkpoint.parent.mkdir(parents=True)
    paths.checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(GanforgeError, match="not a readable ganforge checkpoint"):
        train(cfg("train.steps=2"), paths, resume=True, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(GanforgeError, match="no CUDA device"):
            train(cfg("train.steps=2", "train.device=cuda"), paths, progress=False)
