"""The `evaluate` stage: score the generator against a real split, with the whole protocol recorded.

Every number in metrics/eval.json stands beside what produced it: the feature extractor and its
weights hash, n_real, n_fake, split, resize, seed, k and library versions. Reference features of the
real split are cached under .ganforge-cache/, keyed by the prepared data and the extractor.
The scores go to the train stage's MLflow run; the generator becomes a registered model version
(`candidate`) and the promotion gate decides whether it becomes `champion`.

Video generators (clips [N, C, T, H, W]) get, under the same top-level keys, the per-frame scores (every frame
of the real clips against every frame of the generated ones, in the same feature space as for images) and the
class accuracy of whole generated clips (the clip classifier's); and under `video`: `clip_fd`, the in-domain
clip Fréchet distance (features of the 3D-conv clip classifier trained on this data; not FVD), `fvd` (the I3D
FVD, only with local weights: `ganforge.metrics.fvd`) and `motion`, how much generated clips move against real
ones (1.0: as much; ~0: frozen frames).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge import __version__, faults
from ganforge.config import Config, EvaluateConfig
from ganforge.data.dataset import KINDS, PreparedData
from ganforge.errors import GanforgeError
from ganforge.metrics import classifier
from ganforge.metrics.extract import Extract, clip_extractor, extractor, reference_features
from ganforge.models import ModelSpec
from ganforge.paths import Paths, write_text_atomic
from ganforge.registry import record_evaluation
from ganforge.sampling import Sampler
from ganforge.training import checkpoint

CLIP_FD_ABOUT = "in-domain clip Fréchet distance (3D-conv classifier features trained on this data; not FVD)"
MOTION_ABOUT = "mean |x[t+1] - x[t]| of generated clips / that of real clips (1.0: as much movement; ~0: frozen)"
# k-NN scores take one frame per clip: a clip's frames are near-duplicates in a frame feature space, so with all
# of them every k-NN ball shrinks to its own clip (real against real: precision 0.41, recall 0.51 on moving digits
# with all 16 frames; 0.93 / 0.89 with one random frame per clip, as images score)
FAKE_SAMPLES = (
    "seeds evaluate.seed .. evaluate.seed + n_fake - 1, one latent per seed at truncation psi (ganforge.sampling: "
    "psi x a normal truncated to |z| <= 2; 1.0 = the plain normal), class i % num_classes"
)
MANIFOLD_FRAMES = "one random frame per clip (torch.Generator seeded with evaluate.seed: real picks, then fake)"


@torch.no_grad()
def generate(
    G: nn.Module, n: int, num_classes: int, seed: int, truncation: float, batch: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n samples (images, or clips [n, C, T, H, W]) as uint8 (quantised like the real data) from seeds
    seed .. seed + n - 1 at truncation psi (FAKE_SAMPLES), classes balanced (sample i has class i % num_classes)."""
    y = torch.arange(n) % num_classes if num_classes else None
    return Sampler(G, batch_size=batch).uint8(range(seed, seed + n), y, truncation), y


