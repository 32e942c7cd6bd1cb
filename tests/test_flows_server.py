"""The Prefect front door for real: a local Prefect server, the `gpu` process work pool, the deployments of
prefect.yaml (`prefect deploy`), a process worker, and `prefect deployment run train-pipeline/on-demand` with
overrides, in a temporary git repo made from this checkout with tiny params. The run must leave a DVC
experiment, an MLflow run and a Prefect flow run that name each other, and a markdown artifact. Then the
Prefect UI and a real MLflow UI (on 127.0.0.1, as every server here) are opened in headless Chromium and
checked for what a user looks for there: the four deployments and their parameters, the finished flow run and
its artifact, the registered model with its champion alias and its scores (screenshots in test-artifacts/)."""

import base64
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from PIL import Image

from .conftest import ROOT, make_tiny_repo, run

pytestmark = pytest.mark.slow

PREFECT = [sys.executable, "-m", "prefect"]
SERVER_START_TIMEOUT_S = 60
RUN_TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 60) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _alive_in_session(sid: int) -> list[int]:
    """Processes (not zombies) of session `sid`: what a process started with start_new_session=True left."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


class Processes:
    """Background processes, each in its own session; stopped in reverse order, by process group."""

    def __init__(self) -> None:
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((proc, log))
        return proc

    @staticmethod
    def _signal(pgid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)

    def stop_all(self) -> list[int]:
        """SIGTERM to each group (the worker first: it still talks to the server while it shuts down), SIGKILL
        after 10 s; returns the pids still alive in any of their sessions (should be none)."""
        for proc, _ in reversed(self.procs):
            if proc.poll() is None:
                self._signal(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._signal(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            self._signal(proc.pid, signal.SIGKILL)  # whatever the leader left behind in its group
        deadline = time.monotonic() + 5
        while True:
            left = [p for proc, _ in self.procs for p in _alive_in_session(proc.pid)]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)


@pytest.fixture
def procs():
    ps = Processes()
    try:
        yield ps
    finally:
        left = ps.stop_all()
    assert not left, f"still alive after teardown: {left}"


ARTIFACTS = ROOT / "test-artifacts"


@contextlib.contextmanager
def _chromium():
    """Debian's headless Chromium through Playwright (skipped, or failed in CI, when it is not installed)."""
    from .test_gallery import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists() and os.environ.get("GANFORGE_REQUIRE_BROWSER") != "1":
        pytest.skip(f"the UI checks need {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"prefect server exited with {server.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"prefect server not healthy after {SERVER_START_TIMEOUT_S}s:\n{_tail(log)}")


def _parallel(cmds: list[list[str]], cwd: Path, env: dict[str, str], timeout: float = 120) -> list[str]:
    """Prefect CLI calls that do not depend on each other, at once (each one spends ~2 s importing Prefect)."""
    started = [
        (cmd, subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for cmd in cmds
    ]
    outs = []
    for cmd, p in started:
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"{cmd[2:]} failed (exit {p.returncode}):\n{out}"
        outs.append(out)
    return outs


def test_deployment_runs_on_a_real_server(tmp_path_factory, procs):
    t0 = time.monotonic()
    repo, base_env = make_tiny_repo(tmp_path_factory.mktemp("flows-server") / "repo")
    tmp = tmp_path_factory.mktemp("prefect")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **base_env,
        "PREFECT_HOME": str(tmp / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }

    # 1. the server, on loopback, with its own sqlite database
    server_log = tmp / "server.log"
    server = procs.start(
        [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        tmp,
        {
            **env,
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp / 'prefect.db'}",
            "PREFECT_UI_ENABLED": "true",
            "PREFECT_UI_API_URL": api,  # where the UI's own requests go (else 127.0.0.1:4200)
        },
        server_log,
    )
    _wait_healthy(api, server, server_log)
    t_server = time.monotonic() - t0

    # 2. the pool, the GPU slot and the deployment, as an operator does it (README "Operate (Prefect)")
    env.update(
        PREFECT_API_URL=api,
        MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}",
        PREFECT_WORKER_QUERY_SECONDS="1",
        GANFORGE_RETRIES="0",  # a failure shows at once in the logs below instead of after retries
    )
    _parallel(
        [
            [*PREFECT, "work-pool", "create", "gpu", "--type", "process"],
            [*PREFECT, "gcl", "create", "ganforge-gpu", "--limit", "1"],
        ],
        repo,
        env,
    )
    # 3. the worker polls while the deployment is created
    worker_log = tmp / "worker.log"
    worker = procs.start([*PREFECT, "worker", "start", "--pool", "gpu", "--limit", "1"], repo, env, worker_log)
    # no GANFORGE_PROJECT: the deploy-time build step finds the project where `prefect deploy` runs; a wrong one
    # is refused then, not when a run starts
    one = [*PREFECT, "--no-prompt", "deploy", "--name", "train-pipeline/on-demand"]
    wrong = subprocess.run(one, cwd=repo, env={**env, "GANFORGE_PROJECT": str(tmp)}, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert wrong.returncode != 0 and f"GANFORGE_PROJECT={tmp} holds no dvc.yaml" in wrong.stdout + wrong.stderr
    deployed = run([*PREFECT, "--no-prompt", "deploy", "--all"], repo, env, timeout=120)
    for name in ("train-pipeline/nightly", "train-pipeline/on-demand", "sweep/default", "build-library/default"):
        assert name in deployed, deployed

    # 4. a run with overrides, from the CLI
    t_run = time.monotonic()
    out = run(
        [*PREFECT, "deployment", "run", "train-pipeline/on-demand", "--param", 'overrides={"train.steps": 4}'],
        repo,
        env,
        timeout=120,
    )
    found = re.search(r"UUID: ([0-9a-f-]{36})", out)
    assert found, out
    flow_run_id = found.group(1)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:

        def flow_run_logs() -> str:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            return "\n".join(f"{log.level:>2} {log.message}" for log in logs)

        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            state = flow_run.state
            if state is not None and state.is_final():
                break
            if time.monotonic() > deadline or worker.poll() is not None:
                break
            time.sleep(1)
        if state is None or not state.is_completed():
            pytest.fail(
                f"flow run {flow_run_id}: {state.type.value if state else 'no state'} "
                f"after {time.monotonic() - t_run:.0f}s ({state.message if state else ''})\n"
                f"--- flow run logs\n{flow_run_logs()}\n--- worker log\n{_tail(worker_log)}"
            )
        t_done = time.monotonic() - t_run
        logs = flow_run_logs()
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["train-pipeline"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
        on_demand = client.read_deployment_by_name("train-pipeline/on-demand")

    # 5. the links: flow run tags -> DVC experiment -> MLflow run -> back to the flow run
    assert flow_run.parameters == {"overrides": {"train.steps": 4}, "promote": True, "nproc": None}
    tags = dict(t.split(":", 1) for t in flow_run.tags if ":" in t)
    name, run_id = tags.get("dvc-exp"), tags.get("mlflow-run")
    assert name and run_id, flow_run.tags
    assert "do not exist" not in logs, "the flow should hold a slot of the ganforge-gpu limit created above"

    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo, base_env).split()
    ref = next((r for r in refs if r.endswith(f"/{name}")), None)
    assert ref, f"no refs/exps/.../{name} in {refs}"
    assert json.loads(run(["git", "show", f"{ref}:metrics/train.json"], repo, base_env))["steps"] == 4
    assert json.loads(run(["git", "show", f"{ref}:models/mlflow_run.json"], repo, base_env))["run_id"] == run_id
    # --temp: the workspace is left as it was
    assert run(["git", "status", "--porcelain"], repo, base_env).strip() == ""

    from mlflow.tracking import MlflowClient

    mlflow_run = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}").get_run(run_id)
    assert mlflow_run.data.tags["prefect.flow_run_id"] == flow_run_id
    assert mlflow_run.data.tags["dvc.exp_name"] == name
    assert mlflow_run.data.params["train.steps"] == "4"

    assert len(artifacts) == 1 and artifacts[0].type == "markdown", artifacts
    art = artifacts[0].data
    assert name in art and run_id in art and "| fid |" in art and "champion" in art
    assert f"get-artifact?path=samples/step_000004.png&run_uuid={run_id}" in art  # the sample grid's link ...
    inline = re.search(r"!\[sample grid\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", art)  # ... and the grid
    assert inline, art
    with Image.open(io.BytesIO(base64.b64decode(inline.group(1)))) as grid:
        assert grid.format == "PNG" and 0 < max(grid.size) <= 384, (grid.format, grid.size)
    assert f"#/experiments/{mlflow_run.info.experiment_id}/runs/{run_id})" in art  # the MLflow UI link

    # the nightly deployment carries its cron schedule
    schedules = run([*PREFECT, "deployment", "schedule", "ls", "train-pipeline/nightly"], repo, env, timeout=60)
    assert "0 2 * * *" in schedules, schedules

    print(f"server healthy after {t_server:.1f}s; run completed {t_done:.1f}s after `deployment run`")

    # 6. the two UIs, in a real browser
    ui = f"http://127.0.0.1:{port}"
    mlflow_port = _free_port()
    mlflow_log = tmp / "mlflow.log"
    mlflow_ui = procs.start(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{repo / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(mlflow_port)],
        repo, base_env, mlflow_log,
    )  # fmt: skip
    _wait_healthy(f"http://127.0.0.1:{mlflow_port}", mlflow_ui, mlflow_log)
    model = yaml.safe_load((repo / "params.yaml").read_text())["registry"]["model_name"]
    with _chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)

        def shows(url: str, *texts: str, shot: str) -> str:
            page.goto(url)
            for text in texts:
                page.get_by_text(text, exact=False).first.wait_for()
            page.wait_for_timeout(500)  # let the last requests render
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
            return page.locator("body").inner_text()

        body = shows(f"{ui}/deployments", "nightly", "on-demand", "build-library", shot="prefect-deployments.png")
        for flow, deployment in (("train-pipeline", "nightly"), ("train-pipeline", "on-demand"), ("sweep", "default"),
                                 ("build-library", "default")):  # fmt: skip
            assert flow in body and deployment in body, (flow, deployment)
        url = f"{ui}/deployments/deployment/{on_demand.id}?tab=Parameters"
        body = shows(url, "3 parameters", "overrides", "promote", "nproc", shot="prefect-deployment-parameters.png")
        body = shows(f"{ui}/runs/flow-run/{flow_run_id}", "Completed", shot="prefect-flow-run.png")
        assert flow_run.name in body
        body = shows(f"{ui}/artifacts/artifact/{artifacts[0].id}", run_id, shot="prefect-artifact.png")
        assert name in body and "champion" in body and "fid" in body
        drawn = page.eval_on_selector_all("img[alt='sample grid']", "els => els.map(e => e.naturalWidth)")
        assert drawn and drawn[0] > 0, f"the artifact's sample grid is not drawn: {drawn}"  # no MLflow server needed

        mlflow_ui_url = f"http://127.0.0.1:{mlflow_port}"
        body = shows(f"{mlflow_ui_url}/#/models/{model}", "Version 1", "champion", shot="mlflow-model.png")
        body = shows(f"{mlflow_ui_url}/#/models/{model}/versions/1", "metric.fid", "gate.decision",
                     shot="mlflow-version.png")  # fmt: skip
        assert "champion" in body and "promoted" in body and "protocol.extractor" in body
