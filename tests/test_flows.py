"""The Prefect flows under `prefect_test_harness`, on a tiny temporary clone: real DVC experiments, real sqlite
MLflow. (tests/test_flows_server.py runs train-pipeline as a deployment on a real server with a real worker and
checks its links: DVC experiment, MLflow run, flow run tags, the markdown artifact.)"""

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
    assert refs.strip() == ""  # refused before any experiment


def test_sweep_promotes_the_best_through_the_gate_and_the_library_draws_from_it(project):
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

    # the library flow draws from the champion the sweep's gate chose
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


def test_the_artifact_inlines_the_sample_grid_and_keeps_the_link_when_it_cannot(tmp_path, monkeypatch):
    """The train-pipeline artifact's grid comes from the MLflow store itself (a real sqlite store and artifact
    folder, no server), shrunk to a PNG of at most GRID_INLINE_PX; an unreadable grid leaves only the link."""
    import base64
    import io
    import re

    from mlflow.tracking import MlflowClient
    from PIL import Image

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    flows = load_flows()
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("grids", artifact_location=(tmp_path / "artifacts").as_uri())
    grids = {"good": tmp_path / "good" / "step_000010.png", "corrupt": tmp_path / "corrupt" / "step_000010.png"}
    for path in grids.values():
        path.parent.mkdir()
    Image.new("RGB", (700, 350), (200, 30, 30)).save(grids["good"])
    grids["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    text = {}
    for kind, path in grids.items():
        run_id = client.create_run(exp).info.run_id
        client.log_artifact(run_id, str(path), "samples")
        text[kind] = flows._sample_grid({"run_id": run_id, "name": "exp-1"})
        assert f"get-artifact?path=samples/step_000010.png&run_uuid={run_id}" in text[kind]  # the UI link, always

    inline = re.search(r"!\[sample grid\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text["good"])
    assert inline, text["good"]
    with Image.open(io.BytesIO(base64.b64decode(inline.group(1)))) as grid:
        assert grid.format == "PNG" and grid.size == (flows.GRID_INLINE_PX, flows.GRID_INLINE_PX // 2)
        assert grid.convert("RGB").getpixel((5, 5)) == (200, 30, 30)
    assert "data:image" not in text["corrupt"] and "![" not in text["corrupt"], text["corrupt"]
