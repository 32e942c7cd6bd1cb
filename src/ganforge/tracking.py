"""MLflow, reached from the stages through this module only.

The store is MLFLOW_TRACKING_URI when set, else an absolute sqlite:///<root>/mlflow.db where root
is DVC_ROOT (set by `dvc exp run`, whose stages may run in a temp copy) or the working directory.
mlflow is imported lazily: stages that do not track pay nothing for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from ganforge.config import Config
from ganforge.errors import GanforgeError
from ganforge.paths import write_text_atomic


def project_root() -> Path:
    """DVC_ROOT when DVC runs the stage; else the nearest folder up from here holding .dvc/ (so video/ shares
    the project's store); else the working directory."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path.cwd().resolve()
    return next((d for d in (here, *here.parents) if (d / ".dvc").is_dir()), here)


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def _artifact_root() -> str:
    return (project_root() / "mlartifacts").as_uri()


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class TrainRun:
    """One MLflow run of the train stage. Resuming training reopens the same run."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def log_artifact(self, path: Path, artifact_dir: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_dir)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


class NoRun(TrainRun):
    """Tracking disabled (`tracking.enabled: false`): every call is a no-op."""

    def __init__(self) -> None:
        super().__init__(None, "")

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        pass

    def log_artifact(self, path: Path, artifact_dir: str | None = None) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass


def _client() -> Any:
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # not "Creating initial MLflow database tables..."

    uri = tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)  # the registry would default to ./mlflow.db


def _experiment_id(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_root())


def start_train_run(cfg: Config, record: Path, resume: bool = False) -> TrainRun:
    """Open (or, with resume and a record, reopen) the train run; write its id to `record`."""
    if not cfg.tracking.enabled:
        return NoRun()
    try:
        client = _client()
        if resume and record.exists():
            run_id = json.loads(record.read_text())["run_id"]
            client.update_run(run_id, status="RUNNING")
            return TrainRun(client, run_id)
        exp_id = _experiment_id(client, cfg.tracking.experiment)
        tags = {"ganforge.stage": "train", "mlflow.source.type": "PROJECT"}
        if commit := git_commit():
            tags["mlflow.source.git.commit"] = commit
        if exp_name := os.environ.get("DVC_EXP_NAME"):
            tags["dvc.exp_name"] = exp_name
        run = client.create_run(exp_id, tags=tags, run_name=os.environ.get("DVC_EXP_NAME"))
        run_id = run.info.run_id
        _log_params(client, run_id, cfg.flat())
    except GanforgeError:
        raise
    except Exception as exc:  # an unreachable or broken store is the user's to fix, before any training
        raise GanforgeError(f"MLflow store {tracking_uri()}: {exc.__class__.__name__}: {exc}".splitlines()[0]) from exc
    record.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        record, json.dumps({"run_id": run_id, "experiment_id": exp_id, "tracking_uri": tracking_uri()}, indent=2)
    )
    return TrainRun(client, run_id)


def _log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def _train_run_id(client: Any, record: Path, cfg: Config) -> str:
    """The train stage's run; a new run when the record or its run is gone (e.g. a fresh store)."""
    if record.exists():
        run_id = json.loads(record.read_text())["run_id"]
        try:
            client.get_run(run_id)
            return run_id
        except Exception:  # the store does not know it: evaluate in a run of its own, and say why
            note = f"train run {run_id} is not in {tracking_uri()}"
    else:
        note = f"{record} is missing (was train run with tracking.enabled=false?)"
    exp_id = _experiment_id(client, cfg.tracking.experiment)
    tags = {"ganforge.stage": "evaluate", "ganforge.note": note}
    if commit := git_commit():
        tags["mlflow.source.git.commit"] = commit
    return client.create_run(exp_id, tags=tags, run_name="evaluate").info.run_id


def record_evaluation(
    cfg: Config, paths: Any, scores: dict[str, float], raw: dict[str, float] | None, protocol: dict[str, Any]
) -> dict[str, Any]:
    """Log scores (metrics) and protocol (tags) to the train run; register the generator; apply the gate."""
    from ganforge import registry

    client = _client()
    run_id = _train_run_id(client, paths.mlflow_run, cfg)
    run = TrainRun(client, run_id)
    step = int(protocol.get("checkpoint_step", 0))
    run.log_metrics(step, {f"eval.{k}": v for k, v in scores.items()})
    if raw:
        run.log_metrics(step, {f"eval_raw.{k}": v for k, v in raw.items()})
    for k, v in protocol.items():
        client.set_tag(run_id, f"eval.protocol.{k}", str(v))
    decision = registry.evaluate_and_register(cfg.registry, run_id, paths.checkpoint, scores)
    return {"run_id": run_id, **decision}


def record_library(run_id: str, values: dict[str, float]) -> str:
    """Log a library build's counts and throughput (`library.<name>`) to the run behind the model it drew from.
    Returns where they went, or why not (a run missing from this store is not worth failing a finished build)."""
    client = _client()
    try:
        client.get_run(run_id)
    except Exception as exc:
        return f"not logged: run {run_id} is not in {tracking_uri()} ({exc.__class__.__name__})"
    TrainRun(client, run_id).log_metrics(0, {f"library.{k}": float(v) for k, v in values.items()})
    return f"logged to run {run_id}"


def tag_run(run_id: str, tags: dict[str, str]) -> None:
    """Set tags on a run (links to where it was launched from: a Prefect flow run, a DVC experiment)."""
    client = _client()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def artifact_paths(run_id: str, path: str) -> list[str]:
    """The artifacts of a run under `path`, sorted (e.g. the sample grids under samples/)."""
    return sorted(a.path for a in _client().list_artifacts(run_id, path))
