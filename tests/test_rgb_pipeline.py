"""rgb/: the pipeline `make demo-rgb DATA=...` runs on a user's RGB class folders. The same stages as the image
pipeline, run from rgb/ with its own params (checked here without training: the run itself is a benchmark,
benchmarks/RESULTS.md)."""

import subprocess
from pathlib import Path

import yaml

from ganforge.config import load_config

from .conftest import ROOT


def stages(path):
    return yaml.safe_load(path.read_text())["stages"]


def test_the_rgb_pipeline_runs_the_image_pipelines_stages_from_its_own_folder():
    image, rgb = stages(ROOT / "dvc.yaml"), stages(ROOT / "rgb" / "dvc.yaml")
    assert list(rgb) == list(image) and all(rgb[s]["cmd"] == image[s]["cmd"] for s in image)
    assert "data/raw" in rgb["prepare"]["deps"]  # pointing rgb/data/raw at other images re-runs the pipeline
    for name, stage in rgb.items():
        assert "../src/ganforge" in stage["deps"] and "../pyproject.toml" in stage["deps"], name
        assert stage.get("params") == image[name].get("params"), name


def test_the_rgb_params_load_and_keep_to_their_own_model_and_the_shared_library():
    cfg = load_config(ROOT / "rgb" / "params.yaml")
    assert (cfg.data.source, cfg.data.path, cfg.data.channels, cfg.data.resolution) == ("folder", "data/raw", 3, 32)
    assert cfg.train.model.family == "dcgan" and cfg.train.conditional and cfg.evaluate.cas
    assert set(cfg.registry.gate.min) == {"cas_ratio", "precision"}  # scores an RGB conditional model reports
    assert cfg.registry.model_name not in {"ganforge-digits", "ganforge-moving-digits"}
    assert cfg.library.dir == "../library" and cfg.features.augment == "auto" and cfg.features.epochs == "auto"


def test_make_demo_rgb_names_what_it_needs_without_starting():
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    out = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "demo-rgb", "DATA=/nonexistent/folder"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0 and "make demo-rgb: DATA=/nonexistent/folder is not a folder" in out.stderr
    raw = ROOT / "rgb" / "data" / "raw"
    assert not raw.is_symlink() or raw.readlink() != Path("/nonexistent/folder")  # nothing linked to a bad DATA


def test_the_report_says_when_no_version_passed_the_gate(tmp_path, monkeypatch, capsys):
    import json

    from ganforge import cli

    (tmp_path / "metrics").mkdir()
    reason = "first version, but bounds failed: cas_ratio 0.13 < min 0.3: there is no champion until a version passes"
    registry = {"model_name": "ganforge-rgb", "version": 1, "promoted": False, "reason": reason, "champion": None}
    protocol = {"extractor": "classifier", "n_real": 310, "n_fake": 2000}
    scores = {"fid": 33.4, "kid_mean": 0.7, "precision": 0.6, "recall": 0.1, "class_accuracy": 0.24}
    ev = {**scores, "cas": 0.116, "cas_real": 0.874, "cas_ratio": 0.133, "protocol": protocol, "registry": registry}
    (tmp_path / "metrics" / "eval.json").write_text(json.dumps(ev))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert cli.main(["report"]) == 0
    out = capsys.readouterr().out
    assert "CAS 0.116 (13% of real data's 0.874)" in out and "champion is vNone" not in out
    assert "no champion yet: train longer, or `ganforge registry promote 1` by hand" in out
    assert "not built from this evaluation" in out and "report: the pipeline stopped before the library" in out
