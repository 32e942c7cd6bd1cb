"""The library stage on a tiny generator (drawn from its checkpoint: no MLflow here; tests/test_pipeline.py
draws from the registry): the funnel, exact regeneration, idempotent and resumable builds, videos, the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ganforge.assets import build as build_mod
from ganforge.assets import catalog, writer
from ganforge.assets.build import build_library
from ganforge.assets.video import probe
from ganforge.config import apply_overrides, load_config
from ganforge.errors import GanforgeError
from ganforge.sampling import latent
from ganforge.training import checkpoint

from .conftest import NO_CLASS_GATE, ROOT, TINY_TRAIN, copy_project

LIB = [
    *TINY_TRAIN,
    "library.model=checkpoint",
    "library.images=6",
    "library.keep_fraction=0.5",
    "library.videos=2",
    "library.morphs=1",
    "library.keyframes=3",
    "library.frames_per_key=4",
    "library.fps=8",
    "library.video_size=32",
]


def cfg_with(*extra):
    return load_config(ROOT / "params.yaml", [*LIB, *extra])


@pytest.fixture()
def project(tiny_project, tmp_path):
    return copy_project(tiny_project, tmp_path / "p")


def asset_files(paths):
    return sorted(str(p.relative_to(paths.library)) for p in paths.library.rglob("*") if p.is_file()
                  and p.suffix in (".png", ".mp4", ".webp") and p.parent != paths.library
                  and p.relative_to(paths.library).parts[0] in catalog.ASSET_DIRS)  # fmt: skip


def catalog_files(df):
    return sorted(p for _, row in df.iterrows() for p in catalog.files_of(row))


def test_build_funnel_catalog_and_exact_regeneration(project):
    s = build_library(cfg_with(), project, progress=False)
    m = json.loads((project.metrics / "library.json").read_text())
    img = m["images"]
    assert img["requested"] == 60 and img["generated"] == 120 and img["rejected_quality"] == 60
    assert img["accepted"] + img["near_copies"] + img["duplicates"] + img["already_present"] == 60
    assert m["videos"]["requested"] == 3 and m["images_per_second"] > 0
    assert m["protocol"]["source"].startswith("checkpoint:") and m["protocol"]["extractor"] == "classifier"
    df = catalog.read(project.catalog)
    assert len(df) == m["catalog_assets"] == img["accepted"] + m["videos"]["accepted"]
    assert df["asset_id"].is_unique and catalog_files(df) == asset_files(project)
    assert "library:" in s.line() and project.gallery.exists()
    assert f'"n":{len(df)},' in project.gallery.read_text()  # the gallery's index
    assert sorted(p.stem for p in (project.library / "thumbs").iterdir()) == sorted(df["asset_id"])
    real = df[df["kind"] == "image"]["nearest_real_path"]
    assert real.str.startswith("real/").all() and all((project.library / p).is_file() for p in real)

    images = df[df["kind"] == "image"]
    assert len(images) > 10 and set(images["class"]) <= set(range(10))
    # each class keeps its best half: seeds come from 0..11, realism of the kept is at least the cut's
    assert images["seeds"].map(lambda s: 0 <= s[0] < 12).all()
    # every asset regenerates exactly from its address (weights, seed, class, truncation)
    state = checkpoint.load(project.checkpoint)
    G = checkpoint.generator_from_state(state)
    for row in images.head(5).itertuples():
        z = latent(row.seeds[0], G.spec.latent_dim, row.truncation)[None]
        with torch.no_grad():
            x = G(z, torch.tensor([row._11]))  # the `class` column
        pixels = x.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)[0, 0].numpy()
        assert np.array_equal(np.asarray(Image.open(project.library / row.path)), pixels)
    assert (df["model_sha256"] == state_sha(project)).all()

    walks = df[df["kind"] == "latent_walk"]
    morphs = df[df["kind"] == "class_morph"]
    assert len(walks) + m["videos"]["near_copies"] == 2 and len(morphs) + 0 <= 1
    for row in pd.concat([walks, morphs]).itertuples():
        info = probe(project.library / row.path)
        assert info["codec"] == "h264" and info["frames"] == 12 == row.frames and info["width"] == 32
        assert (project.library / row.preview).stat().st_size > 0 and (project.library / row.poster).exists()
    if len(morphs):
        assert list(morphs.iloc[0]["classes"]) == [0, 1, 2] and " > " in morphs.iloc[0]["class_name"]


def state_sha(paths):
    from ganforge.paths import sha256_file

    return sha256_file(paths.checkpoint)


def test_rebuild_with_same_params_adds_nothing(project):
    build_library(cfg_with(), project, progress=False)
    before = catalog.read(project.catalog)
    again = build_library(cfg_with(), project, progress=False)
    after = catalog.read(project.catalog)
    assert again.images.accepted == 0 and again.videos.accepted == 0
    assert again.images.already_present + again.videos.already_present == len(before)
    pd.testing.assert_frame_equal(before, after)
    # more images per class: the first ones stay, new ones are added, none twice
    more = build_library(cfg_with("library.images=8"), project, progress=False)
    grown = catalog.read(project.catalog)
    assert more.images.accepted > 0 and len(grown) == len(before) + more.images.accepted
    assert grown["asset_id"].is_unique and set(before["asset_id"]) <= set(grown["asset_id"])


def test_killed_build_resumes_without_duplicates_or_orphans(project, tmp_path, monkeypatch):
    reference = copy_project(project, tmp_path / "ref")
    build_library(cfg_with(), reference, progress=False)
    want = catalog.read(reference.catalog)

    monkeypatch.setattr(writer, "FLUSH_EVERY", 4)
    real_add, calls = build_mod.Catalog.add, []

    def dying_add(self, row):
        calls.append(row["asset_id"])
        if len(calls) == 11:  # written to disk, not yet in the catalog: what a kill leaves
            raise KeyboardInterrupt
        real_add(self, row)

    monkeypatch.setattr(build_mod.Catalog, "add", dying_add)
    with pytest.raises(KeyboardInterrupt):
        build_library(cfg_with(), project, progress=False)
    partial = catalog.read(project.catalog)
    assert len(partial) == 10  # flushed on the way out, also when interrupted
    assert len(asset_files(project)) == 11  # one file with no row yet
    (project.library / "images" / "000" / ".deadbeefdeadbeef.png.abc.tmp").write_bytes(b"half")
    monkeypatch.setattr(build_mod.Catalog, "add", real_add)

    resumed = build_library(cfg_with(), project, progress=False)
    got = catalog.read(project.catalog)
    assert resumed.metrics["orphan_files_removed"] == 2
    assert sorted(got["asset_id"]) == sorted(want["asset_id"]) and got["asset_id"].is_unique
    assert catalog_files(got) == asset_files(project)
    assert resumed.images.already_present == 10


KILLER = """
import os, signal, sys
from ganforge.assets import build, writer
from ganforge.config import load_config
from ganforge.paths import Paths

