"""Image translation: the digit_styles source, domains from class folders, the cyclegan and stargan families, the
translation step through the same loop (exact resume), evaluate's translation scores, `ganforge translate` into
the library with provenance, and the one-line errors of each bad input."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ganforge.assets import catalog
from ganforge.cli import main
from ganforge.config import ConfigError, DataConfig, load_config
from ganforge.data.prepare import prepare
from ganforge.data.sources import digit_styles
from ganforge.errors import GanforgeError
from ganforge.models import FAMILIES, ModelSpec, build
from ganforge.models.cyclegan import route
from ganforge.paths import Paths
from ganforge.training import checkpoint, loop
from ganforge.training.loop import train
from ganforge.training.objective.cycle import HistoryPool
from ganforge.training.sampler import DomainSampler
from ganforge.training.translation import content_keys, counterparts, domain_table

from .conftest import ROOT
from .test_train import states_equal

STYLES = {"source": "digit_styles", "styles": ["handwritten", "sans", "serif", "mono"], "num_images": 120,
          "resolution": 16, "test_fraction": 0.2}  # fmt: skip
TINY = [
    "train.model.g_width=4",
    "train.model.d_width=4",
    "train.model.blocks=1",
    "train.batch_size=8",
    "train.log_every=2",
    "train.sample_every=3",
    "train.checkpoint_every=3",
    "train.device=cpu",
    "tracking.enabled=false",
    "translate.domains=[handwritten_*, sans_*]",
    "evaluate.n_fake=40",
    "evaluate.kid_subsets=5",
    "features.epochs=2",
    "features.width=8",
    "registry.gate.min={content_accuracy: 0.0}",  # params.yaml's bounds are a generator's
]


@pytest.fixture(scope="module")
def styles16(tmp_path_factory):
    root = tmp_path_factory.mktemp("styles16")
    out = root / "data" / "prepared"
    prepare(DataConfig(**STYLES), out, root / "metrics" / "prepare.json", progress=False)
    return out


def workdir(tmp_path: Path, prepared: Path, name: str) -> Paths:
    paths = Paths(tmp_path / name)
    shutil.copytree(prepared, paths.prepared)
    return paths


def cfg(*extra: str, family: str = "cyclegan"):
    return load_config(ROOT / "params.yaml", [f"train.model={family}", *TINY, *extra])


def test_digit_styles_are_deterministic_classes_of_style_and_digit():
    config = DataConfig(source="digit_styles", styles=["handwritten", "mono"], num_images=30, resolution=16)
    a, b = digit_styles(config), digit_styles(config)
    assert a.class_names == [f"handwritten_{d}" for d in range(10)] + [f"mono_{d}" for d in range(10)]
    typeset = [i for i in a.items if i.path.startswith("mono/")]
    assert len(typeset) == 30 and len(a.items) == 1797 + 30
    assert all(np.array_equal(x.array, y.array) for x, y in zip(a.items, b.items, strict=True))
    assert all(i.class_name == f"mono_{i.label - 10}" for i in typeset)
    ink = np.stack([i.array for i in typeset])
    assert ink.shape == (30, 32, 32) and ink.max() > 190 and ink[:, 0, :].mean() < 10  # light ink on black
    with pytest.raises(ConfigError, match="each style once"):
        load_config(ROOT / "params.yaml", ["data.source=digit_styles", "data.styles=[sans, sans]"])


def test_domains_from_class_names_and_patterns():
    names = ["hw_0", "hw_1", "ty_0", "ty_1", "other"]
    table, domains = domain_table(names, ["hw_*", "ty_*"])
    assert table.tolist() == [0, 0, 1, 1, -1] and domains == ["hw_*", "ty_*"]
    assert content_keys(names, ["hw_*", "ty_*"]) == ["0", "1", "0", "1", None]
    assert domain_table(names, [])[0].tolist() == [0, 1, 2, 3, 4]
    # what D's class head expects of a translation: the target domain's class with the same content
    assert counterparts(names, ["hw_*", "ty_*"]).tolist() == [[0, 2], [1, 3], [0, 2], [1, 3], [-1, -1]]
    assert counterparts(names[:3], [])[:, 2].tolist() == [2, 2, 2]  # one class per domain: that class
    with pytest.raises(GanforgeError, match=r"'x_\*' matches no class of the prepared data \(hw_0, hw_1"):
        domain_table(names, ["hw_*", "x_*"])
    with pytest.raises(GanforgeError, match="class 'hw_0' is in 'hw_\\*' and 'hw_0'"):
        domain_table(names, ["hw_*", "hw_0"])


def test_batches_are_balanced_over_domains_of_any_size():
    domains = torch.tensor([0] * 90 + [1] * 10 + [-1] * 50)
    s = DomainSampler(domains, 8, seed=0)
    for _ in range(20):
        d = domains[s.next()]
        assert (d >= 0).all() and int((d == 0).sum()) == 4


def test_routing_keeps_each_row_with_its_network():
    nets = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Flatten(0)])  # 1: a visibly different function
    nets[1] = torch.nn.Module()
    nets[1].forward = lambda x: -x  # type: ignore[method-assign]
    x = torch.arange(6.0).view(6, 1)
    which = torch.tensor([1, 0, 1, 1, 0, 0])
    assert route(nets, x, which).flatten().tolist() == [-0.0, 1.0, -2.0, -3.0, 4.0, 5.0]


def test_history_pool_fills_then_swaps_about_half():
    torch.manual_seed(0)
    pool = HistoryPool(4, (1, 2, 2))
    first = torch.ones(4, 1, 2, 2)
    out, d = pool.query(first, torch.tensor([0, 1, 0, 1]))
    assert d.tolist() == [0, 1, 0, 1]
    assert torch.equal(out, first) and int(pool.filled) == 4
    swapped = 0
    for _ in range(50):
        out, _ = pool.query(torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long))
        swapped += int((out.flatten(1).sum(1) != 0).sum())
    assert swapped > 0  # stored fakes come back
    assert set(HistoryPool(4, (1, 2, 2)).state_dict()) == {"images", "domains", "filled"}


@pytest.mark.parametrize("family", ["cyclegan", "stargan"])
def test_translators_map_images_to_images_of_each_target(family):
    config = FAMILIES[family].config(g_width=4, d_width=4, blocks=1)
    spec = ModelSpec.for_data(config, resolution=16, channels=3, num_classes=2 if family == "cyclegan" else 4,
                              class_head=family == "stargan")  # fmt: skip
    G, D = build(spec).values()
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    target = torch.tensor([0, 1, 1, 0, 1])
    y = G(x, target)
    assert y.shape == x.shape and y.abs().max() <= 1
    one = G(x[1:2], target[1:2])  # a row's result does not depend on the others (instance norm)
    assert torch.allclose(one, y[1:2], atol=1e-5)
    out = D(y, target)
    assert out.logits[0].shape[0] == 5
    if family == "stargan":
        assert out.class_logits.shape == (5, 4) and out.class_target is None  # the step knows the targets


@pytest.mark.parametrize("family", ["cyclegan", "stargan"])
def test_training_resumes_exactly(tmp_path, styles16, family, monkeypatch):
    """Interrupted (Ctrl-C) at step 3 of 6 and resumed = 6 straight, with the learning-rate decay (from step 3 on),
    the history pool and StarGAN's 3 domains."""
    three = ["train.model.d_layers=2", "translate.domains=[handwritten_*, sans_*, serif_*]"]
    extra = three if family == "stargan" else ["train.class_loss=1.0"]  # cyclegan with its class head
    straight = workdir(tmp_path, styles16, "straight")
    s = train(cfg("train.steps=6", *extra, family=family), straight, progress=False)
    assert s.steps == 6 and s.loss_g == s.loss_g
    halves = workdir(tmp_path, styles16, "halves")
    real_step = loop.translate_step

    def step_then_ctrl_c(s, next_batch):
        out = real_step(s, next_batch)
        if s.step_count == 3:
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(loop, "translate_step", step_then_ctrl_c)
    assert train(cfg("train.steps=6", *extra, family=family), halves, progress=False).interrupted
    monkeypatch.setattr(loop, "translate_step", real_step)
    train(cfg("train.steps=6", *extra, family=family), halves, resume=True, progress=False)
    a, b = checkpoint.load(straight.checkpoint), checkpoint.load(halves.checkpoint)
    states_equal(a, b)
    for name, t in a["translation"].items():  # the history pool too
        assert torch.equal(t, b["translation"][name]), name
    stargan = family == "stargan"
    assert a["domains"] == (["handwritten_*", "sans_*", "serif_*"] if stargan else ["handwritten_*", "sans_*"])
    assert a["spec"]["model"]["classes"] == 40  # D's class head covers the data's 4 styles x 10 digits
    assert stargan or any(k.startswith("classify.") for k in a["D"])
    assert a["translation"]["counterpart"][3].tolist()[:2] == [3, 13]  # handwritten_3 -> itself, sans_3
    lrs = [g["lr"] for g in a["opt_G"]["param_groups"]]
    assert 0 < lrs[0] < a["config"]["train"]["lr_g"]  # decayed from half the steps on
    grid = Image.open(straight.samples_latest)  # per domain: a row of sources, then one per other domain
    k = len(a["domains"])
    assert grid.size[1] == k * k * 18


