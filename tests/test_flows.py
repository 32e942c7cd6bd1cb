"""The Prefect flows under `prefect_test_harness`, on a tiny temporary clone: real DVC experiments, real sqlite
MLflow. (tests/test_flows_server.py runs a deployment on a real server with a real worker.)"""

import importlib.util
import json
import subprocess
import time

import pytest

from .conftest import ROOT, make_tiny_repo

pytestmark = pytest.mark.slow

TINY_LIBRARY = {"library.images": 2, "library.videos": 1, "library.morphs": 0, "library.video_size": 32,
                "library.keyframes": 2, "library.frames_per_key": 2, "library.dedupe_hamming": -1}  # fmt: skip


def load_flows():
    spec = importlib.util.spec_from_file_location("ganforge_flows", ROOT / "flows" / "ganforge_flows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_harness):
    dest, env = make_tiny_repo(tmp_path_factory.mktemp("flows") / "repo")
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in __import__("os").environ if k.startswith(("MLFLOW_", "DVC_", "GANFORGE_"))]:
            mp.delenv(key)
        mp.setenv("GANFORGE_PROJECT", str(dest))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{dest / 'mlflow.db'}")
        mp.setenv("PATH", env["PATH"])
        yield dest, load_flows()


def artifacts(key):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def flow_run_tags(flow_run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).tags


def test_train_pipeline_runs_an_experiment_and_links_everything(project):
    from mlflow.tracking import MlflowClient

    dest, flows = project
    state = flows.train_pipeline(overrides={"train.steps": 4}, return_state=True)
    assert state.is_completed(), state
    out = state.result()
    name, run_id = out["experiment"], out["run_id"]
    assert out["train"]["steps"] == 4 and out["eval"]["registry"]["version"] == 1
    refs = subprocess.run(["git", "for-each-ref", "refs/exps/"], cwd=dest, capture_output=True, text=True).stdout
    assert refs.strip().endswith(f"/{name}")
    assert (
        subprocess.run(["git", "status", "--porcelain", "params.yaml"], cwd=dest, capture_output=True, text=True).stdout
        == ""
    )  # fmt: skip  (--temp: the workspace is untouched)
    mlflow_run = MlflowClient(f"sqlite:///{dest / 'mlflow.db'}").get_run(run_id)
    tags = mlflow_run.data.tags
    assert tags["dvc.exp_name"] == name and tags["prefect.flow_run_id"] == str(state.state_details.flow_run_id)
    assert {f"dvc-exp:{name}", f"mlflow-run:{run_id}"} <= set(flow_run_tags(state.state_details.flow_run_id))
    (art,) = artifacts("train-pipeline")
    assert name in art.data and "| fid |" in art.data and "champion" in art.data
    assert f"get-artifact?path=samples/step_000004.png&run_uuid={run_id}" in art.data  # the sample grid
    assert f"#/experiments/{mlflow_run.info.experiment_id}/runs/{run_id})" in art.data  # the MLflow UI link


def test_bad_params_fail_fast_without_retries(project):
    dest, flows = project
    t0 = time.monotonic()
    state = flows.train_pipeline(overrides={"train.steps": -3}, return_state=True)
    assert state.is_failed() and time.monotonic() - t0 < 15
    with pytest.raises(flows.BadParams, match=r"train\.steps"):
        state.result()
    with pytest.raises(flows.BadParams, match="override key"):
        flows.check_overrides(dest, {"train steps": 1})
    refs = subprocess.run(["git", "for-each-ref", "refs/exps/"], cwd=dest, capture_output=True, text=True).stdout
    assert len(refs.strip().splitlines()) <= 1  # only the first test's experiment, if it ran


def test_sweep_runs_queued_experiments_and_promotes_the_best_through_the_gate(project):
    from mlflow.tracking import MlflowClient

    dest, flows = project
    state = flows.sweep(grid={"train.steps": [4, 6]}, max_parallel=2, return_state=True)
    assert state.is_completed(), state
    out = state.result()
    assert len(out["experiments"]) == 2 and all(e["fid"] is not None for e in out["experiments"])
    best = min(out["experiments"], key=lambda e: e["fid"])
    assert out["best"] == best["name"] and "best:" in out["decision"]
    client = MlflowClient(f"sqlite:///{dest / 'mlflow.db'}")
    versions = client.search_model_versions("name='tiny-digits'")
    swept = [v for v in versions if client.get_run(v.run_id).data.tags.get("ganforge.sweep") == out["sweep"]]
    assert len(swept) == 2
    decisions = {client.get_run(v.run_id).data.tags["dvc.exp_name"]: v.tags["gate.decision"] for v in swept}
    assert set(decisions.values()) <= {"promoted", "rejected"}
    (art,) = artifacts("sweep")
    assert out["sweep"] in art.data and best["name"] in art.data


def test_build_library_flow_draws_from_the_champion(project):
    dest, flows = project
    state = flows.build_library(model="champion", overrides=TINY_LIBRARY, return_state=True)
    assert state.is_completed(), state
    metrics = state.result()
    assert metrics["protocol"]["source"].startswith("models:/tiny-digits/") and metrics["catalog_assets"] > 0
    assert (dest / "library" / "index.html").exists()
    assert json.loads((dest / "metrics" / "library.json").read_text())["build_id"] == metrics["build_id"]
    (art,) = artifacts("build-library")
    assert "accepted" in art.data and "gallery" in art.data


def test_transient_failures_are_retried_and_bad_params_are_not(project, monkeypatch):
    dest, flows = project
    calls = []

    def flaky(cmd, project, timeout):
        calls.append(cmd)
        if len(calls) == 1:
            raise RuntimeError("dvc exp run failed (exit 1): a transient error")
        return ""

    monkeypatch.setattr(flows, "_run", flaky)
    monkeypatch.setattr(flows, "read_experiment", lambda project, name: {"name": name})
    retried = flows.run_experiment.with_options(retry_delay_seconds=0)
    assert retried(str(dest), "x", []) == {"name": "x"} and len(calls) == 2

    calls.clear()

    def refused(cmd, project, timeout):
        calls.append(cmd)
        raise flows.BadParams("train: exited with 2")

    monkeypatch.setattr(flows, "_run", refused)
    with pytest.raises(flows.BadParams):
        retried(str(dest), "y", [])
    assert len(calls) == 1
