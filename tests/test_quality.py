"""Quality: a small class-conditional model trained briefly on the digits must stay good. Fails when the
generator gets worse (a broken loss, a wrong sign, an augmentation leaking, a slower-learning default).

Bounds calibrated on 2026-12-01 (2 CPU cores) over seeds 0, 1, 2 at these settings: class accuracy 0.836 /
0.816 / 0.876, precision 0.670 / 0.662 / 0.736, recall 0.747 / 0.765 / 0.719, FID 6.55 / 7.88 / 6.17 (in the
digit classifier's feature space, n_fake 500 against the 16x16 test split). 400 steps of the same model give
class accuracy ~0.3 and FID 16-24, which these bounds reject.
"""

import json
import shutil

import pytest

from ganforge.config import load_config
from ganforge.evaluate import evaluate
from ganforge.features import train_classifier
from ganforge.paths import Paths
from ganforge.training.loop import train

from .conftest import ROOT

SETTINGS = [
    "tracking.enabled=false",
    "train.device=cpu",
    "train.steps=1200",
    "train.model.g_width=16",
    "train.model.d_width=16",
    "train.model.z_dim=32",
    "train.batch_size=32",
    "train.sample_every=100000",
    "train.checkpoint_every=100000",
    "evaluate.n_fake=500",
    "evaluate.kid_subsets=20",
    "evaluate.kid_subset_size=100",
]
BOUNDS = {"class_accuracy": (0.70, None), "recall": (0.55, None), "precision": (0.5, None), "fid": (None, 11.0)}


@pytest.mark.slow
def test_a_brief_run_on_the_digits_keeps_its_quality(tmp_path, digits16):
    paths = Paths(tmp_path / "quality")
    shutil.copytree(digits16, paths.prepared)
    cfg = load_config(ROOT / "params.yaml", SETTINGS)
    train_classifier(cfg.features, paths, progress=False)
    train(cfg, paths, progress=False)
    evaluate(cfg, paths)
    ev = json.loads((paths.metrics / "eval.json").read_text())
    scores = {k: round(ev[k], 3) for k in BOUNDS}
    for key, (low, high) in BOUNDS.items():
        assert low is None or ev[key] >= low, f"{key} {ev[key]:.3f} < {low}: {scores}"
        assert high is None or ev[key] <= high, f"{key} {ev[key]:.3f} > {high}: {scores}"
