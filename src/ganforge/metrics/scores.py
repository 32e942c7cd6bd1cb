"""Scores of generated against real samples, computed on features extracted beforehand.

The caller extracts features once (real ones are cached on disk) and passes `[N, D]` / `[M, D]` tensors:

- FID and KID in float64, the arithmetic of torchmetrics' `FrechetInceptionDistance` / `KernelInceptionDistance`
  step for step (tests/test_metrics.py checks both against torchmetrics itself). They are written out here because
  importing torchmetrics costs an evaluate process ~5 s (it pulls in torchvision and torch._dynamo) for twenty
  lines of linear algebra.
- precision / recall: k-NN manifolds of Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
  Assessing Generative Models". density / coverage: Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
  Generative Models". Distances are computed in float64 blocks with `torch.cdist`, so 10k x 10k never holds a full
  distance matrix in memory.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ganforge.errors import GanforgeError

SCORE_KEYS = ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage")

# Elements of one block of the distance matrix (float64: 64 MiB); the row count of a block follows from it.
_BLOCK_ELEMENTS = 1 << 23
# Balls are closed, and a point on a ball's boundary (the k-th neighbour itself, when fake and real share samples)
# must count as inside whichever block computed the two distances: radii get this relative slack, far above the
# ~1e-13 rounding of blockwise float64 distances and far below any real gap between samples.
_RADIUS_RTOL = 1e-9


def _check_features(real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    """Validate two feature sets and return them as float64 on the same device."""
    for name, x in (("real", real), ("fake", fake)):
        if x.ndim != 2:
            raise ValueError(f"{name} features must be [N, D], got shape {list(x.shape)}")
        if len(x) < 2:
            raise GanforgeError(f"{name} features: need at least 2 samples to compare distributions, got {len(x)}")
        if not torch.isfinite(x).all():
            hint = " (the generator may have diverged)" if name == "fake" else ""
            raise GanforgeError(f"{name} features contain NaN or Inf values{hint}")
    if real.shape[1] != fake.shape[1]:
        raise GanforgeError(
            f"real features have {real.shape[1]} dimensions but fake features have {fake.shape[1]}: "
            "they must come from the same extractor (delete stale cached real features)"
        )
    return real.to(torch.float64), fake.to(device=real.device, dtype=torch.float64)


def _mean_and_covariance(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance, accumulated as torchmetrics' FID does (sum and sum of outer products)."""
    n = len(x)
    mean = (x.sum(dim=0) / n).unsqueeze(0)
    cov = (x.t().mm(x) - n * mean.t().mm(mean)) / (n - 1)
    return mean.squeeze(0), cov


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """FID between the Gaussians fitted to two feature sets, float64 throughout: ‖mu_r - mu_f‖² + Tr(S_r) + Tr(S_f)
    - 2 Σ sqrt(eig(S_r S_f)) (the trace of the matrix square root through the eigenvalues, as torchmetrics does)."""
    real, fake = _check_features(real, fake)
    mu1, sigma1 = _mean_and_covariance(real)
    mu2, sigma2 = _mean_and_covariance(fake)
    a = (mu1 - mu2).square().sum(dim=-1)
    b = sigma1.trace() + sigma2.trace()
    c = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum(dim=-1)
    return float(a + b - 2 * c)


def _polynomial_mmd(x: Tensor, y: Tensor, *, degree: int, gamma: float, coef: float) -> Tensor:
    """Unbiased MMD² between two equal-size subsets under k(a, b) = (gamma a·b + coef)^degree."""
    m = len(x)
    k_xx = (x @ x.T * gamma + coef) ** degree
    k_yy = (y @ y.T * gamma + coef) ** degree
    k_xy = (x @ y.T * gamma + coef) ** degree
    within = (k_xx.sum() - k_xx.diagonal().sum()) + (k_yy.sum() - k_yy.diagonal().sum())
    return within / (m * (m - 1)) - 2 * k_xy.sum() / (m**2)


