"""`ganforge translate`: restyle library assets or an image folder with a translator, into the library.

The translator is `translate.model`: `checkpoint` (`translate.checkpoint`), or an alias or version of
`registry.model_name` (champion, candidate, 3). Its inputs are `translate.input`: `library` (the image assets of
the library, optionally only `translate.classes`), another library folder (one with a catalog.parquet), or a
folder of image files (decoded as `prepare` decodes them; a file that cannot be is reported and skipped). Each
image is normalised as the translator's training data was and translated into `translate.to` (a domain name).

Every result is a library asset of kind `translation` (translations/<domain>/<id>.png) whose row names its
parent (the asset id, or the source file's path), the parent's file hash and image (`parent_path`: the parent
asset's file, or a normalised copy under translations/sources/), the target domain and the translator (model
name, version and weights sha, or the checkpoint). Its address is (translator weights, parent hash, domain):
running the same translation again adds nothing. Files are written before their rows, the catalog flushed
every FLUSH_EVERY rows and on the way out, the gallery rewritten at the end, all under the library's lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganforge.assets import catalog, scoring
from ganforge.assets.writer import FLUSH_EVERY, Catalog, save_png
from ganforge.config import Config, DataConfig
from ganforge.data.decode import Skipped, normalise, open_image
from ganforge.errors import GanforgeError
from ganforge.models import ModelSpec, build_generator
from ganforge.paths import Paths, sha256_file, write_text_atomic
from ganforge.sampling import translate

NORMALISE = ("resolution", "channels", "fit", "resize_filter")  # how an input image is sized for the translator


@dataclass
class Translator:
    G: nn.Module  # EMA weights, eval mode
    spec: ModelSpec
    domains: list[str]
    data: DataConfig  # how its training images were normalised
    model_name: str
    model_version: str
    model_sha256: str
    run_id: str
    uri: str


def _not_a_translator(what: str, family: str) -> GanforgeError:
    return GanforgeError(
        f"translate: {what} is a generator ({family}: it samples from noise), not a translator: train "
        "train.model=cyclegan or stargan, or point translate.model/translate.checkpoint at one"
    )


def _data_config(config: dict[str, Any], spec: ModelSpec) -> DataConfig:
    """How the translator's inputs are sized: its spec's resolution and channels, the data's fit and filter."""
    data = (config or {}).get("data") or {}
    keys = {k: data[k] for k in NORMALISE if k in data}
    return DataConfig(**{**keys, "resolution": spec.resolution, "channels": spec.channels})


def open_translator(cfg: Config, paths: Paths) -> Translator:
    """`translate.model`: the checkpoint file, or a registered version; one line when it is not a translator."""
    tc = cfg.translate
    if tc.model == "checkpoint":
        from ganforge.training import checkpoint

        path = Path(tc.checkpoint)
        path = path if path.is_absolute() else paths.root / path
        state = checkpoint.load(path)
        spec = ModelSpec.from_dict(state["spec"])
        if spec.task != "translate" or "domains" not in state:
            raise _not_a_translator(str(tc.checkpoint), spec.model)
        G = build_generator(spec)
        G.load_state_dict(state["G_ema"])
        run_id = ""
        if paths.mlflow_run.exists() and path.resolve() == paths.checkpoint.resolve():
            run_id = str(json.loads(paths.mlflow_run.read_text()).get("run_id", ""))
        data = _data_config(state.get("config") or {}, spec)
        return Translator(G.eval().requires_grad_(False), spec, list(state["domains"]), data, "", "",
                          sha256_file(path), run_id, f"checkpoint:{tc.checkpoint}")  # fmt: skip
    if not cfg.tracking.enabled:
        raise GanforgeError(f"translate.model={tc.model} reads the MLflow registry, but tracking.enabled is false: "
                            "set translate.model=checkpoint")  # fmt: skip
    from ganforge import registry

    name = cfg.registry.model_name
    with tempfile.TemporaryDirectory(prefix="ganforge-translate-") as tmp:
        got = registry.fetch_version(name, str(tc.model), Path(tmp))
        meta = json.loads(got.files["spec"].read_text())
        spec = ModelSpec.from_dict(meta["spec"])
        if spec.task != "translate" or "domains" not in meta:
            raise _not_a_translator(f"models:/{name}/{got.version}", spec.model)
        G = build_generator(spec)
        G.load_state_dict(torch.load(got.files["generator"], map_location="cpu", weights_only=True))
        sha = got.checkpoint_sha256 or sha256_file(got.files["generator"])
    data = DataConfig(**meta.get("data", {}))
    return Translator(G.eval().requires_grad_(False), spec, list(meta["domains"]), data, name, str(got.version), sha,
                      got.run_id, got.uri)  # fmt: skip


