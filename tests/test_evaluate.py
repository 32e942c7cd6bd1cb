import json
import shutil

import numpy as np
import pytest
import torch

from ganforge.config import gate_scores, load_config
from ganforge.errors import GanforgeError
from ganforge.evaluate import evaluate, generate
from ganforge.features import train_classifier
from ganforge.metrics import classifier
from ganforge.paths import Paths
from ganforge.training import checkpoint
from ganforge.training.loop import train

from .conftest import NO_CLASS_GATE, ROOT, TINY_MODEL

TINY_TRAIN = [
    *TINY_MODEL,
    "train.steps=4",
    "evaluate.n_fake=200",
    "evaluate.kid_subsets=10",
    "evaluate.kid_subset_size=50",
]


@pytest.fixture(scope="module")
def trained(digits16, tmp_path_factory):
    """digits at 16x16 with the default classifier (the real bar) and a tiny 4-step generator."""
    paths = Paths(tmp_path_factory.mktemp("eval"))
    shutil.copytree(digits16, paths.prepared)
    cfg = load_config(ROOT / "params.yaml", TINY_TRAIN)
    summary = train_classifier(cfg.features, paths, progress=False)
    train(cfg, paths, progress=False)
    return paths, cfg, summary


def test_classifier_reaches_the_bar_on_digits(trained):
    paths, _, summary = trained
    assert summary.test_accuracy >= 0.97, summary
    record = json.loads((paths.metrics / "features.json").read_text())
    assert record["test_accuracy"] == summary.test_accuracy and record["n_test"] > 100
    net, meta = classifier.load(paths.classifier)
    assert meta["class_names"] == [str(i) for i in range(10)] and len(meta["sha256"]) == 64
    feats, logits = net(torch.zeros(2, 1, 16, 16))
    assert feats.shape == (2, 128) and logits.shape == (2, 10)


def test_evaluate_records_scores_with_protocol_and_caches_reference(trained):
    paths, cfg, _ = trained
    first = evaluate(cfg, paths)
    ev = json.loads((paths.metrics / "eval.json").read_text())
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "class_accuracy"):
        assert np.isfinite(ev[key]), key
    p = ev["protocol"]
    assert p["extractor"] == "classifier" and p["weights_sha256"] == classifier.load(paths.classifier)[1]["sha256"]
    assert (p["n_fake"], p["split"], p["generator"], p["checkpoint_step"]) == (200, "test", "ema", 4)
    assert p["n_real"] == json.loads((paths.prepared / "info.json").read_text())["splits"]["test"]["count"]
    assert p["kid_subset_size"] == 50 and p["torch"] == torch.__version__ and p["fid_kid"].startswith("float64")
    assert p["reference_from_cache"] is False and p["resolution"] == 16
    assert ev["registry"] == {"skipped": "tracking.enabled is false"}
    assert set(first.scores) == set(gate_scores(cfg))  # exactly the names a gate bound may use
    second = evaluate(cfg, paths)
    assert second.protocol["reference_from_cache"] is True
    assert second.scores == first.scores  # deterministic: same seed, same cached reference
    assert "FID" in first.line(paths.metrics / "eval.json")


def test_cas_is_scored_with_its_protocol_and_reuses_the_features_classifier(trained):
    paths, cfg, summary = trained
    with_cas = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"cas": True})})
    result = evaluate(with_cas, paths)
    s, p = result.scores, result.protocol["cas"]
    assert s["cas_real"] == summary.test_accuracy and p["reference"].startswith("the features stage")
    assert 0 <= s["cas"] <= 1 and s["cas_ratio"] == pytest.approx(s["cas"] / s["cas_real"])
    assert p["n_generated"] == summary.n_train and p["epochs"] == cfg.features.epochs
    ev = json.loads((paths.metrics / "eval.json").read_text())
    assert ev["cas"] == s["cas"] and ev["protocol"]["cas"]["seeds"] == p["seeds"]
    assert "CAS" in result.line(paths.metrics / "eval.json")
    assert set(result.scores) == set(gate_scores(with_cas))


def test_raw_generator_is_scored_too(trained):
    paths, _, _ = trained
    raw_cfg = load_config(ROOT / "params.yaml", [*TINY_TRAIN, "evaluate.raw_generator=true"])
    evaluate(raw_cfg, paths)
    ev = json.loads((paths.metrics / "eval.json").read_text())
    assert set(ev["raw"]) >= {"fid", "precision", "recall"} and ev["raw"]["fid"] != ev["fid"]


def test_generate_is_deterministic_and_balanced(trained):
    paths, _, _ = trained
    G = checkpoint.load_generator(paths.checkpoint)
    a, y = generate(G, 30, 10, seed=3, truncation=1.0, batch=7)
    b, _ = generate(G, 30, 10, seed=3, truncation=1.0, batch=30)
    assert a.dtype == torch.uint8 and torch.equal(a, b) and torch.bincount(y).tolist() == [3] * 10


def test_unlabelled_data_names_both_ways_out(tmp_path, digits16):
    paths = Paths(tmp_path)
    shutil.copytree(digits16, paths.prepared)
    info = json.loads((paths.prepared / "info.json").read_text())
    info.update(num_classes=0, class_names=[])
    (paths.prepared / "info.json").write_text(json.dumps(info))
    cfg = load_config(ROOT / "params.yaml", [*TINY_TRAIN, "train.conditional=false", NO_CLASS_GATE])
    s = train_classifier(cfg.features, paths, progress=False)
    assert "skipped" in s.line(paths.classifier)
    train(cfg, paths, progress=False)
    with pytest.raises(GanforgeError, match=r"evaluate\.extractor=inception.*one sub-folder per class"):
        evaluate(cfg, paths)
