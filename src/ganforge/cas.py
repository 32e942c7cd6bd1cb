"""Classification Accuracy Score (Ravuri & Vinyals 2019): are a conditional generator's samples useful as data?

A classifier is trained on generated samples only and tested on the real test split; the same classifier (the
features stage's recipe: architecture, epochs, learning rate, augmentation, seed) trained on the real train split
is the reference, and `cas_ratio` = CAS / that accuracy. The generated training set has as many images per class
as the real train split (so both classifiers see the same amount and balance of data), drawn from seeds
`SEED_OFFSET + evaluate.seed + i` (apart from the evaluation's fake samples) at `evaluate.truncation`, through the
one Sampler. The reference is the features stage's own classifier when its file says it was trained with this
recipe (no second training); otherwise it is trained here too.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ganforge.config import EvaluateConfig, FeaturesConfig
from ganforge.metrics import classifier
from ganforge.metrics.classifier import accuracy
from ganforge.sampling import Sampler

SEED_OFFSET = 1_000_000  # CAS's samples start here (+ evaluate.seed): never the evaluation's own fake samples


def _train(fc: FeaturesConfig, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[nn.Module, dict]:
    net, _, how = classifier.train_new(fc, lambda _: (x, y), x.shape[1], num_classes, desc="cas", progress=False)
    return net, how


def class_accuracy_score(
    G: nn.Module,
    ec: EvaluateConfig,
    fc: FeaturesConfig,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    reference: tuple[float, dict[str, Any]] | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """({cas, cas_real, cas_ratio}, protocol) for a conditional image generator G. `train`/`test`: the real splits
    (uint8 images, labels). `reference`: (test accuracy, recipe) of a classifier already trained on the real train
    split; used when its recipe is this one, else the reference is trained here."""
    t0 = time.perf_counter()
    x_train, y_train = train
    x_test, y_test = test
    num_classes = int(G.spec.num_classes)
    counts = torch.bincount(y_train, minlength=num_classes)
    y_fake = torch.repeat_interleave(torch.arange(num_classes), counts)  # the real split's per-class counts
    start = SEED_OFFSET + ec.seed
    x_fake = Sampler(G, batch_size=ec.batch_size).uint8(range(start, start + len(y_fake)), y_fake, ec.truncation)
    on_fake, how = _train(fc, x_fake, y_fake, num_classes)
    cas = accuracy(on_fake, x_test, y_test)
    if reference is not None and reference[1] == how:
        real, source = reference[0], "the features stage's classifier (same recipe)"
    else:
        real = accuracy(_train(fc, x_train, y_train, num_classes)[0], x_test, y_test)
        source = "trained here on the real train split"
    scores = {"cas": cas, "cas_real": real, "cas_ratio": cas / real if real > 0 else float("nan")}
    protocol = {
        **how,
        "n_generated": len(y_fake),
        "per_class": "as the real train split",
        "seeds": f"{start}..{start + len(y_fake) - 1}",
        "truncation": ec.truncation,
        "tested_on": f"real test split ({len(y_test)} images)",
        "reference": source,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return scores, protocol