writer.FLUSH_EVERY = 4
real_add, calls = writer.Catalog.add, []

def add(self, row):
    calls.append(1)
    if len(calls) == 11:  # the 11th file is on disk, rows 9-10 not flushed yet: SIGKILL, no cleanup runs
        os.kill(os.getpid(), signal.SIGKILL)
    real_add(self, row)

writer.Catalog.add = add
build.build_library(load_config(sys.argv[1], sys.argv[2:]), Paths(), progress=False)
"""


def test_sigkilled_build_resumes_to_the_same_library(project, tmp_path):
    reference = copy_project(project, tmp_path / "ref")
    build_library(cfg_with(), reference, progress=False)
    want = catalog.read(reference.catalog)

    out = subprocess.run([sys.executable, "-c", KILLER, str(ROOT / "params.yaml"), *LIB], cwd=project.root,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == -9, out.stderr
    assert len(catalog.read(project.catalog)) == 8 and len(asset_files(project)) == 11
    assert len(pd.read_parquet(project.catalog)) == 4  # rows 5-8 are in the journal, appended without a rewrite
    assert [p.name for p in catalog.journal(project.catalog).iterdir()] == ["00000001.parquet"]
    assert (project.library / ".lock").exists()  # left behind, but no longer locked

    resumed = build_library(cfg_with(), project, progress=False)
    got = catalog.read(project.catalog)
    assert resumed.metrics["orphan_files_removed"] == 3 and resumed.images.already_present == 8
    assert not catalog.journal(project.catalog).exists()  # folded into the catalog at the end
    assert sorted(got["asset_id"]) == sorted(want["asset_id"]) and got["asset_id"].is_unique
    assert catalog_files(got) == asset_files(project)
    cols = [c for c in catalog.SCHEMA if c not in ("created_at", "build_id")]
    key = ["asset_id"]
    pd.testing.assert_frame_equal(
        got[cols].sort_values(key).reset_index(drop=True), want[cols].sort_values(key).reset_index(drop=True)
    )


def test_dedupe_and_memorisation_filters(project):
    everything_dup = build_library(cfg_with("library.dedupe_hamming=64", "library.videos=0", "library.morphs=0"),
                                   project, progress=False)  # fmt: skip
    assert everything_dup.images.accepted == 1 and everything_dup.images.duplicates == 59

    other = copy_project(project, project.root.parent / "q")
    memorised = build_library(cfg_with("library.memorised_pixel=1.0"), other, progress=False)
    assert memorised.images.accepted == 0 and memorised.images.near_copies == 60
    assert memorised.videos.near_copies == 3 and len(catalog.read(other.catalog)) == 0


def test_drs_selection_and_discriminator_ranking(project):
    drs = build_library(cfg_with("library.selection=drs", "library.dedupe_hamming=-1"), project, progress=False)
    m = drs.metrics
    assert m["protocol"]["selection"] == "drs" and 0 < drs.images.accepted <= 60
    assert drs.images.generated - drs.images.rejected_quality <= 60
    df = catalog.read(project.catalog)
    assert np.isfinite(df["d_score"]).all()

    other = copy_project(project, project.root.parent / "q")
    by_d = build_library(cfg_with("library.rank_by=discriminator", "library.dedupe_hamming=-1", "library.videos=0",
                                  "library.morphs=0"), other, progress=False)  # fmt: skip
    d = catalog.read(other.catalog)
    assert by_d.images.accepted == len(d) > 0
    # class 0 kept exactly the half of its 12 candidates (seeds 0..11) with the highest D logits
    from ganforge.assets.source import from_checkpoint

    cfg = cfg_with("library.rank_by=discriminator")
    scorer = build_mod.Scorer(cfg, other, from_checkpoint(other.checkpoint, other))
    y = torch.zeros(12, dtype=torch.long)
    logits = scorer.score(scorer.sampler.uint8(range(12), y, cfg.library.truncation), y)
    best_half = set(torch.argsort(logits["d_score"], descending=True)[:6].tolist())
    kept0 = d[(d["class"] == 0) & (d["kind"] == "image")]
    assert {s[0] for s in kept0["seeds"]} <= best_half and len(kept0) + by_d.images.near_copies >= 1


def test_wrong_inputs_are_one_line_errors(project):
    with pytest.raises(GanforgeError, match=r"tracking\.enabled is false"):
        build_library(cfg_with("library.model=champion"), project, progress=False)
    with pytest.raises(GanforgeError, match="no checkpoint"):
        build_library(cfg_with("library.checkpoint=models/nope.pt"), project, progress=False)
    with catalog.locked(project.library), pytest.raises(GanforgeError, match="another library build"):
        build_library(cfg_with(), project, progress=False)


def run_cli(args, cwd):
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "ganforge", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_cli_build_ls_show_export(project, tmp_path):
    params = tmp_path / "params.yaml"
    import yaml

    raw = apply_overrides(yaml.safe_load((ROOT / "params.yaml").read_text()), LIB)
    params.write_text(yaml.safe_dump(raw))
    cwd = project.root
    out = run_cli(["library", "build", "-q", "--params", str(params)], cwd)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("library: ")
    df = catalog.read(project.catalog)

    ls = run_cli(["library", "ls", "--class", "3"], cwd)
    assert ls.returncode == 0, ls.stderr
    n3 = len(catalog.select(df, "3"))
    assert f"{n3} of {n3} matching" in ls.stdout

    first = df.iloc[0]["asset_id"]
    show = run_cli(["library", "show", first[:10]], cwd)
    assert show.returncode == 0 and first in show.stdout and "nearest_real_pixel" in show.stdout

    images = df[df["kind"] == "image"]
    c = str(images["class"].mode().iloc[0])  # the class with most images
    cut = float(images[images["class"] == int(c)]["realism"].median())  # half of them pass
    dest = tmp_path / "export"
    ex = run_cli(["library", "export", "--class", c, "--min-realism", str(cut), str(dest)], cwd)  # as in the docs
    assert ex.returncode == 0, ex.stderr
    want = catalog.select(df, c, min_realism=cut)
    assert len(want) > 0
    got = catalog.read(dest / "catalog.parquet")
    assert sorted(got["asset_id"]) == sorted(want["asset_id"])
    assert all((dest / p).is_file() for _, row in got.iterrows() for p in catalog.files_of(row))

    for bad, message in [
        (["library", "show", "zzzz"], "no asset 'zzzz'"),
        (["library", "ls", "--kind", "gif"], "unknown kind 'gif'"),
        (["library", "build", "--params", str(params), "--set", "library.images=-1"], "library.images"),
    ]:
        r = run_cli(bad, cwd)
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and message in r.stderr, (bad, r.stderr)


def test_unconditional_generator_fills_one_pool(project):
    from ganforge.training.loop import train

    cfg = cfg_with("train.conditional=false", NO_CLASS_GATE, "train.steps=10", "library.images=8")
    train(cfg, project, progress=False)
    s = build_library(cfg, project, progress=False)
    df = catalog.read(project.catalog)
    assert s.images.requested == 8 and s.images.generated == 16 and s.videos.requested == 2  # no class morph
    assert set(df["class"]) == {-1} and set(df["class_name"]) == {""}
    assert df[df["kind"] == "image"]["path"].str.startswith("images/all/").all()
    assert set(df["kind"]) <= {"image", "latent_walk"} and df["classes"].map(len).eq(0).all()