def kernel_distance(
    real: Tensor, fake: Tensor, *, subsets: int = 100, subset_size: int = 100, seed: int = 0
) -> tuple[float, float]:
    """KID (unbiased MMD^2, cubic polynomial kernel with gamma = 1/D, coef0 = 1): mean and std over random subsets.

    `subset_size` is capped at the smaller set's size. Subsets are drawn from a CPU generator seeded with `seed`
    inside a forked RNG, so the result is reproducible and the caller's global RNG state is left untouched.
    """
    real, fake = _check_features(real, fake)
    if subsets < 1:
        raise ValueError(f"subsets must be at least 1, got {subsets}")
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"subset_size must be at least 2, got {subset_size}")
    gamma = 1.0 / real.shape[1]
    scores = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(subsets):  # the draws in torchmetrics' order: a real subset, then a fake one
            x = real[torch.randperm(len(real))[:size].to(real.device)]
            y = fake[torch.randperm(len(fake))[:size].to(real.device)]
            scores.append(_polynomial_mmd(x, y, degree=3, gamma=gamma, coef=1.0))
    kid = torch.stack(scores)
    return float(kid.mean()), float(kid.std(unbiased=False))


def _rows_per_block(n_cols: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(1, n_cols))


def knn_radii(x: Tensor, k: int, *, block_rows: int | None = None) -> Tensor:
    """Distance from each point of `x` to its k-th nearest neighbour in `x`, the point itself excluded."""
    rows = block_rows or _rows_per_block(len(x))
    # The point itself is the nearest (distance 0), so the k-th neighbour is the (k+1)-th smallest distance.
    return torch.cat([torch.cdist(x[i : i + rows], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), rows)])


def _ball_radii(x: Tensor, k: int, block_rows: int | None) -> Tensor:
    return knn_radii(x, k, block_rows=block_rows) * (1 + _RADIUS_RTOL)


def manifold_scores(real: Tensor, fake: Tensor, *, k: int = 3, block_rows: int | None = None) -> dict[str, float]:
    """Precision, recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020) with k-NN balls.

    Each point's ball has the radius of its k-th nearest neighbour within its own set (closed balls, `<=`).
    precision: share of fake samples inside at least one real ball; recall: share of real samples inside at least
    one fake ball; density: mean number of real balls containing a fake sample, divided by k; coverage: share of
    real balls that contain at least one fake sample.
    """
    real, fake = _check_features(real, fake)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k >= min(len(real), len(fake)):
        raise GanforgeError(
            f"precision/recall with k={k} need more than k samples in each set "
            f"(real {len(real)}, fake {len(fake)}): lower evaluate.k or use more samples"
        )
    r_real = _ball_radii(real, k, block_rows)
    r_fake = _ball_radii(fake, k, block_rows)

    fake_in_real = 0  # fake samples inside at least one real ball
    real_balls_hit = 0  # (fake sample, real ball containing it) pairs
    real_in_fake = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    nearest_fake = torch.full((len(real),), torch.inf, dtype=torch.float64, device=real.device)
    rows = block_rows or _rows_per_block(len(real))
    for i in range(0, len(fake), rows):
        dist = torch.cdist(fake[i : i + rows], real)  # [rows, N]
        inside_real = dist <= r_real[None, :]
        fake_in_real += int(inside_real.any(dim=1).sum())
        real_balls_hit += int(inside_real.sum())
        real_in_fake |= (dist <= r_fake[i : i + rows, None]).any(dim=0)
        nearest_fake = torch.minimum(nearest_fake, dist.min(dim=0).values)
    return {
        "precision": fake_in_real / len(fake),
        "recall": float(real_in_fake.double().mean()),
        "density": real_balls_hit / (k * len(fake)),
        "coverage": float((nearest_fake <= r_real).double().mean()),
    }


def compute_scores(
    real: Tensor,
    fake: Tensor,
    *,
    k: int = 3,
    kid_subsets: int = 100,
    kid_subset_size: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """All distribution scores of `fake` [M, D] against `real` [N, D] features, as plain floats (keys: SCORE_KEYS)."""
    real, fake = _check_features(real, fake)
    kid_mean, kid_std = kernel_distance(real, fake, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    return {
        "fid": frechet_distance(real, fake),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        **manifold_scores(real, fake, k=k),
    }


def class_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Share of samples whose arg-max class in `logits` [N, C] equals `labels` [N]."""
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"expected logits [N, C] and labels [N], got {list(logits.shape)} and {list(labels.shape)}")
    if len(labels) == 0:
        raise ValueError("class accuracy of an empty batch")
    return float((logits.argmax(dim=1) == labels.to(logits.device)).double().mean())
