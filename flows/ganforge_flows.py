"""Prefect front door to the ganforge pipeline: the same dvc.yaml, scheduled and run on GPU work pools.

Flows (deployed by prefect.yaml at the repo root; the `ganforge` package itself never imports Prefect):

- `train_pipeline(overrides, promote, nproc)`: the pipeline up to `evaluate` as one DVC experiment (`nproc` GPUs)
  (`dvc exp run --temp -n <name> -S key=value ... evaluate`, with this interpreter first on PATH), then the
  experiment's metrics and the registry's decision; retried on failures, never on bad params.
- `sweep(grid, max_parallel, samples)`: DVC experiments queued over a grid (or a random sample of it), run by
  `max_parallel` DVC queue workers; none moves `champion` by itself; the best by FID is then promoted through
  the same gate.
- `build_library(model, overrides)`: the library stage for a chosen registered version (or a checkpoint).

Each flow publishes a markdown artifact (metrics table, promotion decision, where the sample grid and the
MLflow run are) and links the MLflow run, the DVC experiment and the Prefect flow run to each other with tags.
Work that needs the GPU holds a slot of the global concurrency limit `$GANFORGE_GPU_LIMIT` (default
`ganforge-gpu`; create it with `prefect gcl create ganforge-gpu --limit 1`: one run per GPU).

The project is `$GANFORGE_PROJECT`, else the working directory (the deployments' pull step sets it).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.concurrency.sync import concurrency
from prefect.context import get_run_context

RUN_TIMEOUT_S = float(os.environ.get("GANFORGE_RUN_TIMEOUT_S", 6 * 3600))
RETRIES = int(os.environ.get("GANFORGE_RETRIES", 2))
RETRY_DELAY_S = float(os.environ.get("GANFORGE_RETRY_DELAY_S", 30))
MLFLOW_UI = os.environ.get("GANFORGE_MLFLOW_UI", "http://127.0.0.1:5000")
GRID_INLINE_PX = 384  # the sample grid inlined in a train-pipeline artifact, at most this many pixels a side


class BadParams(ValueError):
    """Overrides params.yaml refuses: reported at once, never retried."""


def project_dir() -> Path:
    return Path(os.environ.get("GANFORGE_PROJECT") or os.getcwd()).resolve()


def gpu_limit() -> str:
    return os.environ.get("GANFORGE_GPU_LIMIT", "ganforge-gpu")


def _env() -> dict[str, str]:
    """This worker's interpreter first on PATH: `dvc` and the stages' `ganforge` are the ones installed with it."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def check_overrides(project: Path, overrides: dict[str, Any] | None) -> list[str]:
    """`{"train.steps": 500}` -> ["train.steps=500"], validated against the project's params.yaml."""
    from ganforge.config import load_config
    from ganforge.errors import ConfigError

    items = []
    for key, value in (overrides or {}).items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w.]*", key):
            raise BadParams(f"override key {key!r}: expected a dotted params path such as train.steps")
        items.append(
            f"{key}={yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip().removesuffix('...').strip()}"
        )
    try:
        load_config(project / "params.yaml", items)
    except ConfigError as exc:
        raise BadParams(str(exc)) from None
    return items


def _run(cmd: list[str], project: Path, timeout: float) -> str:
    logger = get_run_logger()
    logger.info("$ %s", " ".join(cmd))
    try:
        out = subprocess.run(cmd, cwd=project, env=_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{cmd[2:5]} ran past {timeout:.0f}s") from None
    text = out.stdout + out.stderr
    for line in text.splitlines()[-40:]:
        logger.info(line)
    if out.returncode != 0:
        errors = [ln for ln in text.splitlines() if ln.startswith(("error:", "ERROR:"))] or text.splitlines()[-1:]
        message = f"{' '.join(cmd[1:5])} failed (exit {out.returncode}): {errors[-1] if errors else ''}"
        # a stage that exited 2 refused its config: retrying cannot help
        if re.search(r"exited with 2\b", text) or out.returncode == 2:
            raise BadParams(message)
        raise RuntimeError(message)
    return text


def _retry_unless_bad_params(task_: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except BadParams:
        return False
    except Exception:
        return True
    return True


def _exp_name(prefix: str) -> str:
    try:
        run_name = get_run_context().flow_run.name
    except Exception:
        run_name = "local"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{prefix}-{run_name}-{stamp}")[:100]


def _exp_ref(project: Path, name: str) -> str:
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], cwd=project, capture_output=True, text=True
    ).stdout.split()
    found = [r for r in refs if r.rsplit("/", 1)[-1] == name]
    if not found:
        raise RuntimeError(f"DVC experiment {name!r} left no result (no refs/exps/.../{name})")
    return found[-1]