@dataclass(frozen=True)
class EvalSummary:
    scores: dict[str, float]
    protocol: dict[str, Any]
    registry: dict[str, Any]
    seconds: float
    video: dict[str, Any] | None = None  # video models: clip_fd, fvd, motion (and what they mean)

    def line(self, out: Path) -> str:
        s = self.scores
        p = self.protocol
        v = self.video
        if v is not None:
            parts = [f"per-frame FID {s['fid']:.3f}", f"KID {s['kid_mean']:.4f}"]
            if "class_accuracy" in s:
                parts.append(f"clip class accuracy {s['class_accuracy']:.3f}")
            if "frame_class_accuracy" in s:
                parts.append(f"frame class accuracy {s['frame_class_accuracy']:.3f}")
            parts += [f"precision {s['precision']:.3f}", f"recall {s['recall']:.3f}"]
            parts.append("clip FD n/a" if v["clip_fd"] is None else f"in-domain clip FD {v['clip_fd']:.3f}")
            parts.append("motion n/a" if v["motion"] is None else f"motion {v['motion']:.2f}")
            parts.append("FVD not computed" if v["fvd"] is None else f"FVD {v['fvd']:.1f}")
            sizes = f"n_real {p['n_real']} / n_fake {p['n_fake']} clips of {p['frames_per_clip']} frames"
        elif "fid_untranslated" in s:  # a translator
            parts = [f"FID to the target domain {s['fid']:.3f} (untranslated {s['fid_untranslated']:.3f})"]
            if "content_accuracy" in s:  # an extractor with class logits (the in-domain classifier)
                parts += [f"content kept {s['content_accuracy']:.3f}", f"target domain {s['domain_accuracy']:.3f}"]
            parts += [f"cycle L1 {s['cycle_l1']:.4f}"]
            sizes = f"{p['directions']} directions, up to {p['n_per_direction']} {p['split']} images each"
        else:
            parts = [f"FID {s['fid']:.3f}", f"KID {s['kid_mean']:.4f}"]
            if "class_accuracy" in s:
                parts.append(f"class accuracy {s['class_accuracy']:.3f}")
            parts += [f"precision {s['precision']:.3f}", f"recall {s['recall']:.3f}"]
            if "cas" in s:
                parts.append(f"CAS {s['cas']:.3f} ({s['cas_ratio']:.0%} of real data's {s['cas_real']:.3f})")
            sizes = f"n_real {p['n_real']}, n_fake {p['n_fake']}"
        reg = self.registry
        where = (
            f"; {reg['model_name']} v{reg['version']} {'promoted to champion' if reg['promoted'] else 'is candidate'}"
            f" ({reg['reason']})"
            if "version" in reg
            else ""
        )
        return (
            f"evaluate: {', '.join(parts)} ({p['extractor']} features, {sizes}) in {self.seconds:.0f}s -> {out}{where}"
        )


def score(
    G: nn.Module, ec: EvaluateConfig, extract: Extract, real_features: torch.Tensor, num_classes: int
) -> dict[str, float]:
    from ganforge.metrics.scores import class_accuracy, compute_scores

    fake, y = generate(G, ec.n_fake, num_classes, ec.seed, ec.truncation, ec.batch_size)
    fake_features, logits = extract(fake)
    scores = compute_scores(
        real_features,
        fake_features,
        k=ec.k,
        kid_subsets=ec.kid_subsets,
        kid_subset_size=ec.kid_subset_size,
        seed=ec.seed,
    )
    if y is not None and logits is not None:
        scores["class_accuracy"] = class_accuracy(logits, y)
    return scores


def class_accuracy(
    cfg: Config, paths: Paths, data: PreparedData, G: nn.Module, scores: dict[str, float], loaded: Any = None
) -> dict[str, Any] | str:
    """CAS (`ganforge.cas`) into `scores`; its protocol, or why it was skipped. `loaded`: the test split's
    (images, labels) when the caller has them already."""
    from ganforge.cas import class_accuracy_score

    try:
        _, record = classifier.load(paths.classifier)
    except GanforgeError as exc:  # no in-domain classifier: no labels, or no features stage run
        return f"skipped: {exc}"
    test = loaded if loaded is not None else data.load("test")
    if len(test[0]) < 2:
        return "skipped: the test split is too small"
    reference = (float(record["test_accuracy"]), record["recipe"]) if "recipe" in record else None
    cas, protocol = class_accuracy_score(G, cfg.evaluate, cfg.features, data.load("train"), test, reference)
    scores.update(cas)
    return protocol


# how FID and KID are computed, recorded in every protocol (ganforge.metrics.scores; checked against torchmetrics)
FID_KID = "float64, torchmetrics' formulas"


