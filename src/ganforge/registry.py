"""The MLflow model registry: log the sampler, register candidates, gate promotion to `champion`, roll back.

Part of the tracking layer (mlflow is imported lazily, the store is `tracking.tracking_uri()`).

State kept in the registry itself, so that a stage skipped by DVC's run cache leaves nothing half done:
- version tags `metric.<name>` (what the gate compares), `protocol.<key>` (how its FID was measured: FIDs are
  compared only under the same protocol), `gate.decision` (promoted/rejected), `gate.reason`,
  `ganforge.checkpoint_sha256` (the weights behind the version), `champion.reason` (why it last became champion);
- aliases `candidate` (the last evaluated version) and `champion` (what consumers load);
- registered-model tag `ganforge.champion_history`: JSON list of past champions, the current one last,
  so that `rollback` goes back one step, then another.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganforge.config import Config, GateConfig, RegistryConfig
from ganforge.errors import GanforgeError
from ganforge.models import ModelSpec
from ganforge.paths import Paths, sha256_file
from ganforge.tracking import TrainRun, evaluation_run_id, mlflow_client, tracking_uri

CHAMPION, CANDIDATE = "champion", "candidate"
METRIC_TAG = "metric."
PROTOCOL_TAG = "protocol."
# What makes two FIDs comparable: the same feature space (extractor and its weights), the same real reference
# (split, its size, resolution) and as many samples drawn the same way. Anything else differing is noise.
FID_PROTOCOL = ("kind", "extractor", "weights_sha256", "resolution", "split", "n_real", "n_fake", "truncation")
SHA_TAG = "ganforge.checkpoint_sha256"
HISTORY_TAG = "ganforge.champion_history"
HISTORY_MAX = 200
LISTED_METRICS = ("fid", "class_accuracy", "precision", "recall")


@dataclass(frozen=True)
class Version:
    """A registered version of a ganforge generator."""

    name: str
    version: int
    run_id: str
    created: bool  # False when an existing version of the same run (and weights) was reused

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


# ---------------------------------------------------------------------------------------------- logging


def log_generator(
    run_id: str, checkpoint_path: Path, artifact_name: str = "generator", *, checkpoint_sha256: str | None = None
) -> str:
    """Log the checkpoint's EMA generator as a pyfunc sampler (ganforge.serving) of run `run_id`; its model URI."""
    from ganforge.training import checkpoint

    state = checkpoint.load(checkpoint_path)
    client = mlflow_client()
    run = _get_run(client, run_id)
    # The logged model belongs to the run's experiment (left to itself, mlflow may pick the default one).
    logged = client.create_logged_model(
        run.info.experiment_id,
        name=artifact_name,
        source_run_id=run_id,
        tags={SHA_TAG: checkpoint_sha256 or sha256_file(checkpoint_path)},
        params=dict(run.data.params),
    )
    try:
        return _log_sampler(logged.model_id, run_id, state, artifact_name)
    except BaseException:
        from mlflow.entities import LoggedModelStatus

        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise


def _log_sampler(model_id: str, run_id: str, state: dict[str, Any], artifact_name: str) -> str:
    import mlflow
    from mlflow.models import Model

    from ganforge import serving

    spec = state["spec"]
    with tempfile.TemporaryDirectory(prefix="ganforge-model-") as tmp, _fluent_store():
        artifacts = serving.write_artifacts(state, Path(tmp) / "artifacts")
        code = Path(tmp) / "code" / "ganforge"
        shutil.copytree(Path(__file__).parent, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        entry = Path(tmp) / "sampler.py"
        translator = ModelSpec.from_dict(spec).task == "translate"  # a translator takes images, not seeds
        entry.write_text(_TRANSLATOR_ENTRY if translator else _ENTRY)
        info = Model.log(  # = mlflow.pyfunc.log_model, for a given run rather than the (thread-local) active one
            name=artifact_name,
            artifact_path=None,
            flavor=mlflow.pyfunc,
            flavor_name="pyfunc.ModelFromCode",
            run_id=run_id,
            model_id=model_id,
            python_model=str(entry),  # models from code: loading unpickles nothing
            artifacts=artifacts,
            code_paths=[str(code)],
            signature=None
            if translator
            else serving.signature(spec["channels"], spec["resolution"], int(spec.get("frames") or 0)),
            input_example=None if translator else serving.input_example(spec["num_classes"]),
            pip_requirements=_requirements(),
        )
    return info.model_uri


_ENTRY = """\
\"\"\"MLflow models-from-code entry point of a ganforge generator: the sampler class lives in code/ganforge.\"\"\"

import mlflow

from ganforge.serving import GeneratorSampler

mlflow.models.set_model(GeneratorSampler())
"""
_TRANSLATOR_ENTRY = """\
\"\"\"MLflow models-from-code entry point of a ganforge translator: the translator class lives in code/ganforge.\"\"\"

import mlflow

from ganforge.serving import ImageTranslator

mlflow.models.set_model(ImageTranslator())
"""


def _requirements() -> list[str]:
    """Pinned from this interpreter: no requirement inference (it would run pip, and reach for the network)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("mlflow", "torch", "numpy", "pandas"):
        try:
            out.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            out.append(dist)
    return out


@contextmanager
def _fluent_store() -> Iterator[None]:
    """Point mlflow's module-level store at ours while logging; restore it, MLFLOW_TRACKING_URI and sys.path after
    (checking the input example loads the model, which puts the model's temporary code dir on sys.path)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    saved_path = list(sys.path)
    from mlflow.tracking._model_registry import utils as registry_utils

    saved_global, saved_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    saved_registry, saved_registry_env = registry_utils._registry_uri, os.environ.get("MLFLOW_REGISTRY_URI")
    saved_bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = saved_bar or "false"  # a stage's log, not a terminal's
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_registry_uri(tracking_uri())  # else it is ./mlflow.db of the working directory (video/ pipeline)
    try:
        yield
    finally:
        sys.path[:] = saved_path
        mlflow.set_tracking_uri(saved_global)
        registry_utils._registry_uri = saved_registry
        if saved_registry_env is None:
            os.environ.pop("MLFLOW_REGISTRY_URI", None)
        else:
            os.environ["MLFLOW_REGISTRY_URI"] = saved_registry_env
        if saved_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env
        if saved_bar is None:
            del os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"]


# --------------------------------------------------------------------------------------------- register


def register_candidate(
    cfg: RegistryConfig,
    run_id: str,
    model_uri: str,
    metrics: dict[str, float],
    *,
    checkpoint_sha256: str | None = None,
    protocol: dict[str, Any] | None = None,
) -> Version:
    """Register `model_uri` as a version of `cfg.model_name` with alias `candidate` and the metrics as tags.

    Idempotent per run: an existing version of `run_id` is reused (with `checkpoint_sha256`, only one holding
    the same weights: a resumed training that changed the weights under the same run gets a new version).
    """
    client = mlflow_client()
    name = cfg.model_name
    _ensure_model(client, name)
    existing = _version_of_run(client, name, run_id, checkpoint_sha256)
    if existing is None:
        tags = {SHA_TAG: checkpoint_sha256} if checkpoint_sha256 else None
        with _fluent_store():  # the registry store looks the logged model up through mlflow's global store
            mv = client.create_model_version(
                name, source=model_uri, run_id=run_id, tags=tags, model_id=_model_id(model_uri), await_creation_for=60
            )
        version = Version(name, int(mv.version), run_id, created=True)
    else:
        version = Version(name, int(existing.version), run_id, created=False)
        kept = {METRIC_TAG + k for k in metrics} | {PROTOCOL_TAG + k for k in fid_protocol(protocol or {})}
        for key in existing.tags:  # the version's metric and protocol tags are its latest evaluation, nothing older
            if key.startswith((METRIC_TAG, PROTOCOL_TAG)) and key not in kept:
                client.delete_model_version_tag(name, str(version.version), key)
    for key, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            client.set_model_version_tag(name, str(version.version), METRIC_TAG + key, repr(float(value)))
    for key, value in fid_protocol(protocol or {}).items():
        client.set_model_version_tag(name, str(version.version), PROTOCOL_TAG + key, value)
    client.set_registered_model_alias(name, CANDIDATE, str(version.version))
    return version


def fid_protocol(protocol: dict[str, Any]) -> dict[str, str]:
    """The keys of an evaluation's protocol that make its FID comparable with another's (FID_PROTOCOL), as text."""
    return {k: str(protocol[k]) for k in FID_PROTOCOL if k in protocol}


def protocol_difference(new: dict[str, str], champion: dict[str, str]) -> str | None:
    """Why two FIDs cannot be compared (the protocol keys that differ), or None when they can."""
    if not champion and new:
        return "the champion has no recorded protocol (evaluated before ganforge recorded it)"
    differ = [f"{k} {champion.get(k, '-')} vs {new.get(k, '-')}" for k in FID_PROTOCOL if champion.get(k) != new.get(k)]
    return "the protocols differ: " + ", ".join(differ) + " (champion's vs this one's)" if differ else None


def gate_decision(
    new: dict[str, float],
    champion: dict[str, float] | None,
    gate: GateConfig,
    protocols: tuple[dict[str, str], dict[str, str]] = ({}, {}),
) -> tuple[bool, str]:
    """(promote?, why). Promote when every bound holds and, with a champion, fid < champion's fid - fid_margin
    under the same protocol (`protocols`: this version's and the champion's FID_PROTOCOL). A version that fails a
    bound never becomes champion, first or not."""
    failed = [f"{m} missing (min {lo:g})" for m, lo in gate.min.items() if m not in new]
    failed += [f"{m} {new[m]:.4g} < min {lo:g}" for m, lo in gate.min.items() if m in new and not new[m] >= lo]
    failed += [f"{m} missing (max {hi:g})" for m, hi in gate.max.items() if m not in new]
    failed += [f"{m} {new[m]:.4g} > max {hi:g}" for m, hi in gate.max.items() if m in new and not new[m] <= hi]
    bounds = "bounds failed: " + ", ".join(failed) if failed else "all bounds hold"
    if champion is None:
        if failed:
            return False, f"first version, but {bounds}: there is no champion until a version passes"
        return True, f"first version (no champion yet): becomes champion; {bounds}"
    fid, best = new.get("fid"), champion.get("fid")
    differ = protocol_difference(*protocols)
    if differ is not None:
        return False, (
            f"cannot compare fid with the champion's: {differ}; re-evaluate under one protocol, or promote by hand "
            f"(ganforge registry promote VERSION); {bounds}"
        )
    if fid is None or not math.isfinite(fid):
        return False, f"no finite fid to compare (got {fid}); {bounds}"
    if best is None or not math.isfinite(best):
        better, vs = True, "champion has no finite fid"
    else:
        better = fid < best - gate.fid_margin
        op = "<" if better else ">="
        vs = f"fid {fid:.4g} {op} champion's {best:.4g} - margin {gate.fid_margin:g}"
    if better and not failed:
        return True, f"{vs}; {bounds}"
    return False, f"{vs}; {bounds}"


def _judge(client: Any, cfg: RegistryConfig, number: int, champ: int | None) -> tuple[bool, str]:
    """The gate on registered version `number` against champion `champ`, from their metric and protocol tags."""
    tags = client.get_model_version(cfg.model_name, str(number)).tags
    if champ is None:
        return gate_decision(_metrics(tags), None, cfg.gate)
    champ_tags = client.get_model_version(cfg.model_name, str(champ)).tags
    protocols = (_protocol(tags), _protocol(champ_tags))
    return gate_decision(_metrics(tags), _metrics(champ_tags), cfg.gate, protocols)


def evaluate_and_register(
    cfg: RegistryConfig,
    run_id: str,
    checkpoint_path: Path,
    metrics: dict[str, float],
    protocol: dict[str, Any] | None = None,
) -> dict:
    """The evaluate stage's registry step: log (once per run and weights), register, gate, maybe promote.

    Returns {"model_name", "version", "model_uri", "promoted", "reason", "champion"} for metrics/eval.json.
    """
    checkpoint_path = Path(checkpoint_path)
    if not checkpoint_path.exists():
        raise GanforgeError(f"{checkpoint_path}: no checkpoint (run `ganforge train` first)")
    client = mlflow_client()
    name = cfg.model_name
    _get_run(client, run_id)
    sha = sha256_file(checkpoint_path)
    existing = _version_of_run(client, name, run_id, sha)  # the same run and weights: no second model logged
    model_uri = (
        existing.source if existing is not None else log_generator(run_id, checkpoint_path, checkpoint_sha256=sha)
    )
    version = register_candidate(cfg, run_id, model_uri, metrics, checkpoint_sha256=sha, protocol=protocol)
    champ = _champion(client, name)
    if champ == version.version:
        promoted, reason = True, f"version {champ} is already the champion"
    else:
        promoted, reason = _judge(client, cfg, version.version, champ)
        if promoted and not cfg.promote:
            promoted, reason = False, f"the gate passes ({reason}), but registry.promote is false"
        if promoted:
            _set_champion(client, name, version.version, reason)
            champ = version.version
    v = str(version.version)
    client.set_model_version_tag(name, v, "gate.decision", "promoted" if promoted else "rejected")
    client.set_model_version_tag(name, v, "gate.reason", reason)
    return {
        "model_name": name,
        "version": version.version,
        "model_uri": version.uri,
        "promoted": promoted,
        "reason": reason,
        "champion": champ,
    }


def record_evaluation(
    cfg: Config, paths: Paths, scores: dict[str, float], raw: dict[str, float] | None, protocol: dict[str, Any]
) -> dict[str, Any]:
    """The evaluate stage's record: scores (metrics) and protocol (tags) on the train run, then the registry step
    (`evaluate_and_register`). Returns {"run_id", **that step's decision}."""
    client = mlflow_client()
    run_id = evaluation_run_id(client, paths.mlflow_run, cfg)
    run = TrainRun(client, run_id)
    step = int(protocol.get("checkpoint_step", 0))
    run.log_metrics(step, {f"eval.{k}": v for k, v in scores.items()})
    if raw:
        run.log_metrics(step, {f"eval_raw.{k}": v for k, v in raw.items()})
    for k, v in protocol.items():
        client.set_tag(run_id, f"eval.protocol.{k}", str(v))
    decision = evaluate_and_register(cfg.registry, run_id, paths.checkpoint, scores, protocol)
    return {"run_id": run_id, **decision}


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class FetchedVersion:
    """A registered version's sampler artifacts, downloaded: generator.pt, spec.json (and discriminator.pt when the
    version was logged with it)."""

    name: str
    version: int
    run_id: str
    checkpoint_sha256: str | None
    files: dict[str, Path]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def fetch_version(name: str, ref: str, dest: Path) -> FetchedVersion:
    """Download version `ref` of `name` (a number, or an alias such as champion) into `dest`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow_client()
    model = _get_model(client, name)
    if str(ref).isdigit():
        mv = client.get_model_version(name, str(_version_number(client, name, ref)))
    else:
        try:
            mv = client.get_model_version_by_alias(name, ref)
        except MlflowException as exc:
            if not (_not_found(exc) or getattr(exc, "error_code", None) == "INVALID_PARAMETER_VALUE"):
                raise
            aliases = sorted(model.aliases or {})
            if ref == CHAMPION:
                raise GanforgeError(_no_champion(client, name)) from None
            raise GanforgeError(
                f"model {name!r} has no alias {ref!r} (aliases: {aliases}); run `ganforge evaluate`, or give a "
                "version number or `checkpoint`"
            ) from None
    with _fluent_store():
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(dest))
        )
    files = {}
    for stem in ("generator", "discriminator", "spec"):
        found = sorted(local.rglob(f"{stem}.{'json' if stem == 'spec' else 'pt'}"))
        if found:
            files[stem] = found[0]
    if "generator" not in files or "spec" not in files:
        raise GanforgeError(f"models:/{name}/{mv.version} is not a ganforge sampler (no generator.pt/spec.json)")
    return FetchedVersion(name, int(mv.version), mv.run_id, mv.tags.get(SHA_TAG), files)


# ------------------------------------------------------------------------------------------- for people


def list_versions(name: str) -> list[dict[str, Any]]:
    """Every live version of `name`, oldest first, with its aliases, metrics and gate decision."""
    client = mlflow_client()
    model = _get_model(client, name)
    aliases: dict[int, list[str]] = {}
    for alias, ver in (model.aliases or {}).items():
        aliases.setdefault(int(ver), []).append(alias)
    rows = []
    for mv in sorted(client.search_model_versions(f"name = '{name}'"), key=lambda m: int(m.version)):
        metrics = _metrics(mv.tags)
        created = dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=dt.UTC)
        rows.append(
            {
                "version": int(mv.version),
                "run_id": mv.run_id,
                "aliases": sorted(aliases.get(int(mv.version), [])),
                "created": created.isoformat(timespec="seconds"),
                **{m: metrics.get(m) for m in LISTED_METRICS},
                "gate": mv.tags.get("gate.decision"),
                "gate_reason": mv.tags.get("gate.reason"),
                "champion_reason": mv.tags.get("champion.reason"),
                "metrics": metrics,
            }
        )
    return rows


def promote_through_gate(cfg: RegistryConfig, version: int) -> tuple[bool, str]:
    """Judge an already registered version against the current champion with the gate (its `metric.*` tags)
    and promote it when it passes: how a sweep promotes its best run. Returns (promoted, why)."""
    client = mlflow_client()
    name = cfg.model_name
    _get_model(client, name)
    number = _version_number(client, name, version)
    champ = _champion(client, name)
    if champ == number:
        return True, f"version {number} is already the champion"
    promoted, reason = _judge(client, cfg, number, champ)
    if promoted:
        _set_champion(client, name, number, reason)
    client.set_model_version_tag(name, str(number), "gate.decision", "promoted" if promoted else "rejected")
    client.set_model_version_tag(name, str(number), "gate.reason", reason)
    return promoted, reason


def promote(name: str, version: int, reason: str = "manual") -> None:
    """Make `version` the champion (by hand: no gate); the previous champion is remembered for rollback."""
    client = mlflow_client()
    _get_model(client, name)
    number = _version_number(client, name, version)
    if _champion(client, name) != number:
        _set_champion(client, name, number, reason)


def rollback(name: str) -> int:
    """Move `champion` back to the previous champion that still exists; return its version number."""
    client = mlflow_client()
    _get_model(client, name)
    current = _champion(client, name)
    history = _history(client, name)
    while history and (history[-1] == current or not _exists(client, name, history[-1])):
        history.pop()
    if not history:
        raise GanforgeError(f"model {name!r}: no previous champion to roll back to")
    previous = history[-1]
    client.set_registered_model_alias(name, CHAMPION, str(previous))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(name, str(previous), "champion.reason", f"rollback from version {current}")
    return previous


# ------------------------------------------------------------------------------------------------ inner


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _get_run(client: Any, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if _not_found(exc):
            raise GanforgeError(f"MLflow run {run_id!r} is not in the store {tracking_uri()}") from None
        raise


def _get_model(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if _not_found(exc):
            known = sorted(m.name for m in client.search_registered_models(max_results=1000))
            raise GanforgeError(f"no registered model {name!r} in {tracking_uri()} (known: {known})") from None
        raise


def _ensure_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if not _not_found(exc):
            raise
        client.create_registered_model(name, description="ganforge generator (pyfunc sampler: ganforge.serving)")


def _exists(client: Any, name: str, version: int) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        if _not_found(exc):
            return False
        raise
    return True


def _version_number(client: Any, name: str, version: int | str) -> int:
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise GanforgeError(f"model {name!r}: version must be a number, got {version!r}") from None
    if not _exists(client, name, number):
        live = sorted(int(mv.version) for mv in client.search_model_versions(f"name = '{name}'"))
        raise GanforgeError(f"model {name!r} has no version {number} (versions: {live})")
    return number


def _version_of_run(client: Any, name: str, run_id: str, sha: str | None) -> Any | None:
    """The oldest live version registered from `run_id` (and holding weights `sha`, when given)."""
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    found = [mv for mv in found if sha is None or mv.tags.get(SHA_TAG) in (sha, None)]
    return min(found, key=lambda mv: int(mv.version), default=None)


def _model_id(model_uri: str) -> str | None:
    rest = model_uri.removeprefix("models:/")
    return rest if rest != model_uri and rest.startswith("m-") and "/" not in rest else None


def _no_champion(client: Any, name: str) -> str:
    """One line: model `name` has no champion, why (the candidate's gate reason), and how to make one."""
    why = ""
    with suppress(Exception):  # no candidate either: nothing evaluated yet
        mv = client.get_model_version_by_alias(name, CANDIDATE)
        why = (
            f"; candidate v{mv.version} was {mv.tags.get('gate.decision', 'not judged')} ({mv.tags.get('gate.reason')})"
        )
    if not why:
        return f"model {name!r} has no champion: no version is evaluated yet; run `ganforge evaluate`"
    return (
        f"model {name!r} has no champion: no version has passed the gate{why}; train longer and evaluate, promote "
        "one by hand (ganforge registry promote VERSION), or build from --model candidate, a version or checkpoint"
    )


def _protocol(tags: dict[str, str]) -> dict[str, str]:
    return {k[len(PROTOCOL_TAG) :]: v for k, v in tags.items() if k.startswith(PROTOCOL_TAG)}


def _metrics(tags: dict[str, str]) -> dict[str, float]:
    out = {}
    for key, value in tags.items():
        if key.startswith(METRIC_TAG):
            with suppress(ValueError):  # a tag edited by hand is not a number the gate can use
                out[key[len(METRIC_TAG) :]] = float(value)
    return out


def _champion(client: Any, name: str) -> int | None:
    """The champion's version number; None when there is none (an alias left on a missing version is removed)."""
    from mlflow.exceptions import MlflowException

    alias = (client.get_registered_model(name).aliases or {}).get(CHAMPION)
    if alias is None:
        return None
    if _exists(client, name, int(alias)):
        return int(alias)
    try:
        client.delete_registered_model_alias(name, CHAMPION)
    except MlflowException as exc:
        if not _not_found(exc):
            raise
    return None


def _history(client: Any, name: str) -> list[int]:
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG)
    try:
        return [int(v) for v in json.loads(raw)] if raw else []
    except (ValueError, TypeError):
        return []


def _set_champion(client: Any, name: str, version: int, reason: str) -> None:
    history = _history(client, name)
    current = _champion(client, name)
    for step in (current, version):  # the current champion too, should it have been set by hand
        if step is not None and (not history or history[-1] != step):
            history.append(step)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_MAX:]))
    client.set_model_version_tag(name, str(version), "champion.reason", reason)