def read_experiment(project: Path, name: str) -> dict[str, Any]:
    """The metrics, registry decision and MLflow run of a finished DVC experiment, read from its git ref."""
    ref = _exp_ref(project, name)

    def show(path: str) -> dict[str, Any]:
        out = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=project, capture_output=True, text=True)
        return json.loads(out.stdout) if out.returncode == 0 else {}

    ev, train, run = show("metrics/eval.json"), show("metrics/train.json"), show("models/mlflow_run.json")
    return {
        "name": name,
        "ref": ref,
        "eval": ev,
        "train": train,
        "run_id": run.get("run_id"),
        "experiment_id": run.get("experiment_id"),
    }


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S, retry_condition_fn=_retry_unless_bad_params)
def run_experiment(project: str, name: str, items: list[str], target: str = "evaluate") -> dict[str, Any]:
    """`dvc exp run --temp -n name -S ... target`: the workspace is left as it was; the result is a git ref."""
    sets = [a for item in items for a in ("-S", item)]
    _run([sys.executable, "-m", "dvc", "exp", "run", "--temp", "-n", name, *sets, target], Path(project), RUN_TIMEOUT_S)
    return read_experiment(Path(project), name)


def link(result: dict[str, Any], extra: dict[str, str] | None = None) -> None:
    """MLflow run <-> DVC experiment <-> Prefect flow run, by tags on both sides."""
    from ganforge import tracking

    ctx = get_run_context()
    flow_run = ctx.flow_run
    if result.get("run_id"):
        tracking.tag_run(
            result["run_id"],
            {
                "dvc.exp_name": result["name"],
                "prefect.flow_run_id": str(flow_run.id),
                "prefect.flow_run_name": flow_run.name,
                **(extra or {}),
            },
        )
    from prefect.client.orchestration import get_client

    tags = sorted(
        {
            *flow_run.tags,
            f"dvc-exp:{result['name']}",
            *([f"mlflow-run:{result['run_id']}"] if result.get("run_id") else []),
        }
    )
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, tags=tags)


def _mlflow_link(result: dict[str, Any]) -> str:
    run_id = result.get("run_id")
    if not run_id:
        return "no MLflow run recorded"
    exp = result.get("experiment_id") or "0"
    return f"[{run_id}]({MLFLOW_UI}/#/experiments/{exp}/runs/{run_id})"


def _sample_grid(result: dict[str, Any]) -> str:
    """The run's last sample grid: inline (from the MLflow store), with links to it in the MLflow UI and where
    else to find it."""
    from ganforge import tracking

    run_id, grids = result.get("run_id"), []
    if run_id:
        try:
            grids = tracking.artifact_paths(run_id, "samples")
        except Exception:  # a report without its picture beats a failed run
            grids = []
    where = f"`plots/samples.png` after `dvc exp apply {result['name']}`"
    if not grids:
        return f"- sample grid: {where}"
    url = f"{MLFLOW_UI}/get-artifact?path={grids[-1]}&run_uuid={run_id}"
    text = f"- sample grid: [`{grids[-1]}`]({url}) of the MLflow run (or {where})"
    try:  # the picture itself, inline: it shows whether or not an MLflow server is up
        inline = _inline_png(tracking.artifact_bytes(run_id, grids[-1]))
    except Exception:  # an unreadable grid leaves the link alone
        return text
    return f"{text}\n\n![sample grid]({inline})"