def evaluate(cfg: Config, paths: Paths) -> EvalSummary:
    """Score the EMA generator (and optionally the raw one); record; register; gate."""
    ec = cfg.evaluate
    t0 = time.perf_counter()
    data = PreparedData.open(paths.prepared, kinds=KINDS)
    if data.kind == "image":
        real, real_labels = data.load(ec.split)
        if len(real) < 2:
            raise GanforgeError(f"evaluate: the {ec.split} split has {len(real)} images; set data.test_fraction higher")
    state = checkpoint.load(paths.checkpoint)
    spec = ModelSpec.from_dict(state["spec"])
    if spec.kind != data.kind:
        raise GanforgeError(
            f"evaluate: {paths.checkpoint} holds {'a video' if spec.kind == 'video' else 'an image'} generator "
            f"({spec.model}) but {paths.prepared} holds {data.kind} data: train on this data first (ganforge train)"
        )
    if data.kind == "video":
        return _evaluate_video(cfg, paths, data, state, t0)
    if spec.task == "translate":
        return _evaluate_translation(cfg, paths, data, state, (real, real_labels), t0)
    extract, protocol = extractor(ec, paths)
    real_features, from_cache = reference_features(extract, protocol, paths, ec.split, real)
    num_classes = state["spec"]["num_classes"]

    G = checkpoint.generator_from_state(state, ema=True)
    scores = score(G, ec, extract, real_features, num_classes)
    test_split = (real, real_labels) if ec.split == "test" else None  # CAS tests on it: no second read
    cas_protocol = class_accuracy(cfg, paths, data, G, scores, test_split) if ec.cas and num_classes else None
    raw = None
    if ec.raw_generator:
        raw = score(checkpoint.generator_from_state(state, ema=False), ec, extract, real_features, num_classes)
    protocol.update(
        generator="ema",
        checkpoint_step=int(state["step"]),
        split=ec.split,
        resolution=data.resolution,
        n_real=len(real),
        n_fake=ec.n_fake,
        kid_subset_size=min(ec.kid_subset_size, len(real), ec.n_fake),
        kid_subsets=ec.kid_subsets,
        k=ec.k,
        seed=ec.seed,
        truncation=ec.truncation,
        fake_samples=FAKE_SAMPLES,
        reference_from_cache=from_cache,
        torch=torch.__version__,
        fid_kid=FID_KID,
        ganforge=__version__,
    )
    if cas_protocol is not None:
        protocol["cas"] = cas_protocol
    registry: dict[str, Any] = {"skipped": "tracking.enabled is false"}
    if cfg.tracking.enabled:
        registry = record_evaluation(cfg, paths, scores, raw, protocol)
    result: dict[str, Any] = {**scores}
    if raw is not None:
        result["raw"] = raw
    result["protocol"] = protocol
    result["registry"] = registry
    faults.reach("evaluate.registered")
    write_text_atomic(paths.metrics / "eval.json", json.dumps(result, indent=2, default=str) + "\n")
    return EvalSummary(scores, protocol, registry, time.perf_counter() - t0)


# -- video ------------------------------------------------------------------------------------------------------


def motion_energy(clips: torch.Tensor, batch: int = 256) -> float:
    """Mean absolute difference between consecutive frames of uint8 clips [N, C, T, H, W], in 0..1."""
    total, count = 0.0, 0
    for i in range(0, len(clips), batch):
        x = clips[i : i + batch].to(torch.int16)
        d = (x[:, :, 1:] - x[:, :, :-1]).abs()
        total += float(d.sum(dtype=torch.float64))
        count += d.numel()
    return total / max(count, 1) / 255


@dataclass
class VideoSpace:
    """What fake clips are scored against: real features in each space, and the extractors."""

    frames: Extract
    real_frames: torch.Tensor
    clips: Extract | None
    real_clips: torch.Tensor | None
    fvd: Extract | None
    real_fvd: torch.Tensor | None
    real_motion: float


