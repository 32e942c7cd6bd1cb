"""Scores on precomputed features, checked against closed forms and independent numpy/scipy computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import torch

from ganforge.errors import GanforgeError
from ganforge.metrics.scores import (
    SCORE_KEYS,
    class_accuracy,
    compute_scores,
    frechet_distance,
    kernel_distance,
    manifold_scores,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _with_exact_moments(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    """n samples whose sample mean is exactly `mean` and sample covariance (ddof=1) exactly `cov`."""
    z = torch.randn(n, len(mean), generator=_gen(seed), dtype=torch.float64)
    z = z - z.mean(dim=0)
    chol = torch.linalg.cholesky(z.T @ z / (n - 1))
    z = torch.linalg.solve_triangular(chol, z.T, upper=False).T  # sample covariance now the identity
    return mean + z @ torch.linalg.cholesky(cov).T


def _fid_scipy(real: np.ndarray, fake: np.ndarray) -> float:
    mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _kid_numpy(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y / D + 1)^3 on all the data (equal set sizes)."""
    m, dim = x.shape

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a @ b.T / dim + 1.0) ** 3

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / m**2)


def _manifold_numpy(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Full-matrix reference: the definitions of the two papers, nothing batched."""
    d_rr = scipy.spatial.distance.cdist(real, real)
    d_ff = scipy.spatial.distance.cdist(fake, fake)
    d_fr = scipy.spatial.distance.cdist(fake, real)
    r_real = np.sort(d_rr, axis=1)[:, k]  # column 0 is the point itself
    r_fake = np.sort(d_ff, axis=1)[:, k]
    inside_real = d_fr <= r_real[None, :]
    return {
        "precision": float(inside_real.any(axis=1).mean()),
        "recall": float((d_fr <= r_fake[:, None]).any(axis=0).mean()),
        "density": float(inside_real.sum() / (k * len(fake))),
        "coverage": float((d_fr.min(axis=0) <= r_real).mean()),
    }


def _modes(n_per_mode: int, centres: torch.Tensor, seed: int) -> torch.Tensor:
    g = _gen(seed)
    return torch.cat([c + torch.randn(n_per_mode, centres.shape[1], generator=g) for c in centres])


# --- FID -------------------------------------------------------------------------------------------------------------


def test_fid_equals_the_closed_form_of_two_gaussians() -> None:
    dim = 6
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=_gen(1), dtype=torch.float64))
    a = torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0, 9.0], dtype=torch.float64)
    b = torch.tensor([1.0, 1.5, 0.2, 3.0, 7.0, 2.0], dtype=torch.float64)
    mu1 = torch.linspace(-1, 1, dim, dtype=torch.float64)
    mu2 = mu1 + torch.tensor([0.3, 0.0, -0.5, 1.0, 0.0, 0.2], dtype=torch.float64)
    real = _with_exact_moments(500, mu1, q @ torch.diag(a) @ q.T, seed=2)
    fake = _with_exact_moments(300, mu2, q @ torch.diag(b) @ q.T, seed=3)
    # Commuting covariances: Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (sqrt(a) - sqrt(b))^2.
    expected = float((mu1 - mu2).square().sum() + (a.sqrt() - b.sqrt()).square().sum())
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(real.float(), fake.float()) == pytest.approx(expected, rel=1e-5)  # float32 input


def test_fid_matches_scipy_on_random_features() -> None:
    g = _gen(4)
    dim = 24

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    real = randn(600, dim) @ randn(dim, dim) + 0.5
    fake = randn(500, dim) @ randn(dim, dim)
    ours = frechet_distance(real, fake)
    reference = _fid_scipy(real.numpy(), fake.numpy())
    assert abs(ours - reference) / reference < 1e-6
    assert abs(frechet_distance(real, real)) < 1e-8 * reference


# --- KID -------------------------------------------------------------------------------------------------------------


def test_kid_matches_numpy_unbiased_mmd_when_subsets_are_all_the_data() -> None:
    g = _gen(5)
    real = torch.randn(150, 16, generator=g, dtype=torch.float64)
    fake = 0.8 * torch.randn(150, 16, generator=g, dtype=torch.float64) + 0.3
    reference = _kid_numpy(real.numpy(), fake.numpy())
    # subset_size is capped at 150 = N = M: every subset is a permutation of all the data.
    mean, std = kernel_distance(real, fake, subsets=4, subset_size=1000)
    assert abs(mean - reference) / abs(reference) < 1e-9
    assert std < 1e-9 * abs(reference)


def test_kid_subsets_are_seeded_and_leave_the_global_rng_alone() -> None:
    g = _gen(6)
    real, fake = torch.randn(300, 8, generator=g), torch.randn(200, 8, generator=g) + 0.2
    state = torch.get_rng_state()
    first = kernel_distance(real, fake, subsets=10, subset_size=50, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert kernel_distance(real, fake, subsets=10, subset_size=50, seed=7) == first
    assert kernel_distance(real, fake, subsets=10, subset_size=50, seed=8) != first
    assert first[0] > 0 and first[1] > 0


def test_fid_and_kid_equal_torchmetrics_on_the_same_features() -> None:
    """The product computes FID/KID itself (importing torchmetrics costs a process ~5 s); these are its numbers."""
    from torch import nn
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    class Identity(nn.Module):  # torchmetrics' update() then takes features as they are, in float64
        num_features = 12

        def forward(self, x):
            return x.to(torch.float64)

    g = _gen(9)
    real = torch.randn(400, 12, generator=g, dtype=torch.float64)
    fake = 1.3 * torch.randn(300, 12, generator=g, dtype=torch.float64) + 0.2
    fid = FrechetInceptionDistance(feature=Identity())
    kid = KernelInceptionDistance(feature=Identity(), subsets=7, subset_size=60, degree=3, gamma=1 / 12, coef=1.0)
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    assert frechet_distance(real, fake) == pytest.approx(float(fid.compute()), rel=1e-10)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        mean, std = (float(v) for v in kid.compute())
    assert kernel_distance(real, fake, subsets=7, subset_size=60, seed=3) == pytest.approx((mean, std), rel=1e-10)


# --- precision / recall / density / coverage -------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5])
def test_identical_sets_are_fully_precise_and_covered(k: int) -> None:
    x = torch.randn(400, 8, generator=_gen(9))
    scores = manifold_scores(x, x.clone(), k=k)
    assert scores["precision"] == 1.0 and scores["recall"] == 1.0 and scores["coverage"] == 1.0
    # Each real ball holds its centre and its k neighbours: density = N (k + 1) / (k M) exactly.
    assert scores["density"] == pytest.approx((k + 1) / k)


def test_far_apart_sets_score_zero() -> None:
    g = _gen(10)
    real, fake = torch.randn(300, 8, generator=g), torch.randn(200, 8, generator=g) + 100.0
    assert manifold_scores(real, fake, k=3) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_fake_with_half_of_the_modes_is_precise_with_half_recall() -> None:
    # In 2-D with k=5 the k-NN balls of 250 samples per mode cover fresh samples of the same mode almost surely.
    centres = torch.tensor([[0.0, 0.0], [30.0, 0.0], [0.0, 30.0], [30.0, 30.0]])
    real = _modes(250, centres, seed=11)
    fake = _modes(250, centres[:2], seed=12)
    scores = manifold_scores(real, fake, k=5)
    assert scores["precision"] > 0.95
    assert 0.42 < scores["recall"] <= 0.5
    assert 0.42 < scores["coverage"] <= 0.5
    assert 0.7 < scores["density"] < 1.4


def test_manifold_scores_match_a_full_matrix_reference_whatever_the_block_size() -> None:
    g = _gen(13)
    real = torch.randn(300, 5, generator=g, dtype=torch.float64)
    fake = 1.3 * torch.randn(220, 5, generator=g, dtype=torch.float64) + 0.4
    reference = _manifold_numpy(real.numpy(), fake.numpy(), k=4)
    for block_rows in (None, 7, 1000):
        assert manifold_scores(real, fake, k=4, block_rows=block_rows) == pytest.approx(reference, abs=1e-12)


def test_k_must_leave_neighbours_in_each_set() -> None:
    with pytest.raises(GanforgeError, match=r"k=5 need more than k samples .*real 100, fake 5.*evaluate\.k"):
        manifold_scores(torch.randn(100, 4), torch.randn(5, 4), k=5)


# --- compute_scores / class_accuracy ---------------------------------------------------------------------------------


def test_compute_scores_returns_every_score_as_a_float() -> None:
    g = _gen(14)
    real, fake = torch.randn(200, 12, generator=g), torch.randn(150, 12, generator=g) + 0.5
    scores = compute_scores(real, fake, k=3, kid_subsets=20, kid_subset_size=500, seed=0)
    assert tuple(scores) == SCORE_KEYS
    assert all(type(v) is float and np.isfinite(v) for v in scores.values())
    assert scores["fid"] > 1.0 and scores["kid_mean"] > 0
    same = compute_scores(real, real, kid_subsets=5)
    assert abs(same["fid"]) < 1e-9 and same["precision"] == same["recall"] == 1.0


def test_compute_scores_rejects_features_a_user_can_get_wrong() -> None:
    real = torch.randn(50, 8)
    with pytest.raises(GanforgeError, match="8 dimensions but fake features have 4") as err:
        compute_scores(real, torch.randn(50, 4))
    assert "\n" not in str(err.value)
    bad = torch.randn(50, 8)
    bad[3, 2] = float("nan")
    with pytest.raises(GanforgeError, match="fake features contain NaN or Inf"):
        compute_scores(real, bad)
    with pytest.raises(GanforgeError, match="need at least 2 samples"):
        compute_scores(real, torch.randn(1, 8))


def test_class_accuracy() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    assert class_accuracy(logits, torch.tensor([0, 1, 2, 2])) == 0.75
    with pytest.raises(ValueError, match="expected logits"):
        class_accuracy(logits, torch.tensor([0, 1]))