def test_bad_domains_are_one_line(tmp_path, styles16):
    paths = workdir(tmp_path, styles16, "run")
    with pytest.raises(GanforgeError, match=r"cyclegan translates between 2 domains, but there are 40 .*stargan"):
        train(cfg("train.steps=2", "translate.domains=[]"), paths, progress=False)
    with pytest.raises(GanforgeError, match="'typeset_\\*' matches no class"):
        train(cfg("train.steps=2", "translate.domains=[handwritten_*, typeset_*]"), paths, progress=False)
    assert not paths.checkpoint.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, styles16):
    """A 6-step cyclegan with its features classifier, evaluated."""
    from ganforge.evaluate import evaluate
    from ganforge.features import train_classifier

    paths = workdir(tmp_path_factory.mktemp("trained"), styles16, "project")
    config = cfg("train.steps=6")
    train(config, paths, progress=False)
    train_classifier(config.features, paths, progress=False)
    summary = evaluate(config, paths)
    return paths, summary


def test_evaluate_scores_each_direction_with_its_protocol(trained):
    paths, summary = trained
    ev = json.loads((paths.metrics / "eval.json").read_text())
    assert set(ev["directions"]) == {"handwritten_* -> sans_*", "sans_* -> handwritten_*"}
    for key in ("fid", "fid_untranslated", "content_accuracy", "domain_accuracy", "cycle_l1", "precision"):
        assert np.isfinite(ev[key]), key
    assert 0 <= ev["content_accuracy"] <= 1 and 0 <= ev["cycle_l1"] <= 1
    p = ev["protocol"]
    assert (
        p["kind"] == "translation" and p["domains"] == ["handwritten_*", "sans_*"] and "content_accuracy" in p["about"]
    )
    assert "FID to the target domain" in summary.line(paths.metrics / "eval.json")