def one_frame_per_clip(real: torch.Tensor, fake: torch.Tensor, frames: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Rows of one random frame per clip from frame features in clip order ([N*T, D] -> [N, D]); see MANIFOLD_FRAMES."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for x in (real, fake):
        n = len(x) // frames
        out.append(x[torch.arange(n) * frames + torch.randint(0, frames, (n,), generator=g)])
    return tuple(out)


def score_video(
    G: nn.Module, ec: EvaluateConfig, space: VideoSpace, num_classes: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """(per-frame scores + clip class accuracy, the video section: clip_fd, fvd, motion) of n_fake_clips clips.

    FID and KID compare every frame of the real clips with every frame of the generated ones; precision, recall,
    density and coverage one random frame of each (MANIFOLD_FRAMES)."""
    from ganforge.metrics.clips import all_frames
    from ganforge.metrics.scores import class_accuracy, frechet_distance, kernel_distance, manifold_scores

    frames = G.spec.frames
    fake, y = generate(G, ec.n_fake_clips, num_classes, ec.seed, ec.truncation, max(1, ec.batch_size // frames))
    fake_frame_features, frame_logits = space.frames(all_frames(fake))
    kid_mean, kid_std = kernel_distance(
        space.real_frames, fake_frame_features, subsets=ec.kid_subsets, subset_size=ec.kid_subset_size, seed=ec.seed
    )
    scores = {
        "fid": frechet_distance(space.real_frames, fake_frame_features),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        **manifold_scores(*one_frame_per_clip(space.real_frames, fake_frame_features, frames, ec.seed), k=ec.k),
    }
    by_class = None
    if y is not None and frame_logits is not None:  # legibility: is every frame, not only the clip, its class?
        y_frames = y.repeat_interleave(frames)
        scores["frame_class_accuracy"] = class_accuracy(frame_logits, y_frames)
        by_class = {str(c): class_accuracy(frame_logits[y_frames == c], y_frames[y_frames == c])
                    for c in range(num_classes) if bool((y_frames == c).any())}  # fmt: skip
    clip_fd = None
    if space.clips is not None and space.real_clips is not None:
        fake_clip_features, logits = space.clips(fake)
        clip_fd = frechet_distance(space.real_clips, fake_clip_features)
        if y is not None and logits is not None:
            scores["class_accuracy"] = class_accuracy(logits, y)
    fvd = None
    if space.fvd is not None and space.real_fvd is not None:
        fvd = frechet_distance(space.real_fvd, space.fvd(fake)[0])
    fake_motion = motion_energy(fake)
    video = {
        "clip_fd": clip_fd,
        "fvd": fvd,
        "motion": fake_motion / space.real_motion if space.real_motion > 0 else None,
        "motion_fake": fake_motion,
        "motion_real": space.real_motion,
        "frame_class_accuracy_by_class": by_class,
    }
    return scores, video


def _numbers(scores: dict[str, float], video: dict[str, Any]) -> dict[str, float]:
    """Everything worth logging as a metric: the scores and the video numbers that were computed."""
    extra = {k: float(video[k]) for k in ("clip_fd", "fvd", "motion") if video.get(k) is not None}
    return {**scores, **extra}


def _evaluate_video(cfg: Config, paths: Paths, data: PreparedData, state: dict[str, Any], t0: float) -> EvalSummary:
    """evaluate() for video generators: per-frame scores, clip class accuracy, clip_fd, fvd, motion."""
    from ganforge.metrics import fvd
    from ganforge.metrics.clips import ClipClassifierUnavailable, all_frames

    ec = cfg.evaluate
    frames = int(data.frames or 0)
    if int(state["spec"].get("frames", 0)) != frames:
        raise GanforgeError(
            f"evaluate: {paths.checkpoint} makes clips of {state['spec'].get('frames')} frames but {paths.prepared} "
            f"holds clips of {frames}: train on this data first (ganforge train)"
        )
    detector = fvd_protocol = None
    if ec.fvd_weights:  # every check on the I3D file before any work
        detector, fvd_protocol = fvd.load_i3d(ec.fvd_weights, ec.fvd_sha256)
        fvd.check_frames(frames)
    real, _ = data.load(ec.split)
    if len(real) < 2:
        raise GanforgeError(f"evaluate: the {ec.split} split has {len(real)} clips; set data.test_fraction higher")

    extract, protocol = extractor(ec, paths)
    frame_protocol = {**protocol, "frames": "every frame, clip by clip"}  # the cache key of real frame features
    real_frame_features, from_cache = reference_features(extract, frame_protocol, paths, ec.split, all_frames(real))
    try:
        clip_extract, clip_protocol = clip_extractor(ec, paths)
    except ClipClassifierUnavailable as exc:
        clip_extract, clip_protocol, clip_note = None, None, f"not computed: {exc}"
    else:
        clip_note = CLIP_FD_ABOUT
        if (clip_protocol["frames"], clip_protocol["resolution"]) != (frames, data.resolution):
            raise GanforgeError(
                f"evaluate: {paths.clip_classifier} was trained on clips of {clip_protocol['frames']} frames at "
                f"{clip_protocol['resolution']}px, the data has {frames} at {data.resolution}px: "
                "run `ganforge features`"
            )
    real_clip_features = None
    if clip_extract is not None and clip_protocol is not None:
        real_clip_features, _ = reference_features(clip_extract, clip_protocol, paths, ec.split, real)
    fvd_extract = real_fvd = None
    if detector is not None and fvd_protocol is not None:
        fvd_extract = fvd.i3d_features(detector)
        real_fvd, _ = reference_features(fvd_extract, fvd_protocol, paths, ec.split, real)
    space = VideoSpace(
        extract, real_frame_features, clip_extract, real_clip_features, fvd_extract, real_fvd, motion_energy(real)
    )
    num_classes = state["spec"]["num_classes"]

    scores, video = score_video(checkpoint.generator_from_state(state, ema=True), ec, space, num_classes)
    raw = raw_video = None
    if ec.raw_generator:
        raw, raw_video = score_video(checkpoint.generator_from_state(state, ema=False), ec, space, num_classes)

    n_real_frames, n_fake_frames = len(real) * frames, ec.n_fake_clips * frames
    protocol.update(
        kind="video",
        generator="ema",
        checkpoint_step=int(state["step"]),
        split=ec.split,
        resolution=data.resolution,
        n_real=len(real),
        n_fake=ec.n_fake_clips,
        frames_per_clip=frames,
        frames_scored="fid, kid: all frames of each clip; precision, recall, density, coverage: " + MANIFOLD_FRAMES,
        n_real_frames=n_real_frames,
        n_fake_frames=n_fake_frames,
        n_real_manifold=len(real),
        n_fake_manifold=ec.n_fake_clips,
        kid_subset_size=min(ec.kid_subset_size, n_real_frames, n_fake_frames),
        kid_subsets=ec.kid_subsets,
        k=ec.k,
        seed=ec.seed,
        truncation=ec.truncation,
        fake_samples=FAKE_SAMPLES,
        reference_from_cache=from_cache,
    )
    if clip_protocol is not None:
        protocol.update(
            clip_extractor=clip_protocol["extractor"],
            clip_weights=clip_protocol["weights"],
            clip_weights_sha256=clip_protocol["weights_sha256"],
            clip_extractor_test_accuracy=clip_protocol["extractor_test_accuracy"],
            clip_feature_dim=clip_protocol["feature_dim"],
        )
    if fvd_protocol is not None:
        protocol.update(fvd_protocol)
    protocol.update(torch=torch.__version__, fid_kid=FID_KID, ganforge=__version__)

    video.update(
        clip_fd_about=clip_note,
        fvd_note=(
            f"I3D (Kinetics-400) features of whole clips, n_real {len(real)}, n_fake {ec.n_fake_clips}"
            if video["fvd"] is not None
            else fvd.NOT_COMPUTED
        ),
        motion_about=MOTION_ABOUT,
        per_frame=(
            f"fid, kid_*: {protocol['extractor']} features of all {frames} frames of each clip ({n_real_frames} real "
            f"{ec.split} frames, {n_fake_frames} generated); precision, recall, density, coverage: the same features "
            f"of one random frame per clip ({len(real)} real, {ec.n_fake_clips} generated)"
        ),
        class_accuracy=(
            "clip classifier's arg-max on generated clips against their conditioning class"
            if "class_accuracy" in scores
            else "not computed (unconditional generator or no clip classifier)"
        ),
        frame_class_accuracy=(
            "frame classifier's arg-max on every generated frame against its clip's conditioning class: whether "
            "the content stays legible in every frame (frame_class_accuracy_by_class: the same per class)"
            if "frame_class_accuracy" in scores
            else "not computed (unconditional generator or a frame extractor without class logits)"
        ),
    )
    registry: dict[str, Any] = {"skipped": "tracking.enabled is false"}
    if cfg.tracking.enabled:
        registry = record_evaluation(
            cfg,
            paths,
            _numbers(scores, video),
            None if raw is None or raw_video is None else _numbers(raw, raw_video),
            protocol,
        )
    result: dict[str, Any] = {**scores, "video": video}
    if raw is not None and raw_video is not None:
        result["raw"] = {**raw, "video": raw_video}
    result["protocol"] = protocol
    result["registry"] = registry
    faults.reach("evaluate.registered")
    write_text_atomic(paths.metrics / "eval.json", json.dumps(result, indent=2, default=str) + "\n")
    return EvalSummary(scores, protocol, registry, time.perf_counter() - t0, video)


# -- translation -------------------------------------------------------------------------------------------------

TRANSLATION_ABOUT = {
    "fid": "FID of the translations into each target domain against the real images of that domain (the "
    "evaluate.split), in the in-domain feature space; the mean over the directions",
    "fid_untranslated": "the same FID of the untranslated sources: how far apart the domains are to begin with",
    "content_accuracy": "the in-domain classifier reads the source's content on its translation (the class "
    "name's part under the domain pattern's *: the digit of handwritten_3 under handwritten_*)",
    "domain_accuracy": "the classifier puts the translation in the target domain",
    "cycle_l1": "mean |G(G(x, target), source) - x| in 0..1 pixel units",
}


def _evaluate_translation(
    cfg: Config, paths: Paths, data: PreparedData, state: dict[str, Any], split: tuple[torch.Tensor, ...], t0: float
) -> EvalSummary:
    """evaluate() for translators: per direction (source domain -> target domain), FID of the translations to the
    real target domain beside the untranslated sources', content and domain accuracy, cycle L1."""
    from ganforge.metrics.scores import compute_scores, frechet_distance
    from ganforge.sampling import translate
    from ganforge.training.translation import content_keys, domain_table

    ec = cfg.evaluate
    real, labels = split
    names_of_classes = list(state["class_names"])
    patterns = list(state.get("domain_patterns", cfg.translate.domains))
    table, domains = domain_table(names_of_classes, patterns)
    keys = content_keys(names_of_classes, patterns)
    dom = table[labels]
    extract, protocol = extractor(ec, paths)
    real_features, from_cache = reference_features(extract, protocol, paths, ec.split, real)
    G = checkpoint.generator_from_state(state, ema=True)
    per: dict[str, dict[str, float]] = {}
    for d, source_name in enumerate(domains):
        sources = torch.nonzero(dom == d).flatten()[: ec.n_fake]
        if len(sources) < 2:
            raise GanforgeError(f"evaluate: the {ec.split} split has {len(sources)} images of domain {source_name!r}")
        x, y = real[sources], labels[sources]
        source_features = real_features[sources]  # the untranslated sources: features already extracted
        for t, target_name in enumerate(domains):
            if t == d:
                continue
            reference = real_features[dom == t]
            if len(reference) < 2:
                raise GanforgeError(f"evaluate: the {ec.split} split has {len(reference)} images of {target_name!r}")
            out = translate(G, x, t, ec.batch_size)
            back = translate(G, out, d, ec.batch_size)
            features, logits = extract(out)
            size = min(ec.kid_subset_size, len(reference), len(out))
            row = compute_scores(reference, features, k=ec.k, kid_subsets=ec.kid_subsets, kid_subset_size=size,
                                 seed=ec.seed)  # fmt: skip
            row["fid_untranslated"] = frechet_distance(reference, source_features)
            row["cycle_l1"] = float((back.float() - x.float()).abs().mean() / 255)
            if logits is not None:
                pred = logits.argmax(1)
                row["domain_accuracy"] = float((table[pred] == t).float().mean())
                kept = [keys[int(a)] is not None and keys[int(a)] == keys[int(b)] for a, b in zip(pred, y, strict=True)]
                row["content_accuracy"] = sum(kept) / len(kept)
            row["n"] = len(x)
            per[f"{source_name} -> {target_name}"] = row
    scores = {k: sum(r[k] for r in per.values()) / len(per) for k in next(iter(per.values())) if k != "n"}
    protocol.update(
        kind="translation",
        generator="ema",
        checkpoint_step=int(state["step"]),
        split=ec.split,
        resolution=data.resolution,
        domains=domains,
        domain_patterns=patterns,
        directions=len(per),
        n_per_direction=ec.n_fake,
        kid_subsets=ec.kid_subsets,
        k=ec.k,
        seed=ec.seed,
        sources="the first evaluate.n_fake images of each source domain in the split, each translated into every "
        "other domain by G_ema",
        about=TRANSLATION_ABOUT,
        reference_from_cache=from_cache,
        torch=torch.__version__,
        fid_kid=FID_KID,
        ganforge=__version__,
    )
    registry: dict[str, Any] = {"skipped": "tracking.enabled is false"}
    if cfg.tracking.enabled:
        registry = record_evaluation(cfg, paths, scores, None, protocol)
    result: dict[str, Any] = {**scores, "directions": per, "protocol": protocol, "registry": registry}
    faults.reach("evaluate.registered")
    write_text_atomic(paths.metrics / "eval.json", json.dumps(result, indent=2, default=str) + "\n")
    return EvalSummary(scores, protocol, registry, time.perf_counter() - t0)