@dataclass
class Parent:
    parent: str  # asset id, or the source file's path
    sha256: str  # of the parent's file
    image: np.ndarray  # uint8 [C, H, W], normalised for the translator
    path: str  # library-relative path of the parent's image ("" until a folder's copy is written)
    class_: int = -1
    class_name: str = ""
    seeds: list[int] = field(default_factory=list)


def _library_parents(library: Path, classes: list[str], data: DataConfig) -> list[Parent]:
    df = catalog.read(library / "catalog.parquet")
    rows = df[df["kind"] == "image"]
    if classes:
        rows = rows[rows["class_name"].isin(classes) | rows["class"].astype(str).isin(classes)]
    out = []
    for r in rows.to_dict("records"):
        raw = (library / r["path"]).read_bytes()
        image = normalise(open_image(raw, data.resolution), data)
        name = r["class_name"] if isinstance(r["class_name"], str) else ""
        out.append(Parent(str(r["asset_id"]), hashlib.sha256(raw).hexdigest(), image, str(r["path"]), int(r["class"]),
                          name, [int(v) for v in r["seeds"]]))  # fmt: skip
    return out


def _folder_parents(folder: Path, data: DataConfig) -> tuple[list[Parent], dict[str, int]]:
    out, skipped = [], {}
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = str(f.relative_to(folder))
        try:
            raw = f.read_bytes()
            image = normalise(open_image(raw, data.resolution), data)
        except Skipped as exc:
            skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
            continue
        except OSError as exc:
            why = f"unreadable: {exc.strerror or exc}"
            skipped[why] = skipped.get(why, 0) + 1
            continue
        out.append(Parent(str(folder / rel), hashlib.sha256(raw).hexdigest(), image, ""))
    return out, skipped


def _slug(domain: str, index: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "", domain).strip(".") or f"domain{index}"


@dataclass(frozen=True)
class TranslateSummary:
    added: int
    already_present: int
    skipped: dict[str, int]
    domain: str
    translator: str
    catalog: Path
    gallery: Path
    seconds: float

    def line(self) -> str:
        bad = sum(self.skipped.values())
        why = "; ".join(f"{n} {r}" for r, n in sorted(self.skipped.items()))
        return (
            f"translate: {self.added} new translations into {self.domain} ({self.already_present} already present"
            + (f", {bad} input files skipped: {why}" if bad else "")
            + f") by {self.translator} in {self.seconds:.1f}s -> {self.catalog}; gallery {self.gallery}"
        )


