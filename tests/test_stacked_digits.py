"""The `stacked_digits` source (StackedMNIST from the built-in digits): shapes, labels, channels, splits, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ganforge.config import ConfigError, DataConfig, load_config
from ganforge.data import PreparedData
from ganforge.data.prepare import prepare

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, name: str, **kw: object) -> Path:
    cfg = DataConfig(**{"source": "stacked_digits", "channels": 3, "num_images": 300, **kw})
    out = tmp_path / name
    prepare(cfg, out, tmp_path / "metrics" / f"{name}.json", progress=False)
    return out


def _manifest(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "manifest.parquet").set_index("path")


@pytest.fixture(scope="module")
def digits16(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    """The built-in digits prepared at 16x16, the way the `digits` source gives them."""
    out = tmp_path_factory.mktemp("digits") / "prepared"
    prepare(DataConfig(resolution=16), out, out.parent / "prepare.json", progress=False)
    return PreparedData.open(out)


def test_shape_labels_and_classes(tmp_path: Path) -> None:
    data = PreparedData.open(_run(tmp_path, "a", resolution=16, num_images=400, test_fraction=0.25))
    assert (data.channels, data.resolution, data.num_classes) == (3, 16, 1000)
    assert data.class_names[:3] == ["000", "001", "002"] and data.class_names[-1] == "999"
    x, y = data.load("train")
    assert x.shape[1:] == (3, 16, 16) and x.dtype == torch.uint8
    assert data.count("test") + data.count("train") >= 398  # an exact repeat (rare) is dropped as a duplicate
    assert 90 <= data.count("test") <= 100  # round(400 * 0.25), less any repeat
    assert y.min() >= 0 and y.max() < 1000 and len(set(y.tolist())) > 250  # modes spread over the 1,000
    assert (x.float().mean(dim=(2, 3)) > 5).all()  # a digit in every channel of every image


def test_each_channel_is_its_digit_and_the_splits_keep_apart(tmp_path: Path, digits16: PreparedData) -> None:
    data = PreparedData.open(_run(tmp_path, "a", resolution=16, num_images=300))  # test_fraction 0.1, like digits16
    for split in ("train", "test"):
        x, y = data.load(split)
        known = {}  # every digits image of that split (as prepared by the `digits` source) -> its class
        for other in ("train", "test"):
            dx, dy = digits16.load(other)
            known[other] = {img.numpy().tobytes(): int(c) for img, c in zip(dx, dy, strict=True)}
        for image, mode in zip(x, y, strict=True):
            wanted = [int(mode) // 100, int(mode) // 10 % 10, int(mode) % 10]
            for channel, digit in zip(image, wanted, strict=True):
                key = channel[None].numpy().tobytes()
                assert known[split].get(key) == digit  # red, green, blue: the digits of the label, byte for byte
                assert key not in known["test" if split == "train" else "train"]  # never a digit of the other split


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    a, b = _run(tmp_path, "a"), _run(tmp_path, "b")
    c = _run(tmp_path, "c", seed=1)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert not np.array_equal(np.load(a / "train-00000.npy")[:10], np.load(c / "train-00000.npy")[:10])
    # image i of a split depends on (seed, split, i) only: more images keep the first ones
    d = _manifest(_run(tmp_path, "d", num_images=600))
    first = _manifest(a)
    assert first.sha256.equals(d.loc[first.index].sha256)


def test_the_channels_must_be_three() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "params.yaml", ["data.source=stacked_digits"])
    assert "data.source 'stacked_digits' puts one digit in each RGB channel: set data.channels=3" in str(err.value)
    assert "\n" not in str(err.value)
    cfg = load_config(ROOT / "params.yaml", ["data.source=stacked_digits", "data.channels=3"])
    assert (cfg.data.num_images, cfg.data.seed) == (30_000, 0)
