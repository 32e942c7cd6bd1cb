"""Divergence (docs/RELIABILITY.md, promise 4): NaN/Inf in losses or weights and exploding gradients are detected at
the log points; the run stops (train.on_divergence=stop) or goes back to its last checkpoint with lower learning rates
(rollback); the reason is in metrics/train.json and on the MLflow run."""

import csv
import json

import pytest
import torch

from ganforge.errors import TrainingDiverged
from ganforge.training import checkpoint, loop
from ganforge.training.loop import train

from .test_train import cfg, workdir


def poison_weights_once(monkeypatch, at_step):
    """After step `at_step` (the first time only), one weight of D becomes NaN: a fault in the weights, not the data."""
    real_step = loop.train_step
    done = []

    def step(s, next_batch):
        out = real_step(s, next_batch)
        if s.step_count == at_step and not done:
            done.append(at_step)
            with torch.no_grad():
                next(s.D.parameters()).view(-1)[0] = float("nan")
        return out

    monkeypatch.setattr(loop, "train_step", step)
    return done


def test_nan_weights_stop_the_run_with_the_reason_in_metrics_and_mlflow(tmp_path, digits16, monkeypatch):
    from mlflow.tracking import MlflowClient

    paths = workdir(tmp_path, digits16, "stop")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    poison_weights_once(monkeypatch, at_step=6)
    with pytest.raises(TrainingDiverged, match="D holds NaN/Inf weights at step 6") as err:
        train(cfg("train.steps=12", "tracking.enabled=true"), paths, progress=False)
    assert "on_divergence=rollback" in str(err.value) and "\n" not in str(err.value)
    record = json.loads((paths.metrics / "train.json").read_text())
    assert record["status"] == "diverged" and record["divergences"][0]["action"] == "stopped"
    run_id = json.loads(paths.mlflow_run.read_text())["run_id"]
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FAILED" and "D holds NaN/Inf weights" in run.data.tags["ganforge.divergence"]
    assert run.data.metrics["divergences"] == 1
    assert checkpoint.load(paths.checkpoint)["step"] == 4  # the last good checkpoint is untouched


def test_rollback_goes_back_lowers_the_learning_rates_and_finishes(tmp_path, digits16, monkeypatch):
    paths = workdir(tmp_path, digits16, "rollback")
    poison_weights_once(monkeypatch, at_step=6)
    s = train(cfg("train.steps=12", "train.on_divergence=rollback"), paths, progress=False)
    assert s.steps == 12 and not s.interrupted
    record = json.loads((paths.metrics / "train.json").read_text())
    assert record["rollbacks"] == 1 and record["steps"] == 12
    (event,) = record["divergences"]
    assert event["step"] == 4 and "D holds NaN/Inf weights at step 6" in event["reason"]
    assert event["action"] == "rolled back to step 4, lr x0.5"
    state = checkpoint.load(paths.checkpoint)
    assert all(torch.isfinite(t).all() for part in ("G", "D", "G_ema") for t in state[part].values())
    assert state["opt_G"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.5)  # kept by later checkpoints
    # the loss log holds each logged step once: the rows after step 4 were replaced after the rollback
    assert [int(r["step"]) for r in csv.DictReader(paths.train_losses.open())] == [2, 4, 6, 8, 10, 12]


def test_rollbacks_are_bounded_and_a_run_with_no_checkpoint_stops(tmp_path, digits16, monkeypatch):
    paths = workdir(tmp_path, digits16, "bounded")
    real_step = loop.train_step

    def always(s, next_batch):  # every step from 6 on poisons D again: rollbacks cannot help
        out = real_step(s, next_batch)
        if s.step_count >= 5:
            with torch.no_grad():
                next(s.D.parameters()).view(-1)[0] = float("inf")
        return out

    monkeypatch.setattr(loop, "train_step", always)
    with pytest.raises(TrainingDiverged, match=r"after 2 rollback\(s\)"):
        train(cfg("train.steps=12", "train.on_divergence=rollback", "train.max_rollbacks=2"), paths, progress=False)
    record = json.loads((paths.metrics / "train.json").read_text())
    assert [e["action"].split(",")[0] for e in record["divergences"]] == ["rolled back to step 4"] * 2 + ["stopped"]
    # diverging before the first checkpoint: nothing to roll back to, the run stops
    early = workdir(tmp_path, digits16, "early")
    no_checkpoint = cfg("train.steps=12", "train.on_divergence=rollback", "train.checkpoint_every=100")
    with pytest.raises(TrainingDiverged, match="no checkpoint was written yet"):
        train(no_checkpoint, early, progress=False)


def test_exploding_gradients_are_detected(tmp_path, digits16):
    paths = workdir(tmp_path, digits16, "grads")
    over = r"gradient norm of .* between steps 1 and 2 is over train.grad_norm_limit=1e-06"
    with pytest.raises(TrainingDiverged, match=over):
        train(cfg("train.steps=6", "train.grad_norm_limit=1e-6"), paths, progress=False)
    # off (0) or generous: the same run trains
    assert train(cfg("train.steps=4", "train.grad_norm_limit=0"), paths, progress=False).steps == 4
