"""`ganforge generate`: seed-addressed files from a checkpoint or a registered version, the same pixels as the
library's asset of that address, a manifest, and one-line errors for a bad range, class or model."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ganforge.assets import catalog
from ganforge.assets.build import build_library
from ganforge.assets.source import from_checkpoint
from ganforge.errors import ConfigError
from ganforge.generate import generate, parse_seeds

from .conftest import copy_project
from .test_library import cfg_with


def test_seed_ranges():
    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds("5, 1-2,5") == [5, 1, 2]
    for bad in ("3-1", "a", "1-", "", "-2", f"0-{2**62}"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_files_match_the_library_asset_of_the_same_address(tiny_project, tmp_path):
    paths = copy_project(tiny_project, tmp_path / "p")
    build_library(cfg_with("library.videos=0", "library.morphs=0", "library.dedupe_hamming=-1",
                           "library.truncation=0.7"), paths, progress=False)  # fmt: skip
    df = catalog.read(paths.catalog)
    asset = df[df["class"] == 3].iloc[0]
    seed = int(asset["seeds"][0])
    src = from_checkpoint(paths.checkpoint, paths)
    s = generate(src, [seed, seed + 100], [3, 4], 0.7, tmp_path / "out", batch_size=1)
    assert s.files == 4 and "4 files" in s.line()
    got = np.asarray(Image.open(tmp_path / "out" / f"seed{seed:06d}-class003.png"))
    assert np.array_equal(got, np.asarray(Image.open(paths.library / asset["path"])))
    m = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype={"class_name": str})
    assert m["file"].tolist() == [f"seed{s_:06d}-class{c:03d}.png" for c in (3, 4) for s_ in (seed, seed + 100)]
    assert set(m["model_sha256"]) == {src.model_sha256} and (m["truncation"] == 0.7).all()
    assert m.loc[0, "class_name"] == src.class_names[3] and len(m.loc[0, "sha256"]) == 64
    before = (tmp_path / "out" / "manifest.csv").read_bytes()
    generate(src, [seed, seed + 100], [3, 4], 0.7, tmp_path / "out", batch_size=2)  # again, other batches
    assert (tmp_path / "out" / "manifest.csv").read_bytes() == before  # the same bytes


def test_cli_outside_a_project_and_its_errors(tiny_project, tmp_path):
    ckpt = tiny_project.checkpoint

    def run(*args):
        return subprocess.run([sys.executable, "-m", "ganforge", "generate", "--model", str(ckpt), *args],
                              capture_output=True, text=True, cwd=tmp_path)  # fmt: skip

    r = run("--seeds", "0-2,9", "--class", "1", "--truncation", "0.5", "--out", "a")
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (tmp_path / "a").glob("*.png"))
    assert files == ["seed000000-class001.png", "seed000001-class001.png", "seed000002-class001.png",
                     "seed000009-class001.png"]  # fmt: skip
    for args, code, words in (
        (["--seeds", "9-1", "--out", "b"], 2, "runs backwards"),
        (["--seeds", "0", "--class", "11", "--out", "b"], 2, "has classes 0="),
        (["--seeds", "0", "--truncation", "1.5", "--out", "b"], 2, "(0, 1]"),
    ):
        r = run(*args)
        assert r.returncode == code and r.stderr.count("\n") == 1 and words in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "b").exists()
    r = subprocess.run([sys.executable, "-m", "ganforge", "generate", "--model", str(tmp_path / "none.pt"),
                        "--seeds", "0", "--out", "c"], capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