def translate_assets(cfg: Config, paths: Paths, progress: bool = True) -> TranslateSummary:
    """Run `ganforge translate` (see the module doc); write metrics/translate.json."""
    from ganforge.assets.gallery import write_gallery

    tc = cfg.translate
    t0 = time.perf_counter()
    tr = open_translator(cfg, paths)
    if tc.to is None:
        raise GanforgeError(f"translate.to: name the target domain ({', '.join(tr.domains)})")
    if tc.to not in tr.domains:
        known = ", ".join(tr.domains)
        raise GanforgeError(f"translate.to {tc.to!r} is not a domain of {tr.uri} (its domains: {known})")
    target = tr.domains.index(tc.to)
    source = Path(tc.input) if tc.input != "library" else paths.library
    source = source if source.is_absolute() else paths.root / source
    if not source.is_dir():
        raise GanforgeError(f"translate.input {tc.input!r}: no such folder ({source})")
    from_library = (source / "catalog.parquet").exists()
    library = source if from_library and tc.input != "library" else paths.library
    skipped: dict[str, int] = {}
    with catalog.locked(library):
        lib_paths = Paths(root=paths.root, library_dir=library)
        frame, _, _ = catalog.reconcile(catalog.read(lib_paths.catalog), library)
        if from_library:
            parents = _library_parents(source, tc.classes, tr.data)
        elif tc.input == "library":
            raise GanforgeError(f"translate.input library: {lib_paths.catalog} does not exist yet; build the library "
                                "(`ganforge library build`) or set translate.input to an image folder")  # fmt: skip
        else:
            parents, skipped = _folder_parents(source, tr.data)
        if not parents:
            raise GanforgeError(f"translate: nothing to translate in {source}" + (f" ({skipped})" if skipped else ""))
        done = frame[frame["kind"] == "translation"]
        known = {(str(r.model_sha256), str(r.parent_sha256), str(r.domain)) for r in done.itertuples(index=False)}
        todo = [p for p in parents if (tr.model_sha256, p.sha256, tc.to) not in known]
        build_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
        cat = Catalog(lib_paths, frame, build_id)
        folder = _slug(tc.to, target)
        try:
            for i in range(0, len(todo), FLUSH_EVERY):
                batch = todo[i : i + FLUSH_EVERY]
                out = translate(tr.G, torch.from_numpy(np.stack([p.image for p in batch])), target).numpy()
                for p, img in zip(batch, out, strict=True):
                    if not p.path:  # a folder's file: keep the image that was translated, beside the result
                        p.path = f"translations/sources/{scoring.content_id('source', p.image)}.png"
                        save_png(p.image, library / p.path)
                    asset_id = scoring.content_id("translation", img, tr.model_sha256, tc.to)
                    rel = f"translations/{folder}/{asset_id}.png"
                    save_png(img, library / rel)
                    cat.add({
                        "asset_id": asset_id, "kind": "translation", "path": rel, "preview": "", "poster": "",
                        "width": img.shape[2], "height": img.shape[1], "frames": 1, "fps": math.nan,
                        "seeds": p.seeds, "class": p.class_, "classes": [], "class_name": p.class_name,
                        "truncation": math.nan, "model_name": tr.model_name, "model_version": tr.model_version,
                        "model_sha256": tr.model_sha256, "run_id": tr.run_id, "source": tr.uri,
                        "realism": math.nan, "d_score": math.nan, "nearest_real_feature": math.nan,
                        "nearest_real_pixel": math.nan, "nearest_real_index": -1,
                        "phash": scoring.encode_hashes([scoring.phash(img)]), "parent": p.parent,
                        "parent_sha256": p.sha256, "parent_path": p.path, "domain": tc.to,
                    })  # fmt: skip
        finally:
            cat.flush(final=True)
        final = cat.all()
        gallery = write_gallery(final, library, summary={"translated": len(todo), "into": tc.to, "by": tr.uri})
    summary = TranslateSummary(len(todo), len(parents) - len(todo), skipped, tc.to, tr.uri, lib_paths.catalog,
                               gallery, time.perf_counter() - t0)  # fmt: skip
    metrics = {"added": summary.added, "already_present": summary.already_present, "skipped": skipped,
               "domain": tc.to, "translator": tr.uri, "model_sha256": tr.model_sha256, "inputs": str(source),
               "catalog_assets": len(final), "seconds": summary.seconds}  # fmt: skip
    write_text_atomic(paths.metrics / "translate.json", json.dumps(metrics, indent=2) + "\n")
    return summary
