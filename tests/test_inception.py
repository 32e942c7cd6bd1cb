"""The FID Inception loader, on a weights file of the real layout with random values (never the real weights)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch
import torchvision

from ganforge.errors import GanforgeError
from ganforge.metrics.inception import (
    FEATURE_DIM,
    WEIGHTS_FILE,
    WEIGHTS_FILE_ALIASES,
    WEIGHTS_SHA256,
    FIDInceptionV3,
    load_inception,
)


def _random_state_dict() -> dict[str, torch.Tensor]:
    """The layout of the published file (torchvision's Inception3, 1008 classes, no aux head), random values.

    Conv weights are He-scaled and batch-norm statistics perturbed so that the signal neither dies nor explodes.
    """
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, value in net.state_dict().items():
        if key.endswith("conv.weight"):
            value = torch.randn(value.shape, generator=g) * (2.0 / value[0].numel()) ** 0.5
        elif key.endswith(("bn.weight", "running_var")):
            value = 0.5 + torch.rand(value.shape, generator=g)
        elif key.endswith(("bn.bias", "running_mean")):
            value = 0.1 * torch.randn(value.shape, generator=g)
        state[key] = value
    return state


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return _random_state_dict()


@pytest.fixture(scope="module")
def weights(state: dict[str, torch.Tensor], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("weights") / WEIGHTS_FILE
    torch.save(state, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def loaded(weights: tuple[Path, str]) -> tuple[FIDInceptionV3, dict]:
    path, sha = weights
    return load_inception(str(path), download=False, expected_sha256=sha)


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    assert Path(torch.hub.get_dir()) / "checkpoints" == hub
    return hub


def _images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def test_a_local_file_loads_and_gives_pool_features(
    loaded: tuple[FIDInceptionV3, dict], weights: tuple[Path, str]
) -> None:
    model, protocol = loaded
    assert protocol == {
        "extractor": "inception-v3-fid-2015-12-05",
        "weights_sha256": weights[1],
        "resize": "bilinear 299x299 antialias=True",
        "feature_dim": 2048,
    }
    feats = model(_images(2, 3, 32))
    assert feats.shape == (2, FEATURE_DIM) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and feats.std(dim=0).mean() > 1e-3  # distinct images, distinct features
    gray = _images(1, 1, 28, seed=1)
    assert torch.allclose(model(gray), model(gray.expand(-1, 3, -1, -1).contiguous()))
    model.train()
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def _close(ours: torch.Tensor, expected: torch.Tensor) -> bool:
    return torch.allclose(ours, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_features_match_torch_fidelity_and_torchmetrics_on_the_same_file(
    loaded: tuple[FIDInceptionV3, dict], weights: tuple[Path, str]
) -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torchmetrics.image.fid import NoTrainInceptionV3

    path = str(weights[0])
    # At 299x299 nothing is resized: the network itself must agree with torch-fidelity's.
    images = _images(1, 3, 299, seed=2)
    (expected,) = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=path)(
        images
    )
    assert _close(loaded[0](images), expected)
    # Smaller images: the bilinear resize (antialias=True) must agree with torchmetrics' default FID extractor.
    small = _images(1, 3, 32, seed=3)
    reference = NoTrainInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=path, antialias=True)
    assert _close(loaded[0](small), reference(small))


def test_a_file_without_batch_norm_counters_loads_too(state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    path = tmp_path / "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's name, in a directory
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    model, protocol = load_inception(str(tmp_path), download=False, resize_filter="nearest", expected_sha256=sha)
    assert protocol["resize"] == "nearest-exact 299x299 antialias=False"
    assert torch.equal(model.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])


@pytest.mark.parametrize("name", WEIGHTS_FILE_ALIASES)
def test_the_torch_hub_cache_is_searched(weights: tuple[Path, str], empty_hub: Path, name: str) -> None:
    empty_hub.mkdir(parents=True)
    (empty_hub / name).symlink_to(weights[0])
    _, protocol = load_inception(None, download=False, resize_filter="bicubic", expected_sha256=weights[1])
    assert protocol["weights_sha256"] == weights[1]
    assert protocol["resize"] == "bicubic 299x299 antialias=True"


def test_a_wrong_hash_is_one_line_with_expected_and_actual(weights: tuple[Path, str]) -> None:
    with pytest.raises(GanforgeError) as err:
        load_inception(str(weights[0]), download=False)
    message = str(err.value)
    assert "\n" not in message
    assert f"sha256 is {weights[1]}, expected {WEIGHTS_SHA256}" in message and str(weights[0]) in message


def test_a_missing_file_names_both_places_to_put_it(empty_hub: Path, tmp_path: Path) -> None:
    with pytest.raises(GanforgeError) as err:
        load_inception(None, download=False)
    message = str(err.value)
    assert "\n" not in message
    for part in (WEIGHTS_FILE, "evaluate.inception_weights", str(empty_hub), "evaluate.download=true"):
        assert part in message
    absent = tmp_path / "nowhere" / WEIGHTS_FILE
    with pytest.raises(GanforgeError, match=re.escape(f"not found at evaluate.inception_weights ({absent})")):
        load_inception(str(absent), download=False)


def test_inputs_must_be_uint8_images_with_1_or_3_channels(loaded: tuple[FIDInceptionV3, dict]) -> None:
    model = loaded[0]
    with pytest.raises(ValueError, match="expected uint8 images"):
        model(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="expected uint8 images"):
        model(_images(1, 4, 32))
    with pytest.raises(ValueError, match="resize_filter"):
        FIDInceptionV3("lanczos")
