"""The `evaluate` stage: score the generator against a real split, with the whole protocol recorded.

Every number in metrics/eval.json stands beside what produced it: the feature extractor and its
weights hash, n_real, n_fake, split, resize, seed, k and library versions. Reference features of the
real split are cached under .ganforge-cache/, keyed by the prepared data and the extractor.
The scores go to the train stage's MLflow run; the generator becomes a registered model version
(`candidate`) and the promotion gate decides whether it becomes `champion`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge import __version__, tracking
from ganforge.config import Config, EvaluateConfig
from ganforge.data.dataset import PreparedData
from ganforge.errors import GanforgeError
from ganforge.paths import Paths, atomic_path, write_text_atomic
from ganforge.training import checkpoint

# an extractor maps uint8 images [N, C, H, W] to (features [N, D], class logits [N, K] or None)
Extract = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def _batched(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, batch: int) -> list[Any]:
    return [fn(x[i : i + batch]) for i in range(0, len(x), batch)]


def extractor(ec: EvaluateConfig, paths: Paths) -> tuple[Extract, dict[str, Any]]:
    """The configured feature extractor and its protocol (name, weights hash, resize, dim)."""
    if ec.extractor == "classifier":
        from ganforge.metrics.classifier import load, to_float

        net, record = load(paths.classifier)

        @torch.no_grad()
        def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            parts = _batched(lambda b: net(to_float(b)), x, ec.batch_size)
            return torch.cat([f for f, _ in parts]).double(), torch.cat([z for _, z in parts])

        protocol = {
            "extractor": "classifier",
            "weights": str(paths.classifier),
            "weights_sha256": record["sha256"],
            "extractor_test_accuracy": record["test_accuracy"],
            "feature_dim": net.feature_dim,
            "resize": "none (native resolution)",
        }
        return run, protocol
    from ganforge.metrics.inception import load_inception

    net_i, protocol = load_inception(ec.inception_weights, ec.download, ec.resize_filter)

    @torch.no_grad()
    def run_i(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.cat(_batched(net_i, x, ec.batch_size)).double(), None

    return run_i, dict(protocol)


def _data_key(paths: Paths, split: str) -> str:
    """A hash that changes whenever the prepared data does (its manifest and info say everything)."""
    h = hashlib.sha256(split.encode())
    for name in ("info.json", "manifest.parquet"):
        h.update((paths.prepared / name).read_bytes())
    return h.hexdigest()


def reference_features(
    extract: Extract, protocol: dict[str, Any], paths: Paths, split: str, real: torch.Tensor
) -> tuple[torch.Tensor, bool]:
    """Features of the real split, from the cache when the data and extractor are unchanged."""
    key_src = json.dumps({"data": _data_key(paths, split), "extractor": protocol}, sort_keys=True, default=str)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
    cached = paths.cache / "reference" / f"{key}.pt"
    if cached.exists():
        try:
            return torch.load(cached, weights_only=True)["features"], True
        except Exception:  # a damaged cache entry is recomputed, never trusted
            cached.unlink(missing_ok=True)
    features, _ = extract(real)
    with atomic_path(cached) as tmp:
        torch.save({"features": features, "key": key_src}, tmp)
    return features, False


@torch.no_grad()
def generate(
    G: nn.Module, n: int, num_classes: int, seed: int, truncation: float, batch: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n samples as uint8 (quantised like the real data), classes balanced; deterministic per seed."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.spec.z_dim, generator=g) * truncation
    y = torch.arange(n) % num_classes if num_classes else None
    out = []
    for i in range(0, n, batch):
        x = G(z[i : i + batch], None if y is None else y[i : i + batch])
        out.append(x.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out), y


@dataclass(frozen=True)
class EvalSummary:
    scores: dict[str, float]
    protocol: dict[str, Any]
    registry: dict[str, Any]
    seconds: float

    def line(self, out: Path) -> str:
        s = self.scores
        parts = [f"FID {s['fid']:.3f}", f"KID {s['kid_mean']:.4f}"]
        if "class_accuracy" in s:
            parts.append(f"class accuracy {s['class_accuracy']:.3f}")
        parts += [f"precision {s['precision']:.3f}", f"recall {s['recall']:.3f}"]
        p = self.protocol
        reg = self.registry
        where = (
            f"; {reg['model_name']} v{reg['version']} {'promoted to champion' if reg['promoted'] else 'is candidate'}"
            f" ({reg['reason']})"
            if "version" in reg
            else ""
        )
        return (
            f"evaluate: {', '.join(parts)} ({p['extractor']} features, n_real {p['n_real']}, n_fake {p['n_fake']}) "
            f"in {self.seconds:.0f}s -> {out}{where}"
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


def evaluate(cfg: Config, paths: Paths) -> EvalSummary:
    """Score the EMA generator (and optionally the raw one); record; register; gate."""
    import torchmetrics

    ec = cfg.evaluate
    t0 = time.perf_counter()
    data = PreparedData.open(paths.prepared)
    real, _ = data.load(ec.split)
    if len(real) < 2:
        raise GanforgeError(f"evaluate: the {ec.split} split has {len(real)} images; set data.test_fraction higher")
    state = checkpoint.load(paths.checkpoint)
    extract, protocol = extractor(ec, paths)
    real_features, from_cache = reference_features(extract, protocol, paths, ec.split, real)
    num_classes = state["spec"]["num_classes"]

    scores = score(checkpoint.generator_from_state(state, ema=True), ec, extract, real_features, num_classes)
    raw = None
    if ec.raw_generator:
        raw = score(checkpoint.generator_from_state(state, ema=False), ec, extract, real_features, num_classes)
    protocol.update(
        generator="ema",
        checkpoint_step=int(state["step"]),
        split=ec.split,
        n_real=len(real),
        n_fake=ec.n_fake,
        kid_subset_size=min(ec.kid_subset_size, len(real), ec.n_fake),
        kid_subsets=ec.kid_subsets,
        k=ec.k,
        seed=ec.seed,
        truncation=ec.truncation,
        reference_from_cache=from_cache,
        torch=torch.__version__,
        torchmetrics=torchmetrics.__version__,
        ganforge=__version__,
    )
    registry: dict[str, Any] = {"skipped": "tracking.enabled is false"}
    if cfg.tracking.enabled:
        registry = tracking.record_evaluation(cfg, paths, scores, raw, protocol)
    result: dict[str, Any] = {**scores}
    if raw is not None:
        result["raw"] = raw
    result["protocol"] = protocol
    result["registry"] = registry
    write_text_atomic(paths.metrics / "eval.json", json.dumps(result, indent=2, default=str) + "\n")
    return EvalSummary(scores, protocol, registry, time.perf_counter() - t0)