def _inline_png(data: bytes, side: int = GRID_INLINE_PX) -> str:
    """An image as a PNG data URI, shrunk to at most `side` pixels a side (Prefect keeps artifacts in its
    database: a grid at full size would weigh on every page that lists them)."""
    import base64
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.thumbnail((side, side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        img.save(out, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _scores_table(rows: list[dict[str, Any]]) -> str:
    keys = ["fid", "kid_mean", "precision", "recall", "class_accuracy"]
    head = "| experiment | version | " + " | ".join(keys) + " | decision |\n|" + " --- |" * (len(keys) + 3) + "\n"
    lines = []
    for r in rows:
        ev, reg = r.get("eval", {}), r.get("eval", {}).get("registry", {})
        vals = " | ".join(f"{ev[k]:.4g}" if isinstance(ev.get(k), int | float) else "–" for k in keys)
        decision = ("promoted" if reg.get("promoted") else "candidate") if "version" in reg else r.get("error", "–")
        lines.append(f"| {r['name']} | {reg.get('version', '–')} | {vals} | {decision} |")
    return head + "\n".join(lines)


@flow(name="train-pipeline", timeout_seconds=RUN_TIMEOUT_S, log_prints=True)
def train_pipeline(
    overrides: dict[str, Any] | None = None, promote: bool = True, nproc: int | None = None
) -> dict[str, Any]:
    """Run the pipeline (prepare .. evaluate) as a DVC experiment with these param overrides; `nproc`: GPUs (train
    processes) of the run on the worker's host (train.nproc; None keeps params.yaml's)."""
    project = project_dir()
    if nproc is not None:
        overrides = {**(overrides or {}), "train.nproc": nproc}
    items = check_overrides(project, overrides)  # bad params: fail here, before any work, without retries
    if not promote:
        items.append("registry.promote=false")
    name = _exp_name("train")
    with concurrency(gpu_limit(), occupy=1, strict=False):
        result = run_experiment(str(project), name, items)
    link(result)
    reg = result["eval"].get("registry", {})
    decision = (
        f"**v{reg['version']} {'is the new champion' if reg['promoted'] else 'stays candidate'}**: {reg['reason']}"
        if "version" in reg
        else f"not registered ({reg.get('skipped', 'no registry step')})"
    )
    markdown = (
        f"# ganforge train-pipeline: `{name}`\n\n{_scores_table([result])}\n\n{decision}\n\n"
        f"- overrides: `{json.dumps(overrides or {})}`\n- DVC experiment: `{name}` (`dvc exp show`, "
        f"`dvc exp apply {name}`)\n- MLflow run: {_mlflow_link(result)}\n"
        f"{_sample_grid(result)}\n"
        f"- training: {result['train'].get('steps', '?')} steps, {result['train'].get('images_per_sec', 0):.0f} img/s "
        f"on {result['train'].get('device', '?')}\n"
    )
    create_markdown_artifact(markdown, key="train-pipeline", description=f"ganforge {name}")
    return {"experiment": name, "run_id": result["run_id"], "eval": result["eval"], "train": result["train"]}


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S, retry_condition_fn=_retry_unless_bad_params)
def queue_experiment(project: str, name: str, items: list[str], target: str = "evaluate") -> str:
    sets = [a for item in items for a in ("-S", item)]
    _run([sys.executable, "-m", "dvc", "exp", "run", "--queue", "-n", name, *sets, target], Path(project), 600)
    return name


@task
def run_queue(project: str, names: list[str], max_parallel: int, timeout: float) -> None:
    """Start `max_parallel` DVC queue workers and wait until none of `names` is queued or running."""
    path = Path(project)
    logger = get_run_logger()
    # The workers are daemons that outlive `dvc queue start` and keep its stdout/stderr: read through pipes, the
    # call would return only when the last worker exits. A file lets it return at once; the wait is the loop below.
    log = path / ".dvc" / "tmp" / "ganforge-queue-start.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "dvc", "queue", "start", "-j", str(max_parallel)]
    logger.info("$ %s", " ".join(cmd))
    with log.open("ab") as out:
        started = subprocess.run(cmd, cwd=path, env=_env(), stdout=out, stderr=subprocess.STDOUT, timeout=120)
    if started.returncode != 0:
        raise RuntimeError(f"dvc queue start failed (exit {started.returncode}): {log.read_text()[-500:]}")
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = subprocess.run(
            [sys.executable, "-m", "dvc", "queue", "status"], cwd=path, env=_env(), capture_output=True, text=True
        ).stdout
        busy = [
            ln
            for ln in status.splitlines()
            if ln.split()[1:2] and ln.split()[1] in names and re.search(r"\b(Queued|Running)\b", ln)
        ]
        if not busy:
            return
        time.sleep(5)
    for name in names:  # what each experiment printed, before it is killed
        logs = subprocess.run([sys.executable, "-m", "dvc", "queue", "logs", name], cwd=path, env=_env(),
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        for line in (logs.stdout + logs.stderr).splitlines()[-20:]:
            logger.info("%s | %s", name, line)
    subprocess.run([sys.executable, "-m", "dvc", "queue", "kill", *names], cwd=path, env=_env(), capture_output=True)
    raise TimeoutError(f"sweep: experiments still running after {timeout:.0f}s; killed. Queue:\n{status}")


@flow(name="sweep", timeout_seconds=RUN_TIMEOUT_S, log_prints=True)
def sweep(
    grid: dict[str, list[Any]],
    max_parallel: int = 1,
    samples: int | None = None,
    seed: int = 0,
    promote: bool = True,
) -> dict[str, Any]:
    """Queued DVC experiments over `grid` (all combinations, or `samples` of them at random), `max_parallel` at a
    time; none moves champion by itself; the best (lowest FID) is then promoted through the registry gate."""
    from ganforge import registry
    from ganforge.config import load_config

    project = project_dir()
    if not grid or any(not isinstance(v, list) or not v for v in grid.values()):
        raise BadParams("sweep: grid must map params paths to non-empty lists of values")
    if max_parallel < 1:
        raise BadParams("sweep: max_parallel must be at least 1")
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    if samples is not None and samples < len(combos):
        combos = random.Random(seed).sample(combos, samples)
    runs = [([*check_overrides(project, combo), "registry.promote=false"], combo) for combo in combos]
    base = _exp_name("sweep")
    names = [f"{base}-{i}" for i in range(len(runs))]
    for name, (items, _) in zip(names, runs, strict=True):
        queue_experiment(str(project), name, items)
    with concurrency(gpu_limit(), occupy=1, strict=False):
        run_queue(str(project), names, max_parallel, RUN_TIMEOUT_S)
    results = []
    for name, (_, combo) in zip(names, runs, strict=True):
        try:
            results.append({**read_experiment(project, name), "params": combo})
        except RuntimeError as exc:
            results.append({"name": name, "params": combo, "eval": {}, "error": f"failed: {exc}"})
    done = [
        r
        for r in results
        if isinstance(r["eval"].get("fid"), int | float) and "version" in r["eval"].get("registry", {})
    ]
    for r in results:
        if r.get("run_id"):
            link(r, {"ganforge.sweep": base})
    best, decision = None, "no experiment finished"
    if done:
        best = min(done, key=lambda r: r["eval"]["fid"])
        version = best["eval"]["registry"]["version"]
        if promote:
            cfg = load_config(project / "params.yaml")
            promoted, reason = registry.promote_through_gate(cfg.registry, version)
            verdict = "promoted to champion" if promoted else "not promoted"
            decision = f"best: `{best['name']}` (v{version}) — {verdict}: {reason}"
        else:
            decision = f"best: `{best['name']}` (v{version}); promote=false, champion unchanged"
    table = _scores_table(results)
    params_lines = "\n".join(f"- `{r['name']}`: `{json.dumps(r['params'])}`" for r in results)
    create_markdown_artifact(
        f"# ganforge sweep `{base}`\n\n{table}\n\n{decision}\n\n## Params\n{params_lines}\n",
        key="sweep",
        description=f"ganforge sweep {base}",
    )
    return {
        "sweep": base,
        "experiments": [{"name": r["name"], "params": r["params"], "fid": r["eval"].get("fid")} for r in results],
        "best": best["name"] if best else None,
        "decision": decision,
    }


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S, retry_condition_fn=_retry_unless_bad_params)
def library_build(project: str, items: list[str]) -> dict[str, Any]:
    """`dvc repro features` (the prepared data and the classifier the scores need, from DVC's cache when an
    experiment made them), then `ganforge library build`."""
    _run([sys.executable, "-m", "dvc", "repro", "features"], Path(project), RUN_TIMEOUT_S)
    sets = [a for item in items for a in ("--set", item)]
    _run([sys.executable, "-m", "ganforge", "library", "build", "-q", *sets], Path(project), RUN_TIMEOUT_S)
    return json.loads((Path(project) / "metrics" / "library.json").read_text())


@flow(name="build-library", timeout_seconds=RUN_TIMEOUT_S, log_prints=True)
def build_library(model: str | int = "champion", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add to the project's asset library from a registered version (`champion`, `candidate`, a number) or
    `checkpoint`."""
    project = project_dir()
    items = check_overrides(project, {**(overrides or {}), "library.model": str(model)})
    with concurrency(gpu_limit(), occupy=1, strict=False):
        metrics = library_build(str(project), items)
    keys = ["requested", "generated", "rejected_quality", "near_copies", "duplicates", "already_present", "accepted"]
    table = (
        "| "
        + " | ".join(keys)
        + " |\n|"
        + " --- |" * len(keys)
        + "\n| "
        + " | ".join(str(metrics[k]) for k in keys)
        + " |"
    )
    gallery = project / "library" / "index.html"
    create_markdown_artifact(
        f"# ganforge build-library from `{metrics['protocol']['source']}`\n\n{table}\n\n"
        f"- {metrics['catalog_assets']} assets in the catalog; {metrics['images_per_second']:.0f} img/s\n"
        f"- gallery: `{gallery}` ({gallery.as_uri()})\n- MLflow: {metrics.get('mlflow', '-')}\n",
        key="build-library",
        description="ganforge library build",
    )
    return metrics
