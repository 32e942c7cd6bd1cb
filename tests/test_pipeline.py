"""The pipeline for real: `dvc repro` and `dvc exp run` in a temporary git repo made from this
checkout, with tiny params; the MLflow run is read back from the sqlite store DVC's stages wrote."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import make_tiny_repo, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_tiny_repo(tmp_path_factory.mktemp("clone") / "repo")


def mlflow_client(repo_dir: Path):
    from mlflow.tracking import MlflowClient

    db = repo_dir / "mlflow.db"
    assert db.exists(), "the default store is sqlite:///<repo root>/mlflow.db"
    return MlflowClient(tracking_uri=f"sqlite:///{db}")


def test_dvc_repro_end_to_end(repo):
    dest, env = repo
    dvc = [sys.executable, "-m", "dvc"]
    out = run([*dvc, "repro"], dest, env)
    assert "prepare:" in out and "train: trained to step 6" in out

    prep = json.loads((dest / "metrics/prepare.json").read_text())
    assert prep["kept"] == 1797 and prep["num_classes"] == 10 and prep["resolution"] == 16
    manifest = pd.read_parquet(dest / "data/prepared/manifest.parquet")
    assert len(manifest) == 1797 and set(manifest["status"]) == {"kept"}
    assert json.loads((dest / "metrics/train.json").read_text())["steps"] == 6
    assert (dest / "plots/samples.png").stat().st_size > 0
    assert sorted(p.name for p in (dest / "plots/samples").iterdir()) == ["step_000003.png", "step_000006.png"]
    assert (dest / "models/checkpoint.pt").exists()

    # the MLflow run, read back from the sqlite store at the repo root
    run_id = json.loads((dest / "models/mlflow_run.json").read_text())["run_id"]
    client = mlflow_client(dest)
    r = client.get_run(run_id)
    assert r.info.status == "FINISHED"
    assert r.data.params["train.steps"] == "6" and r.data.params["data.resolution"] == "16"
    head = run(["git", "rev-parse", "HEAD"], dest, env).strip()
    assert r.data.tags["mlflow.source.git.commit"] == head
    assert [m.step for m in client.get_metric_history(run_id, "loss_d")] == [
        2,
        3,
        4,
        6,
    ]  # checkpoints flush the log too
    assert "images_per_sec" in r.data.metrics
    arts = [a.path for a in client.list_artifacts(run_id, "samples")]
    assert arts == ["samples/step_000003.png", "samples/step_000006.png"]

    # evaluate: scores with their protocol, logged to the train run, first version becomes champion
    ev = json.loads((dest / "metrics/eval.json").read_text())
    assert ev["protocol"]["extractor"] == "classifier" and ev["protocol"]["n_fake"] == 100
    assert ev["registry"]["version"] == 1 and ev["registry"]["promoted"] and ev["registry"]["run_id"] == run_id
    assert "first version" in ev["registry"]["reason"]
    r = client.get_run(run_id)
    assert r.data.metrics["eval.fid"] == pytest.approx(ev["fid"])
    assert r.data.tags["eval.protocol.extractor"] == "classifier"
    assert json.loads((dest / "metrics/features.json").read_text())["n_test"] > 100
    shown = run([*dvc, "metrics", "show"], dest, env)
    assert "fid" in shown and "test_accuracy" in shown

    # library: drawn from the champion through the registry, provenance in the catalog, counts in MLflow
    lib = json.loads((dest / "metrics/library.json").read_text())
    assert lib["protocol"]["source"] == "models:/tiny-digits/1" and lib["protocol"]["run_id"] == run_id
    cat = pd.read_parquet(dest / "library/catalog.parquet")
    assert len(cat) == lib["catalog_assets"] == lib["accepted"] > 0
    assert set(cat["model_version"]) == {"1"} and set(cat["run_id"]) == {run_id}
    assert set(cat["kind"]) == {"image", "latent_walk", "class_morph"}
    assert client.get_run(run_id).data.metrics["library.accepted"] == lib["accepted"]
    assert f'"n":{len(cat)},' in (dest / "library/index.html").read_text()  # the gallery's index
    assert "Asset library" in run([sys.executable, "-m", "ganforge", "report"], dest, env)

    # nothing changed: DVC skips every stage
    again = run([*dvc, "repro"], dest, env)
    assert "didn't change, skipping" in again and "train: trained" not in again and "evaluate:" not in again

    # the whole package is a dependency of every stage: an edit to data/dataset.py (train reads its batches
    # through it, and no per-stage list of modules named it) makes DVC see train, and every other stage, changed
    def status() -> dict:
        cmd = [*dvc, "status", "--json", "dvc.yaml"]  # the image pipeline (video/dvc.yaml has never run here)
        out = subprocess.run(cmd, cwd=dest, env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    dataset = dest / "src/ganforge/data/dataset.py"
    original = dataset.read_bytes()
    dataset.write_bytes(original + b"\n# an edit\n")
    changed = status()
    assert {"changed deps": {"src/ganforge": "modified"}} in changed["train"]
    assert set(changed) == {"prepare", "features", "train", "evaluate", "library"}
    dataset.write_bytes(original)
    assert status() == {}

    # re-running evaluate for the same train run reuses its version: no duplicates
    forced = run([*dvc, "repro", "-f", "-s", "evaluate"], dest, env)
    assert "evaluate: FID" in forced
    assert [str(v.version) for v in client.search_model_versions("name='tiny-digits'")] == ["1"]

    # the champion loads in a fresh Python process; one seed, one image (a 6-step generator is too
    # untrained for distinct images: tests/test_registry.py checks 64 distinct ones)
    code = (
        "import mlflow, pandas as pd, numpy as np;"
        "m = mlflow.pyfunc.load_model('models:/tiny-digits@champion');"
        "df = pd.DataFrame({'seed': list(range(64)) + [5], 'class': [i % 10 for i in range(64)] + [5]});"
        "x = m.predict(df); print(x.shape, x.dtype, bool((x[5] == x[64]).all()))"
    )
    env_load = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{dest / 'mlflow.db'}"}
    assert run([sys.executable, "-c", code], dest, env_load).strip().endswith("(65, 1, 16, 16) uint8 True")
    # a library image regenerates exactly from its address through the registered sampler
    row = cat[cat["kind"] == "image"].iloc[-1]
    code = (
        "import mlflow, pandas as pd, numpy as np; from PIL import Image;"
        f"m = mlflow.pyfunc.load_model('models:/tiny-digits/{row['model_version']}');"
        f"x = m.predict(pd.DataFrame({{'seed': [{row['seeds'][0]}], 'class': [{row['class']}],"
        f" 'truncation': [{row['truncation']}]}}));"
        f"print(bool((x[0, 0] == np.asarray(Image.open('library/{row['path']}'))).all()))"
    )
    assert run([sys.executable, "-c", code], dest, env_load).strip().endswith("True")

    # plots render from the loss CSV
    run([*dvc, "plots", "show", "-o", "dvc_plots"], dest, env)
    html = (dest / "dvc_plots/index.html").read_text()
    assert "loss_d" in html and "d_fake" in html


def test_dvc_exp_run_with_override(repo):
    dest, env = repo
    dvc = [sys.executable, "-m", "dvc"]
    # a margin no FID beats: the gate rejects the experiment's version, whatever 8 steps do to its FID
    out = run(
        [*dvc, "exp", "run", "-n", "longer", "-S", "train.steps=8", "-S", "registry.gate.fid_margin=1000"], dest, env
    )
    assert "train: trained to step 8" in out
    assert json.loads((dest / "metrics/train.json").read_text())["steps"] == 8
    shown = run([*dvc, "exp", "show", "--csv"], dest, env)
    assert "longer" in shown
    runs = mlflow_client(dest).search_runs(
        [mlflow_client(dest).get_experiment_by_name("ganforge").experiment_id],
        filter_string="tags.`dvc.exp_name` = 'longer'",
    )
    assert len(runs) == 1 and runs[0].data.params["train.steps"] == "8"
    # the experiment's generator is a second version; champion points at an existing version
    ev = json.loads((dest / "metrics/eval.json").read_text())
    assert ev["registry"]["version"] == 2 and ev["registry"]["run_id"] == runs[0].info.run_id
    client = mlflow_client(dest)
    champion = client.get_model_version_by_alias("tiny-digits", "champion")
    assert str(champion.version) == str(ev["registry"]["champion"]) == "1" and not ev["registry"]["promoted"]
    assert "margin 1000" in ev["registry"]["reason"]
    ganforge = [sys.executable, "-m", "ganforge", "registry"]
    listed = run([*ganforge, "list"], dest, env)
    assert "v1" in listed and "v2" in listed and "registry: tiny-digits has 2 version(s)" in listed
    assert "gate: promoted" in listed and "gate: rejected" in listed
    other = "1" if str(champion.version) == "2" else "2"
    assert f"champion -> v{other}" in run([*ganforge, "promote", other], dest, env)
    assert f"rolled back to v{champion.version}" in run([*ganforge, "rollback"], dest, env)
    assert str(client.get_model_version_by_alias("tiny-digits", "champion").version) == str(champion.version)
    bad = subprocess.run([*ganforge, "promote", "9"], cwd=dest, env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no version 9" in bad.stderr
