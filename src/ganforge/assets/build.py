"""The `library` stage: draw candidates from a generator, score them, keep the good, new and unique ones,
write them with their provenance (catalog.parquet) and a static gallery (index.html).

Funnel per class (per build, in this order): `images / keep_fraction` candidates from seeds seed, seed+1, ...
-> keep the best `keep_fraction` by realism (or D), or those discriminator rejection sampling accepts
-> skip addresses already in the catalog (already_present) -> reject near-copies of training images (near_copies)
-> drop near-duplicates of library assets by pHash (duplicates) -> write (accepted).
Videos: latent walks and class morphs, each addressed by its keyframe seeds, classes and truncation.

A video generator (`spec.kind == "video"`) makes clips instead: `clips / keep_fraction` candidate seeds per class,
one clip per seed, through the same funnel, scored in the clip feature space (the features stage's clip classifier)
with the clip head of D, near-copies judged against the training clips (pixel RMSE over the whole clip), duplicates
by the pHashes of their first, middle and last frames; written as MP4 + animated WebP + PNG poster (kind `clip`).
For video generators `images`, `videos` and `morphs` do not apply; for image generators `clips` does not.

A build holds library/.lock; it writes each file atomically before its catalog row, appends the rows to the
catalog's journal every FLUSH_EVERY assets and rewrites the catalog whole on the way out (also on Ctrl-C), so a
killed build resumes where it stopped: its finished files are in the catalog, and files no row names are removed
when the next build starts. Near-duplicates are found through a multi-index hash table (`assets.hashindex`), so a
build's time per asset does not grow with the library.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ganforge import __version__, faults
from ganforge.assets import catalog, scoring
from ganforge.assets.sampling import morph, walk
from ganforge.assets.source import Source, check_data, open_source
from ganforge.assets.writer import Catalog, save_png
from ganforge.config import Config, LibraryConfig
from ganforge.data.dataset import KINDS as DATA_KINDS
from ganforge.data.dataset import PreparedData
from ganforge.errors import GanforgeError
from ganforge.paths import Paths, sha256_file, write_text_atomic
from ganforge.sampling import Sampler

VIDEO_SEED_OFFSET = 1 << 40  # video keyframe seeds live far from image seeds: no asset shares a latent by accident
VIDEO_CRF = 18


@dataclass
class Counts:
    requested: int = 0
    generated: int = 0
    rejected_quality: int = 0
    near_copies: int = 0
    duplicates: int = 0
    already_present: int = 0
    accepted: int = 0

    def add(self, other: Counts) -> None:
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)


@dataclass
class LibrarySummary:
    images: Counts
    videos: Counts
    metrics: dict[str, Any]
    gallery: str
    source: str
    clips: Counts = field(default_factory=Counts)  # video generators: their clips (images and videos stay 0)

    def line(self) -> str:
        i, v, m = self.images, self.videos, self.metrics
        if self.metrics.get("kind") == "video":
            c = self.clips
            return (
                f"library: {c.accepted} new clips from {self.source} ({c.generated} candidates: "
                f"{c.rejected_quality} below the quality cut, {c.near_copies} near-copies, {c.duplicates} duplicates, "
                f"{c.already_present} already there; {m['clips_per_second']:.1f} clips/s); "
                f"{m['catalog_assets']} assets in {m['catalog']} -> gallery {self.gallery}"
            )
        return (
            f"library: {i.accepted} new images, {v.accepted} new videos from {self.source} "
            f"({i.generated} candidates: {i.rejected_quality} below the quality cut, {i.near_copies + v.near_copies} "
            f"near-copies, {i.duplicates} duplicates, {i.already_present + v.already_present} already there; "
            f"{m['images_per_second']:.0f} img/s, {m['video_frames_per_second']:.0f} video frames/s); "
            f"{m['catalog_assets']} assets in {m['catalog']} -> gallery {self.gallery}"
        )


class Scorer:
    """Generates (`sampler`: uint8 images, or clips [N, C, T, H, W] from a video generator) and scores batches:
    evaluation features, realism, D logit (a video D's clip head), nearest-real."""

    def __init__(self, cfg: Config, paths: Paths, src: Source) -> None:
        from ganforge.metrics.extract import clip_extractor, extractor, reference_features

        data = PreparedData.open(paths.prepared, kinds=DATA_KINDS)
        check_data(src, data)
        self.src = src
        self.video = src.spec.kind == "video"
        if self.video:
            self.extract, self.protocol = clip_extractor(cfg.evaluate, paths)
        else:
            self.extract, self.protocol = extractor(cfg.evaluate, paths)
        train_x, _ = data.load("train")
        feats, self.reference_from_cache = reference_features(self.extract, self.protocol, paths, "train", train_x)
        self.real = scoring.RealSet.build(feats, train_x, cfg.library.k)
        self.train_x = train_x  # uint8: the nearest real image of each asset is written beside it, for the gallery
        self.real_key = sha256_file(data.out_dir / "manifest.parquet")[:12]
        self.batch = cfg.library.batch_size
        self.sampler = Sampler(src.G, src.spec, batch_size=self.batch)  # candidates and video frames, uint8
        self.seconds = 0.0  # generation + scoring time (throughput)

    @torch.inference_mode()
    def score(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Scores of uint8 images (or clips) x (y: class indices, or None)."""
        feats, _ = self.extract(x)
        cmp = scoring.compare(feats, x, self.real)
        if self.src.D is None:
            d = torch.full((len(x),), math.nan)
        else:
            judge = scoring.clip_logits if self.video else scoring.discriminator_logits
            d = torch.cat(
                [
                    judge(self.src.D, x[i : i + self.batch], None if y is None else y[i : i + self.batch])
                    for i in range(0, len(x), self.batch)
                ]
            )
        return {
            "realism": cmp.realism,
            "d_score": d.double(),
            "nearest_feature": cmp.nearest_feature,
            "nearest_index": cmp.nearest_index,
            "nearest_pixel": cmp.nearest_pixel,
        }


def _provenance(src: Source) -> dict[str, Any]:
    return {
        "model_name": src.model_name,
        "model_version": src.model_version,
        "model_sha256": src.model_sha256,
        "run_id": src.run_id,
        "source": src.uri,
    }


def _class_name(src: Source, c: int) -> str:
    if c < 0:
        return ""
    return src.class_names[c] if c < len(src.class_names) else str(c)


def _order(scores: dict[str, torch.Tensor], rank_by: str) -> list[int]:
    """Best first: by realism (then D) or by D (then realism); ties by seed (index)."""
    r = scores["realism"].tolist()
    d = [v if v == v else -math.inf for v in scores["d_score"].tolist()]  # no discriminator: NaN ranks last
    first, second = (d, r) if rank_by == "discriminator" else (r, d)
    keyed = [(-first[i], -second[i], i) for i in range(len(r))]
    return [i for *_, i in sorted(keyed)]


def _select(cfg: Config, scores: dict[str, torch.Tensor], seeds: list[int], c: int, want: int) -> list[int]:
    """Indices of the candidates that pass the quality step, in the order they are then considered."""
    lc = cfg.library
    if lc.selection == "top":
        return _order(scores, lc.rank_by)[:want]
    p = scoring.drs_accept_probability(scores["d_score"], lc.drs_percentile).tolist()
    accepted = [i for i, s in enumerate(seeds) if scoring.uniform("drs", s, c) < p[i]]
    return accepted[:want]


def _memorised(cfg: Config, real: scoring.RealSet, feature: float, pixel: float) -> bool:
    lc = cfg.library
    return feature < lc.memorised_feature * real.median_nn or pixel < lc.memorised_pixel


def _images(cfg: Config, paths: Paths, scorer: Scorer, cat: Catalog, bar: tqdm) -> Counts:
    lc, src = cfg.library, scorer.src
    counts = Counts()
    classes = list(range(src.spec.num_classes)) if src.spec.num_classes else [-1]
    n_cand = math.ceil(lc.images / lc.keep_fraction - 1e-9) if lc.images else 0
    seeds = list(range(lc.seed, lc.seed + n_cand))
    for c in classes:
        counts.requested += lc.images
        if not n_cand:
            continue
        t0 = time.perf_counter()
        parts: list[tuple[torch.Tensor, dict[str, torch.Tensor]]] = []
        for i in range(0, n_cand, lc.batch_size):
            chunk = seeds[i : i + lc.batch_size]
            y = None if c < 0 else torch.full((len(chunk),), c, dtype=torch.long)
            x = scorer.sampler.uint8(chunk, y, lc.truncation)
            parts.append((x, scorer.score(x, y)))
            bar.update(len(chunk))
        scorer.seconds += time.perf_counter() - t0
        x = torch.cat([p[0] for p in parts])
        scores = {k: torch.cat([p[1][k] for p in parts]) for k in parts[0][1]}
        _funnel(cfg, paths, scorer, cat, "image", c, seeds, x, scores, counts)
    return counts


def _clips(cfg: Config, paths: Paths, scorer: Scorer, cat: Catalog, bar: tqdm) -> tuple[Counts, float]:
    """A video generator's clips: the image funnel, one clip per seed (see the module docstring). Returns the
    counts and the seconds spent writing files (generation and scoring are in scorer.seconds).

    Candidates of all classes go through G and the scorers in shared batches (class-major, so a batch holds
    several classes when there are few candidates per class: 3D convolutions cost much per call on a CPU); each
    class's funnel runs as soon as all of its candidates are scored."""
    lc, spec = cfg.library, scorer.src.spec
    counts, write_seconds = Counts(), 0.0
    classes = list(range(spec.num_classes)) if spec.num_classes else [-1]
    n_cand = math.ceil(lc.clips / lc.keep_fraction - 1e-9) if lc.clips else 0
    seeds = list(range(lc.seed, lc.seed + n_cand))
    counts.requested = lc.clips * len(classes)
    pairs = [(c, s) for c in classes for s in seeds]  # class-major: each class is n_cand consecutive candidates
    todo = iter(classes)
    buf_x: torch.Tensor | None = None
    buf_s: dict[str, torch.Tensor] = {}
    for i in range(0, len(pairs), lc.batch_size):
        t0 = time.perf_counter()
        chunk = pairs[i : i + lc.batch_size]
        y = None if classes == [-1] else torch.tensor([c for c, _ in chunk], dtype=torch.long)
        x = scorer.sampler.uint8([s for _, s in chunk], y, lc.truncation)  # uint8 [B, C, T, H, W]
        sc = scorer.score(x, y)
        scorer.seconds += time.perf_counter() - t0
        bar.update(len(chunk))
        buf_x = x if buf_x is None else torch.cat([buf_x, x])
        buf_s = sc if not buf_s else {k: torch.cat([buf_s[k], v]) for k, v in sc.items()}
        while buf_x is not None and len(buf_x) >= n_cand:
            head = {k: v[:n_cand] for k, v in buf_s.items()}
            c = next(todo)
            write_seconds += _funnel(cfg, paths, scorer, cat, "clip", c, seeds, buf_x[:n_cand], head, counts)
            buf_x, buf_s = buf_x[n_cand:], {k: v[n_cand:] for k, v in buf_s.items()}
    return counts, write_seconds


def _funnel(
    cfg: Config,
    paths: Paths,
    scorer: Scorer,
    cat: Catalog,
    kind: str,
    c: int,
    seeds: list[int],
    x: torch.Tensor,
    scores: dict[str, torch.Tensor],
    counts: Counts,
) -> float:
    """The funnel of one class's candidates x (uint8 images [n, C, H, W] or clips [n, C, T, H, W]; seeds[i] made
    x[i]): select, skip present addresses, reject near-copies and pHash duplicates, write the rest with their
    catalog rows. Counts into `counts`; returns the seconds spent writing files."""
    lc, src = cfg.library, scorer.src
    write_seconds = 0.0
    counts.generated += len(x)
    chosen = _select(cfg, scores, seeds, c, lc.images if kind == "image" else lc.clips)
    counts.rejected_quality += len(x) - len(chosen)
    classes_key = [] if c < 0 else [c]
    prov = _provenance(src)
    for i in chosen:
        if catalog.address(src.model_sha256, kind, [seeds[i]], classes_key, lc.truncation) in cat.known:
            counts.already_present += 1
            continue
        near_f, near_p = float(scores["nearest_feature"][i]), float(scores["nearest_pixel"][i])
        near_i = int(scores["nearest_index"][i])
        if _memorised(cfg, scorer.real, near_f, near_p):
            counts.near_copies += 1
            continue
        item = x[i].numpy()
        hs = (scoring.phash(item),) if kind == "image" else scoring.clip_phash(item)
        if cat.duplicate(kind, hs):
            counts.duplicates += 1
            continue
        t1 = time.perf_counter()
        folder = "all" if c < 0 else f"{c:03d}"
        files = _write_image(item, folder, paths) if kind == "image" else _write_clip(item, folder, paths, lc)
        write_seconds += time.perf_counter() - t1
        cat.add(
            {
                **files,
                "kind": kind,
                "seeds": [seeds[i]],
                "class": c,
                "classes": classes_key,
                "class_name": _class_name(src, c),
                "truncation": lc.truncation,
                **prov,
                "realism": float(scores["realism"][i]),
                "d_score": float(scores["d_score"][i]),
                "nearest_real_feature": near_f,
                "nearest_real_pixel": near_p,
                "nearest_real_index": near_i,
                "nearest_real_path": _write_real(scorer, near_i, paths),
                "phash": scoring.encode_hashes(hs),
            }
        )
        counts.accepted += 1
        faults.reach("library.asset")
    return write_seconds


def _write_real(scorer: Scorer, index: int, paths: Paths) -> str:
    """real/<data key>/<index>.png: the training image (a clip's middle frame) nearest an asset, once per build's
    data, so the gallery can show the two side by side. The key is the prepared data's manifest hash."""
    rel = f"{catalog.REAL_DIR}/{scorer.real_key}/{index:07d}.png"
    if not (paths.library / rel).exists():
        x = scorer.train_x[index].numpy()
        save_png(x[:, x.shape[1] // 2] if x.ndim == 4 else x, paths.library / rel)
    return rel


def _write_image(img: np.ndarray, folder: str, paths: Paths) -> dict[str, Any]:
    """Write a uint8 image [C, H, W] as images/<folder>/<id>.png; its catalog file fields."""
    asset_id = scoring.content_id("image", img)
    rel = f"images/{folder}/{asset_id}.png"
    save_png(img, paths.library / rel)
    return {"asset_id": asset_id, "path": rel, "preview": "", "poster": "", "width": img.shape[2],
            "height": img.shape[1], "frames": 1, "fps": math.nan}  # fmt: skip


def _write_frames(kind: str, frames: np.ndarray, rel_dir: str, paths: Paths, lc: LibraryConfig) -> dict[str, Any]:
    """Write uint8 frames [T, H, W, C] as <rel_dir>/<id>.mp4 + .webp + .png poster; its catalog file fields."""
    from ganforge.assets.video import write_video

    asset_id = scoring.content_id(kind, frames, lc.fps, lc.video_size, VIDEO_CRF)
    rel = f"{rel_dir}/{asset_id}"
    lib = paths.library
    files = write_video(frames, lib / f"{rel}.mp4", lib / f"{rel}.webp", lib / f"{rel}.png", fps=lc.fps,
                        size=lc.video_size, crf=VIDEO_CRF, sweep=False)  # fmt: skip
    return {"asset_id": asset_id, "path": f"{rel}.mp4", "preview": f"{rel}.webp", "poster": f"{rel}.png",
            "width": files.width, "height": files.height, "frames": files.frames, "fps": float(files.fps)}  # fmt: skip


def _write_clip(clip: np.ndarray, folder: str, paths: Paths, lc: LibraryConfig) -> dict[str, Any]:
    """Write a uint8 clip [C, T, H, W] under clips/<folder>/."""
    frames = np.ascontiguousarray(np.transpose(clip, (1, 2, 3, 0)))  # [T, H, W, C]
    return _write_frames("clip", frames, f"clips/{folder}", paths, lc)


@dataclass(frozen=True)
class VideoPlan:
    kind: str  # latent_walk | class_morph
    seeds: list[int]
    classes: list[int]  # latent walk: [class] (or [] unconditional); class morph: the class sequence


def video_plans(cfg: Config, num_classes: int) -> Iterator[VideoPlan]:
    lc = cfg.library
    base = lc.seed + VIDEO_SEED_OFFSET
    for v in range(lc.videos):
        seeds = [base + v * lc.keyframes + k for k in range(lc.keyframes)]
        yield VideoPlan("latent_walk", seeds, [v % num_classes] if num_classes else [])
    if num_classes > 1:
        for m in range(lc.morphs):
            classes = [(m * lc.keyframes + k) % num_classes for k in range(lc.keyframes)]
            yield VideoPlan("class_morph", [base + (1 << 30) + m], classes)


def _frames(scorer: Scorer, plan: VideoPlan, cfg: Config) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 frames [T, C, H, W] of a plan, and the class labels D should judge them with."""
    lc, spec = cfg.library, scorer.src.spec
    keys = scorer.sampler.latents(plan.seeds, lc.truncation)
    if plan.kind == "latent_walk":
        z = walk(keys, lc.frames_per_key)
        y = torch.full((len(z),), plan.classes[0], dtype=torch.long) if plan.classes else None
        return scorer.sampler.decode(z, y, uint8=True), y
    weights = morph(plan.classes, spec.num_classes, lc.frames_per_key)
    frames = scorer.sampler.decode(keys.expand(len(weights), -1), weights, uint8=True)
    return frames, weights.argmax(dim=1)


def _videos(cfg: Config, paths: Paths, scorer: Scorer, cat: Catalog, bar: tqdm) -> tuple[Counts, int, float]:
    lc, src = cfg.library, scorer.src
    counts, frames_done, seconds = Counts(), 0, 0.0
    prov = _provenance(src)
    for plan in video_plans(cfg, src.spec.num_classes):
        counts.requested += 1
        if catalog.address(src.model_sha256, plan.kind, plan.seeds, plan.classes, lc.truncation) in cat.known:
            counts.already_present += 1
            bar.update(1)
            continue
        t0 = time.perf_counter()
        frames, y = _frames(scorer, plan, cfg)
        s = scorer.score(frames, y)
        counts.generated += 1
        near_f, near_p = float(s["nearest_feature"].min()), float(s["nearest_pixel"].min())
        if _memorised(cfg, scorer.real, near_f, near_p):
            counts.near_copies += 1
            bar.update(1)
            continue
        clip = frames.permute(0, 2, 3, 1).contiguous().numpy()
        files = _write_frames(plan.kind, clip, "videos", paths, lc)
        seconds += time.perf_counter() - t0
        frames_done += len(clip)
        poster = frames[len(frames) // 2].numpy()
        is_walk = plan.kind == "latent_walk"
        c = plan.classes[0] if is_walk and plan.classes else -1
        name = (
            _class_name(src, c)
            if is_walk
            else " > ".join(_class_name(src, k) for k in [*plan.classes, plan.classes[0]])
        )
        cat.add(
            {
                **files,
                "kind": plan.kind,
                "seeds": plan.seeds,
                "class": c,
                "classes": plan.classes,
                "class_name": name,
                "truncation": lc.truncation,
                **prov,
                "realism": float(s["realism"].mean()),
                "d_score": float(s["d_score"].mean()),
                "nearest_real_feature": near_f,
                "nearest_real_pixel": near_p,
                "nearest_real_index": int(s["nearest_index"][s["nearest_feature"].argmin()]),
                "phash": f"{scoring.phash(poster):016x}",
            }
        )
        counts.accepted += 1
        faults.reach("library.asset")
        bar.update(1)
    return counts, frames_done, seconds


def build_library(cfg: Config, paths: Paths, progress: bool = True) -> LibrarySummary:
    """Build (or extend) the library from `library.model`; write metrics/library.json; log it to MLflow."""
    from ganforge.assets.gallery import write_gallery

    lc = cfg.library
    t0 = time.perf_counter()
    with catalog.locked(paths.library):
        frame, dropped, removed = catalog.reconcile(catalog.read(paths.catalog), paths.library)
        src = open_source(cfg, paths)
        if src.spec.task == "translate":
            raise GanforgeError(
                f"library: {src.uri} is a translator ({src.spec.model}: it restyles images, it does not sample "
                "them): restyle the library with `ganforge translate`, and build it from a generator"
            )
        if src.D is None and (lc.selection == "drs" or lc.rank_by == "discriminator"):
            raise GanforgeError(
                f"library: {src.uri} was registered without its discriminator, which selection=drs and "
                "rank_by=discriminator need: use library.model=checkpoint, or selection top with rank_by realism"
            )
        scorer = Scorer(cfg, paths, src)
        build_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
        cat = Catalog(paths, frame, build_id, lc.dedupe_hamming)
        classes = max(1, src.spec.num_classes)
        images, videos, clips = Counts(), Counts(), Counts()
        video_frames, video_seconds = 0, 0.0
        if scorer.video:  # a video generator makes clips; images, videos and morphs do not apply
            n_cand = math.ceil(lc.clips / lc.keep_fraction - 1e-9) if lc.clips else 0
            bar = tqdm(total=n_cand * classes, desc="library", unit="clip", disable=not progress)
        else:
            n_cand = math.ceil(lc.images / lc.keep_fraction - 1e-9) if lc.images else 0
            n_videos = sum(1 for _ in video_plans(cfg, src.spec.num_classes))
            bar = tqdm(total=n_cand * classes + n_videos, desc="library", unit="img", disable=not progress)
        try:
            if scorer.video:
                clips, video_seconds = _clips(cfg, paths, scorer, cat, bar)
                video_frames = clips.accepted * src.spec.frames
            else:
                images = _images(cfg, paths, scorer, cat, bar)
                videos, video_frames, video_seconds = _videos(cfg, paths, scorer, cat, bar)
        finally:
            bar.close()
            cat.flush(final=True)
        final = cat.all()
        totals = Counts()
        totals.add(images)
        totals.add(videos)
        totals.add(clips)
        metrics: dict[str, Any] = {
            **vars(totals),
            "kind": src.spec.kind,
            "images": vars(images),
            "videos": vars(videos),
            "clips": vars(clips),
            "images_per_second": images.generated / scorer.seconds if scorer.seconds and not scorer.video else 0.0,
            "clips_per_second": clips.generated / scorer.seconds if scorer.seconds and scorer.video else 0.0,
            "video_frames_per_second": video_frames / video_seconds if video_seconds else 0.0,
            "seconds": 0.0,
            "catalog_assets": len(final),
            "catalog": str(paths.catalog),
            "rows_dropped_missing_files": dropped,
            "orphan_files_removed": removed,
            "build_id": build_id,
            "protocol": {
                "source": src.uri,
                "model_sha256": src.model_sha256,
                "run_id": src.run_id,
                "extractor": scorer.protocol.get("extractor"),
                "extractor_weights_sha256": scorer.protocol.get("weights_sha256"),
                "reference_split": "train",
                "kind": src.spec.kind,
                "clip_frames": src.spec.frames if scorer.video else None,
                "dedupe_frames": scoring.clip_frames(src.spec.frames) if scorer.video else None,
                "n_real": len(scorer.real.features),
                "realism_k": lc.k,
                "realism_manifold": len(scorer.real.manifold),
                "median_train_nn_distance": scorer.real.median_nn,
                "memorised_feature_distance": lc.memorised_feature * scorer.real.median_nn,
                "memorised_pixel_rmse": lc.memorised_pixel,
                "selection": lc.selection,
                "keep_fraction": lc.keep_fraction,
                "rank_by": lc.rank_by,
                "truncation": lc.truncation,
                "dedupe_hamming": lc.dedupe_hamming,
                "ganforge": __version__,
                "torch": torch.__version__,
            },
        }
        summary_table = {k: metrics[k] for k in ("accepted", "already_present", "catalog_assets")}
        summary_table.update(source=src.uri, build=build_id)
        gallery = write_gallery(final, paths.library, summary=summary_table)
    metrics["seconds"] = time.perf_counter() - t0
    write_text_atomic(paths.metrics / "library.json", json.dumps(metrics, indent=2, default=str) + "\n")
    if cfg.tracking.enabled and src.run_id:
        from ganforge import tracking

        numeric = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        metrics["mlflow"] = tracking.record_library(src.run_id, numeric)
        write_text_atomic(paths.metrics / "library.json", json.dumps(metrics, indent=2, default=str) + "\n")
    return LibrarySummary(images, videos, metrics, str(gallery), src.uri, clips)
