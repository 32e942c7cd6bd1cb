"""`ganforge library export --format imagefolder|hf|webdataset`: each export loaded by the real library that reads
it (torchvision, Hugging Face datasets, webdataset), labels and catalog fields intact; bad DESTs refused."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ganforge.assets import catalog
from ganforge.assets.build import build_library
from ganforge.assets.export import export, folder_names
from ganforge.errors import GanforgeError

from .conftest import copy_project
from .test_library import cfg_with


@pytest.fixture(scope="module")
def library(tiny_project, tmp_path_factory):
    """A real library from the tiny generator: images of ten digit classes and one class morph (an MP4)."""
    paths = copy_project(tiny_project, tmp_path_factory.mktemp("export") / "p")
    build_library(cfg_with("library.images=3", "library.videos=0", "library.morphs=1"), paths, progress=False)
    df = catalog.read(paths.catalog)
    assert set(df["kind"]) == {"image", "class_morph"}
    return paths, df


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_imagefolder_loads_in_torchvision_with_its_classes(library, tmp_path):
    from torchvision.datasets import ImageFolder

    paths, df = library
    s = export(df, paths.library, tmp_path / "if", "imagefolder")
    images = df[df["kind"] == "image"]
    assert s.exported == len(images) and s.skipped == 1 and "1 asset of other kinds skipped" in s.line()
    ds = ImageFolder(str(tmp_path / "if"))
    assert len(ds) == len(images)
    index = json.loads((tmp_path / "if" / "classes.json").read_text())
    assert ds.class_to_idx == index["imagefolder_index"]
    by_id = images.set_index("asset_id")
    for (file, target), (img, label) in zip(ds.samples, ds, strict=True):
        asset = by_id.loc[file.rsplit("/", 1)[1].removesuffix(".png")]
        folder = ds.classes[target]
        assert index["classes"][folder] == asset["class"] and folder == asset["class_name"]
        assert np.array_equal(np.asarray(img), _pixels(paths.library / asset["path"])) and label == target
    table = pd.read_csv(tmp_path / "if" / "catalog.csv")
    assert sorted(table["asset_id"]) == sorted(images["asset_id"]) and "realism" in table and "model_sha256" in table


def test_hf_imagefolder_loads_with_datasets_and_keeps_the_catalog(library, tmp_path):
    import datasets

    paths, df = library
    export(df, paths.library, tmp_path / "hf", "hf")
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "hf"), split="train",
                               cache_dir=str(tmp_path / "cache"))  # fmt: skip
    images = df[df["kind"] == "image"].set_index("asset_id")
    assert len(ds) == len(images)
    for item in ds:
        asset = images.loc[item["asset_id"]]
        assert item["label"] == asset["class_name"] and item["class"] == asset["class"]
        assert item["seeds"] == list(asset["seeds"]) and item["model_sha256"] == asset["model_sha256"]
        assert item["realism"] == pytest.approx(asset["realism"]) and item["kind"] == "image"
        assert np.array_equal(np.asarray(item["image"].convert("RGB")), _pixels(paths.library / asset["path"]))


def test_webdataset_shards_load_with_webdataset(library, tmp_path):
    import webdataset as wds

    paths, df = library
    s = export(df, paths.library, tmp_path / "wds", "webdataset", shard_size=7)
    shards = sorted((tmp_path / "wds").glob("shard-*.tar"))
    assert s.exported == len(df) and s.shards == len(shards) == -(-len(df) // 7)
    seen = {}
    for sample in wds.WebDataset([str(p) for p in shards], shardshuffle=False).decode("pil"):
        seen[sample["__key__"]] = sample
    assert set(seen) == set(df["asset_id"])
    for _, asset in df.iterrows():
        sample = seen[asset["asset_id"]]
        meta = sample["json"]
        assert meta["kind"] == asset["kind"] and meta["class_name"] == asset["class_name"]
        assert meta["seeds"] == list(asset["seeds"])
        if asset["kind"] == "image":
            assert int(sample["cls"]) == asset["class"]
            assert np.array_equal(np.asarray(sample["png"].convert("RGB")), _pixels(paths.library / asset["path"]))
        else:  # the morph's MP4, byte for byte
            assert sample["mp4"] == (paths.library / asset["path"]).read_bytes()


def test_cli_export_a_selection_and_refuse_bad_dests(library, tmp_path):
    paths, df = library
    ids = df[df["kind"] == "image"]["asset_id"].tolist()[:3]
    cli = [sys.executable, "-m", "ganforge", "library", "export"]  # no params.yaml: the library is ./library

    def run(*args):
        return subprocess.run([*cli, *args], capture_output=True, text=True, cwd=paths.root)

    r = run(str(tmp_path / "sel"), "--format", "webdataset", "--ids", ",".join(i[:8] for i in ids))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("as webdataset in 1 shards")
    with open(tmp_path / "sel" / "export.json") as f:
        assert json.load(f)["assets"] == 3
    # exporting again replaces the earlier export; a folder with someone's files is refused, untouched
    assert run(str(tmp_path / "sel"), "--format", "imagefolder", "--ids", ids[0]).returncode == 0
    assert sum(1 for p in (tmp_path / "sel").rglob("*.png")) == 1 and not list((tmp_path / "sel").glob("*.tar"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = run(str(tmp_path / "mine"), "--format", "hf")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not an earlier export" in r.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    r = run(str(tmp_path / "x"), "--format", "hf", "--ids", "zzzz")
    assert r.returncode == 1 and "no asset 'zzzz'" in r.stderr and not (tmp_path / "x").exists()
    # a filter that matches nothing leaves the earlier export as it was
    for fmt in ("hf", "copy"):
        r = run(str(tmp_path / "sel"), "--format", fmt, "--class", "99")
        assert r.returncode == 1 and "no assets match" in r.stderr and r.stderr.count("\n") == 1
    assert sum(1 for p in (tmp_path / "sel").rglob("*.png")) == 1
    r = run(str(tmp_path / "y"), "--format", "imagefolder", "--kind", "class_morph")
    assert r.returncode == 1 and "none of the 1 matching assets is an image" in r.stderr


def test_export_refuses_a_hostile_id_and_names_unsafe_classes(library, tmp_path):
    paths, df = library
    evil = df.head(2).copy()
    evil.loc[evil.index[0], "asset_id"] = "../../../etc/x"
    with pytest.raises(GanforgeError, match="not 16 hex digits"):
        export(evil, paths.library, tmp_path / "e", "webdataset")
    assert not (tmp_path / "e").exists() and not list(tmp_path.glob(".e.partial-*"))
    rows = pd.DataFrame({"class": [0, 1, 2, -1, 3], "class_name": ["../up", "a b/c", "", None, "A_B_C"]})
    assert folder_names(rows) == {-1: "unlabelled", 0: "up", 1: "a_b_c", 2: "class_002", 3: "A_B_C_3"}
