"""The generator a library build draws from, with its provenance: a registered version or a checkpoint file."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ganforge.config import Config
from ganforge.data.dataset import PreparedData
from ganforge.errors import GanforgeError
from ganforge.models import ModelSpec, build
from ganforge.paths import Paths, sha256_file
from ganforge.training import checkpoint


@dataclass
class Source:
    G: nn.Module  # EMA generator, eval mode
    D: nn.Module | None  # its discriminator (None for a registered version logged without one)
    spec: ModelSpec
    class_names: list[str]
    model_name: str  # registered model name ("" for a checkpoint file)
    model_version: str  # version number ("" for a checkpoint file)
    model_sha256: str  # the checkpoint's hash: part of every asset's address
    run_id: str  # the MLflow run that trained it ("" when unknown)
    uri: str  # models:/<name>/<version> or checkpoint:<path>

    def describe(self) -> str:
        return f"{self.uri} (weights {self.model_sha256[:12]})"


def _networks(spec: ModelSpec, g_state: dict, d_state: dict | None) -> tuple[nn.Module, nn.Module | None]:
    nets = build(spec)
    G, D = nets["G"], nets["D"]
    G.load_state_dict(g_state)
    G = G.eval().requires_grad_(False)
    if d_state is None:
        return G, None
    D.load_state_dict(d_state)
    return G, D.eval().requires_grad_(False)


def from_checkpoint(path: Path, paths: Paths, label: str | None = None) -> Source:
    """A checkpoint file; `label` names it in the provenance (default: the path as given)."""
    state = checkpoint.load(path)
    spec = ModelSpec.from_dict(state["spec"])
    G, D = _networks(spec, state["G_ema"], state["D"])
    run_id = ""
    if paths.mlflow_run.exists() and path.resolve() == paths.checkpoint.resolve():
        run_id = str(json.loads(paths.mlflow_run.read_text()).get("run_id", ""))
    sha = sha256_file(path)
    names = [str(n) for n in state.get("class_names") or []]
    return Source(G, D, spec, names, "", "", sha, run_id, f"checkpoint:{label or path}")


def from_registry(cfg: Config, paths: Paths) -> Source:
    from ganforge import registry

    name, ref = cfg.registry.model_name, cfg.library.model
    with tempfile.TemporaryDirectory(prefix="ganforge-library-") as tmp:
        got = registry.fetch_version(name, ref, Path(tmp))
        meta = json.loads(got.files["spec"].read_text())
        spec = ModelSpec.from_dict(meta["spec"])
        g_state = torch.load(got.files["generator"], map_location="cpu", weights_only=True)
        d_state = None
        if "discriminator" in got.files:
            d_state = torch.load(got.files["discriminator"], map_location="cpu", weights_only=True)
        elif (
            got.checkpoint_sha256
            and paths.checkpoint.exists()
            and sha256_file(paths.checkpoint) == got.checkpoint_sha256
        ):
            d_state = checkpoint.load(paths.checkpoint)["D"]  # an older version: its D from the same checkpoint
        sha = got.checkpoint_sha256 or sha256_file(got.files["generator"])
    G, D = _networks(spec, g_state, d_state)
    names = [str(n) for n in meta.get("class_names") or []]
    return Source(G, D, spec, names, name, str(got.version), sha, got.run_id, got.uri)


WHAT = {"image": "images", "video": "video clips"}


def check_data(src: Source, data: PreparedData) -> None:
    """One line when the prepared data is not what the generator makes: images vs clips, or another shape."""
    spec = src.spec
    if data.kind != spec.kind:
        article = "an" if spec.kind == "image" else "a"
        raise GanforgeError(
            f"library: {src.uri} is {article} {spec.kind} model ({spec.model}: it makes {WHAT[spec.kind]}) but "
            f"{data.out_dir} holds {WHAT.get(data.kind, data.kind)} (data.kind {data.kind}): prepare the data the "
            "model was trained on, or point library.model at a model of that kind"
        )
    want = (spec.resolution, spec.channels, spec.frames if spec.kind == "video" else None)
    have = (data.resolution, data.channels, data.frames)
    if want != have:

        def shape(r: int, c: int, t: int | None) -> str:
            return f"{r}x{r}x{c}" + ("" if t is None else f" x {t} frames")

        raise GanforgeError(
            f"library: {src.uri} makes {shape(*want)} {WHAT[spec.kind]} but {data.out_dir} holds {shape(*have)}: "
            "prepare the data the model was trained on"
        )


def open_source(cfg: Config, paths: Paths) -> Source:
    """`library.model`: "checkpoint" (library.checkpoint), else an alias or version of registry.model_name."""
    lc = cfg.library
    if lc.model == "checkpoint":
        path = Path(lc.checkpoint)
        # provenance names the file as configured (relative to the project root), wherever the root is
        return from_checkpoint(path if path.is_absolute() else paths.root / path, paths, lc.checkpoint)
    if not cfg.tracking.enabled:
        raise GanforgeError(
            f"library.model={lc.model} reads the MLflow registry, but tracking.enabled is false: "
            "set library.model=checkpoint to draw from library.checkpoint"
        )
    return from_registry(cfg, paths)