def _digit_folder(root: Path, n: int = 5) -> Path:
    from sklearn.datasets import load_digits

    root.mkdir(parents=True)
    images = load_digits().images[:n]
    for i, im in enumerate(images):
        Image.fromarray((im * 255 / 16).astype(np.uint8)).resize((16, 16)).save(root / f"{i}.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    return root


def test_translate_a_folder_into_the_library_with_provenance(trained, tmp_path, monkeypatch, capsys):
    paths, _ = trained
    project = tmp_path / "p"
    shutil.copytree(paths.root, project)
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    folder = _digit_folder(tmp_path / "in")
    monkeypatch.chdir(project)
    args = ["translate", "--set", "tracking.enabled=false", "--set", "translate.domains=[handwritten_*, sans_*]",
            "--input", str(folder), "--to", "sans_*"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "5 new translations into sans_* (0 already present, 1 input files skipped: 1 " in out
    df = catalog.read(project / "library" / "catalog.parquet")
    assert len(df) == 5 and set(df["kind"]) == {"translation"} and set(df["domain"]) == {"sans_*"}
    row = df.sort_values("parent").iloc[0]
    assert row["parent"] == str(folder / "0.png") and row["source"] == "checkpoint:models/checkpoint.pt"
    raw = (folder / "0.png").read_bytes()
    import hashlib

    assert row["parent_sha256"] == hashlib.sha256(raw).hexdigest()
    assert (project / "library" / row["parent_path"]).is_file() and (project / "library" / row["path"]).is_file()
    html = (project / "library" / "index.html").read_text()
    details = "".join(p.read_text() for p in (project / "library" / "gallery").glob("*.js"))
    assert row["asset_id"] in html and (project / "library" / "thumbs" / f"{row['asset_id']}.webp").is_file()
    assert f'"beside":{{"label":"parent","src":"{row["parent_path"]}"}}' in details and row["path"] in details

    assert main(args) == 0  # the same translation again adds nothing
    assert "0 new translations into sans_* (5 already present" in capsys.readouterr().out
    assert len(catalog.read(project / "library" / "catalog.parquet")) == 5

    assert main(["library", "show", str(row["asset_id"])]) == 0
    shown = capsys.readouterr().out
    assert f"translated from: {folder / '0.png'}" in shown and "translator: checkpoint:models/checkpoint.pt" in shown


def test_translate_refuses_bad_requests_in_one_line(trained, tiny_project, tmp_path, monkeypatch, capsys):
    paths, _ = trained
    project = tmp_path / "p"
    shutil.copytree(paths.root, project)
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    folder = _digit_folder(tmp_path / "in", 2)
    monkeypatch.chdir(project)
    base = ["translate", "--set", "tracking.enabled=false", "--input", str(folder)]
    assert main([*base, "--to", "serif_*"]) == 1
    assert "translate.to 'serif_*' is not a domain of checkpoint:models/checkpoint.pt (its domains: " in (
        capsys.readouterr().err
    )
    generator = tiny_project.checkpoint
    assert main([*base, "--to", "sans_*", "--set", f"translate.checkpoint={generator}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a generator (dcgan: it samples from noise), not a translator" in err
    assert main([*base[:-2], "--input", str(tmp_path / "nowhere"), "--to", "sans_*"]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert not (project / "library" / "catalog.parquet").exists()  # nothing half-written


def test_old_catalogs_read_with_empty_translation_columns(tmp_path):
    df = catalog.empty().drop(columns=list(catalog.ADDED_LATER))
    df.to_parquet(tmp_path / "catalog.parquet")
    back = catalog.read(tmp_path / "catalog.parquet")
    assert list(back.columns) == list(catalog.SCHEMA)
    assert isinstance(back, pd.DataFrame)


def test_a_registered_translator_takes_images_and_restyles_the_library(trained, tmp_path, monkeypatch, capsys):
    """evaluate's registry step logs a translator as a pyfunc that takes images (paths, bytes or arrays) and a
    target domain; `ganforge translate --model champion` uses it, its rows naming the version."""
    import mlflow

    from ganforge import registry, tracking
    from ganforge.config import GateConfig, RegistryConfig

    paths, _ = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = tracking.mlflow_client()
    exp = client.create_experiment("translators", artifact_location=(tmp_path / "mlartifacts").as_uri())
    rc = RegistryConfig(model_name="styles", gate=GateConfig(min={"content_accuracy": 0.0}))
    got = registry.evaluate_and_register(rc, client.create_run(exp).info.run_id, paths.checkpoint,
                                         {"fid": 1.0, "content_accuracy": 0.5})  # fmt: skip
    assert got["promoted"] and got["version"] == 1
    folder = _digit_folder(tmp_path / "in", 3)
    model = mlflow.pyfunc.load_model("models:/styles@champion")
    files = [str(folder / f"{i}.png") for i in range(3)]
    out = model.predict(pd.DataFrame({"image": files, "target": ["sans_*", "sans_*", 0]}))
    assert out.shape == (3, 1, 16, 16) and out.dtype == np.uint8
    array = np.asarray(Image.open(files[1]))  # [H, W] uint8: the same image as its file
    again = model.predict(pd.DataFrame({"image": [array], "target": ["sans_*"]}))
    assert np.array_equal(again[0], out[1])
    with pytest.raises(ValueError, match=r"unknown domain 'serif_\*'; known: 0=handwritten_\*, 1=sans_\*"):
        model.predict(pd.DataFrame({"image": files[:1], "target": ["serif_*"]}))

    project = tmp_path / "p"
    shutil.copytree(paths.root, project)
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    monkeypatch.chdir(project)
    args = ["translate", "--model", "champion", "--set", "registry.model_name=styles", "--input", str(folder),
            "--to", "sans_*"]  # fmt: skip
    assert main(args) == 0
    assert "3 new translations into sans_* (0 already present, 1 input files skipped" in capsys.readouterr().out
    df = catalog.read(project / "library" / "catalog.parquet")
    assert set(df["model_name"]) == {"styles"} and set(df["model_version"]) == {"1"}
    assert set(df["source"]) == {"models:/styles/1"}
