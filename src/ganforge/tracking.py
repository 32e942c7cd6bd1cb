"""MLflow, reached from the stages through the tracking layer only: this module (the store, runs, logging) and
`registry` (model versions, the gate, promotion), which builds on it; this module never imports `registry`.

The store is MLFLOW_TRACKING_URI when set, else an absolute sqlite:///<root>/mlflow.db where root
is DVC_ROOT (set by `dvc exp run`, whose stages may run in a temp copy) or the working directory.
mlflow is imported lazily: stages that do not track pay nothing for it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
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

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

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

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass


def mlflow_client() -> Any:
    """An MlflowClient on this project's store (tracking and registry), whose calls wait while sqlite is locked."""
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # not "Creating initial MLflow database tables..."

    uri = tracking_uri()
    if not uri.startswith("sqlite:///") or uri in _READY:
        return _Retrying(MlflowClient(tracking_uri=uri, registry_uri=uri))  # the registry would default to ./mlflow.db
    # A fresh sqlite store is created (tables, migrations) by the first process that opens it; two at once break
    # each other's migration. One process at a time opens it, under a lock file beside the database.
    with _file_lock(Path(uri.removeprefix("sqlite:///") + ".lock")):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        _with_retries(client.search_experiments)(max_results=1)
        _with_retries(client.search_registered_models)(max_results=1)
    _READY.add(uri)
    return _Retrying(client)


_READY: set[str] = set()  # sqlite stores this process has seen initialised
LOCKED_WAIT_S = 120.0  # how long a call keeps retrying while sqlite says "database is locked"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, also when the process dies
        yield


def _with_retries(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, called again (backing off up to 1 s, for up to LOCKED_WAIT_S) while another process holds the sqlite
    write lock: `database is locked` is a wait, not an error."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        delay, deadline = 0.05, time.monotonic() + LOCKED_WAIT_S
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if "database is locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 1.0)

    return call


class _Retrying:
    """An MlflowClient whose every method retries on `database is locked` (`_with_retries`)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        return _with_retries(attr) if callable(attr) else attr


def _experiment_id(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_root())


def start_train_run(cfg: Config, record: Path, resume: bool = False, run_id: str | None = None) -> TrainRun:
    """Open (or, when resuming, reopen) the train run; write its id to `record`. A resumed run continues the
    MLflow run named by `record`, else `run_id` (the one its checkpoint names), when the store still has it."""
    if not cfg.tracking.enabled:
        return NoRun()
    try:
        client = mlflow_client()
        if resume:
            known = json.loads(record.read_text())["run_id"] if record.exists() else run_id
            if known and _run_exists(client, known):
                client.update_run(known, status="RUNNING")
                if not record.exists():
                    exp = client.get_run(known).info.experiment_id
                    write_text_atomic(
                        record,
                        json.dumps({"run_id": known, "experiment_id": exp, "tracking_uri": tracking_uri()}, indent=2),
                    )
                return TrainRun(client, known)
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


def _run_exists(client: Any, run_id: str) -> bool:
    try:
        client.get_run(run_id)
        return True
    except Exception:  # mlflow raises MlflowException (RESOURCE_DOES_NOT_EXIST) for an unknown id
        return False


def _log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def evaluation_run_id(client: Any, record: Path, cfg: Config) -> str:
    """The run evaluate logs to: the train stage's, or a new one when the record or its run is gone (a fresh store)."""
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


def record_library(run_id: str, values: dict[str, float]) -> str:
    """Log a library build's counts and throughput (`library.<name>`) to the run behind the model it drew from.
    Returns where they went, or why not (a run missing from this store is not worth failing a finished build)."""
    client = mlflow_client()
    try:
        client.get_run(run_id)
    except Exception as exc:
        return f"not logged: run {run_id} is not in {tracking_uri()} ({exc.__class__.__name__})"
    TrainRun(client, run_id).log_metrics(0, {f"library.{k}": float(v) for k, v in values.items()})
    return f"logged to run {run_id}"


def tag_run(run_id: str, tags: dict[str, str]) -> None:
    """Set tags on a run (links to where it was launched from: a Prefect flow run, a DVC experiment)."""
    client = mlflow_client()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def artifact_paths(run_id: str, path: str) -> list[str]:
    """The artifacts of a run under `path`, sorted (e.g. the sample grids under samples/)."""
    return sorted(a.path for a in mlflow_client().list_artifacts(run_id, path))


def artifact_bytes(run_id: str, path: str) -> bytes:
    """One artifact of a run, read from the store itself (no MLflow server needed)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return Path(mlflow_client().download_artifacts(run_id, path, tmp)).read_bytes()
