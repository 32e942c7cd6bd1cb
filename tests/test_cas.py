"""Classification Accuracy Score: a classifier trained on generated samples only, tested on real test images.
Two stand-in generators bound it: one that returns real train images of the class asked for (CAS close to the
real-data classifier's accuracy) and one that draws every class as the next one (CAS near 0)."""

import pytest
import torch
from torch import nn

from ganforge.cas import SEED_OFFSET, class_accuracy_score
from ganforge.config import EvaluateConfig, FeaturesConfig
from ganforge.data import PreparedData
from ganforge.metrics.classifier import recipe
from ganforge.models import FAMILIES, ModelSpec


class Lookup(nn.Module):
    """G(z, y): a real train image of class (y + shift) % 10, picked by z (so each seed is one image)."""

    def __init__(self, images, labels, shift):
        super().__init__()
        self.spec = ModelSpec.for_data(FAMILIES["dcgan"].config(z_dim=8), resolution=16, channels=1, num_classes=10)
        self.by_class = [images[labels == c].float() / 127.5 - 1 for c in range(10)]
        self.shift = shift
        self.anchor = nn.Parameter(torch.zeros(()))  # where the sampler finds the device

    def forward(self, z, y):
        out = []
        for zi, yi in zip(z, y, strict=True):
            pool = self.by_class[(int(yi) + self.shift) % 10]
            out.append(pool[int(abs(zi[0].item()) * 1e6) % len(pool)])
        return torch.stack(out)


@pytest.fixture(scope="module")
def splits(digits16):
    """The digits' test split, and 80 train images per class (enough to learn 16x16 digits; quick to train on)."""
    data = PreparedData.open(digits16)
    x, y = data.load("train")
    keep = torch.cat([torch.nonzero(y == c).flatten()[:80] for c in range(10)])
    return (x[keep], y[keep]), data.load("test")


FC = FeaturesConfig(epochs=10)


def test_cas_of_real_images_is_near_the_real_classifier_and_of_wrong_classes_near_zero(splits):
    train, test = splits
    ec = EvaluateConfig()
    good, protocol = class_accuracy_score(Lookup(*train, shift=0), ec, FC, train, test)
    assert good["cas_real"] > 0.85 and good["cas"] > 0.8 and good["cas_ratio"] > 0.9
    assert protocol["n_generated"] == len(train[1]) and protocol["epochs"] == 10
    assert protocol["seeds"].startswith(f"{SEED_OFFSET}..") and protocol["reference"].startswith("trained here")
    # the features stage's classifier is the reference when its recipe is this one (no second training) ...
    how = recipe(FC, 10, "shift")  # auto augmentation on grayscale: shifts
    assert {k: protocol[k] for k in how} == how
    bad, p_bad = class_accuracy_score(Lookup(*train, shift=1), ec, FC, train, test, (good["cas_real"], how))
    assert bad["cas"] < 0.15 and bad["cas_ratio"] < 0.2
    assert bad["cas_real"] == good["cas_real"] and p_bad["reference"].startswith("the features stage")
    # ... and not when it was trained otherwise (one epoch here: only which reference it takes is checked)
    one = FeaturesConfig(epochs=1)
    _, p_other = class_accuracy_score(Lookup(*train, shift=1), ec, one, train, test, (0.5, recipe(one, 15, "shift")))
    assert p_other["reference"].startswith("trained here") and p_other["epochs"] == 1
