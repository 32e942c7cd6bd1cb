"""The features classifier's recipe: `auto` epochs sized by the data, `auto` augmentation by channels, and the
strong (RGB) augmentation itself."""

import pytest
import torch

from ganforge.config import FeaturesConfig
from ganforge.metrics.classifier import AUGMENTS, plan, recipe, strong_augment


@pytest.mark.parametrize(
    ("n_train", "channels", "epochs"),
    [
        (1617, 1, 16),  # the digits' train split: 13 steps an epoch, ~200 steps
        (2810, 3, 60),  # the colour-emoji set: 22 steps an epoch, ~1,300 steps
        (100, 3, 200),  # a tiny set: capped
        (100_000, 3, 15),  # a large one: never fewer than 15 epochs
    ],
)
def test_auto_epochs_are_sized_by_the_data(n_train, channels, epochs):
    assert plan(FeaturesConfig(), n_train, channels)[0] == epochs


def test_auto_augmentation_is_strong_for_rgb_and_shifts_for_grayscale():
    assert plan(FeaturesConfig(), 500, 3) == (200, "strong")  # 4 steps an epoch: the cap
    assert plan(FeaturesConfig(), 500, 1)[1] == "shift"
    assert plan(FeaturesConfig(epochs=7, augment="none"), 500, 3) == (7, "none")
    fc = FeaturesConfig(epochs=7)
    assert recipe(fc, *plan(fc, 500, 3)) == {**recipe(fc, 7, "strong"), "epochs": 7, "augment": "strong"}
    assert set(AUGMENTS) == {"none", "shift", "strong"}


def test_strong_augmentation_keeps_shape_and_range_and_follows_its_generator():
    x = torch.rand(16, 3, 32, 32) * 2 - 1
    a = strong_augment(x, torch.Generator().manual_seed(0))
    b = strong_augment(x, torch.Generator().manual_seed(0))
    c = strong_augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    assert (a == 0).flatten(1).any(dim=1).all()  # every image has its cutout square
    gray = strong_augment(torch.rand(4, 1, 16, 16) * 2 - 1, torch.Generator().manual_seed(0))
    assert gray.shape == (4, 1, 16, 16)  # no colour jitter on one channel, the rest applies
