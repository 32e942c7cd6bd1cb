"""The library stage on a video generator (a tiny MoCoGAN drawn from its checkpoint): clips as MP4 + WebP + poster
in the same catalog (kind `clip`) and gallery, with the image funnel's dedupe, near-copy and provenance rules, and
exact regeneration of a clip from its catalog row through the pyfunc sampler."""

import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ganforge import serving
from ganforge.assets import build as build_mod
from ganforge.assets import catalog, scoring, writer
from ganforge.assets.build import build_library
from ganforge.assets.source import check_data, from_checkpoint
from ganforge.assets.video import probe, upscale
from ganforge.config import load_config
from ganforge.data.dataset import KINDS, PreparedData
from ganforge.errors import GanforgeError
from ganforge.models import build
from ganforge.paths import Paths
from ganforge.training import checkpoint

from .conftest import ROOT, TINY_VIDEO, make_spec

T, SIZE, FPS = 4, 32, 8.0
LIB = [
    *TINY_VIDEO,
    "library.model=checkpoint",
    "library.clips=2",  # per class: 4 candidates each (keep_fraction 0.5), 10 classes
    "library.video_size=32",
    "library.fps=8",
    "library.dedupe_hamming=-1",
]


def cfg_with(*extra):
    return load_config(ROOT / "params.yaml", [*LIB, *extra])


def copy_video_project(src: Paths, dest) -> Paths:
    """A writable copy of the tiny video project: prepared clips, the features stage's classifiers, the checkpoint,
    and the reference-feature cache (so that each copy does not recompute it)."""
    paths = Paths(dest)
    shutil.copytree(src.prepared, paths.prepared)
    shutil.copytree(src.models, paths.models)
    if src.cache.exists():
        shutil.copytree(src.cache, paths.cache)
    return paths


def contrasted(paths: Paths) -> None:
    """A 6-step generator draws the same flat grey clip for every seed (its last layer's weights are still ~0.02):
    scale them up, so that clips differ from seed to seed and frame to frame and regeneration means something."""
    state = checkpoint.load(paths.checkpoint)
    last = [k for k, v in state["G_ema"].items() if k.endswith(".weight") and v.dim() == 4][-1]
    for key in ("G", "G_ema"):
        state[key] = {k: v * 300 if k == last else v for k, v in state[key].items()}
    checkpoint.save(paths.checkpoint, {k: v for k, v in state.items() if k != "format"})


@pytest.fixture(scope="module")
def base(tiny_video_project, tmp_path_factory):
    """The tiny video project with a contrasted generator (see `contrasted`)."""
    paths = copy_video_project(tiny_video_project, tmp_path_factory.mktemp("clips-base"))
    contrasted(paths)
    return paths


@pytest.fixture(scope="module")
def built(base, tmp_path_factory):
    """A clip library built once from `base` (tests read it; those that write take a copy)."""
    paths = copy_video_project(base, tmp_path_factory.mktemp("clips-built"))
    summary = build_library(cfg_with(), paths, progress=False)
    shutil.copytree(paths.cache, base.cache, dirs_exist_ok=True)  # later copies of base reuse the reference
    return paths, summary


def test_clip_build_writes_playable_files_with_provenance(built):
    paths, s = built
    c, m = s.clips, s.metrics
    assert c.requested == 20 and c.generated == 40 and c.rejected_quality == 20
    assert c.accepted + c.near_copies + c.duplicates == 20 and c.accepted >= 10
    assert s.images.generated == 0 and s.videos.requested == 0  # a video generator makes clips only
    assert m["kind"] == "video" and m["clips"]["accepted"] == c.accepted and m["clips_per_second"] > 0
    assert m["protocol"]["kind"] == "video" and m["protocol"]["dedupe_frames"] == [0, 2, 3]
    assert s.line().startswith(f"library: {c.accepted} new clips from checkpoint:models/checkpoint.pt")

    df = catalog.read(paths.catalog)
    assert len(df) == c.accepted == m["catalog_assets"] and set(df["kind"]) == {"clip"}
    assert df["asset_id"].is_unique and set(df["class"]) <= set(range(10))
    assert (df["model_sha256"] == checkpoint_sha(paths)).all() and (df["source"] == m["protocol"]["source"]).all()
    assert df["seeds"].map(lambda seeds: len(seeds) == 1 and 0 <= seeds[0] < 4).all()
    assert (df["classes"].map(list) == df["class"].map(lambda k: [k])).all() and (df["truncation"] == 0.8).all()
    assert np.isfinite(df[["realism", "d_score", "nearest_real_feature", "nearest_real_pixel"]]).all().all()
    assert df["phash"].map(lambda h: len(scoring.decode_hashes(h)) == 3).all()
    assert df["build_id"].nunique() == 1 and (df["build_id"] == m["build_id"]).all()
    on_disk = sorted(str(p.relative_to(paths.library)) for p in (paths.library / "clips").rglob("*") if p.is_file())
    assert on_disk == sorted(p for _, row in df.iterrows() for p in catalog.files_of(row))
    for _, row in df.iterrows():
        assert row["path"] == f"clips/{row['class']:03d}/{row['asset_id']}.mp4"
        info = probe(paths.library / row["path"])  # decodes every frame with PyAV
        assert info["codec"] == "h264" and info["frames"] == T == row["frames"]
        assert (info["width"], info["height"], info["fps"]) == (SIZE, SIZE, FPS)
        assert (row["width"], row["height"], row["fps"]) == (SIZE, SIZE, FPS)
        with Image.open(paths.library / row["preview"]) as preview:
            assert preview.format == "WEBP" and preview.size == (SIZE, SIZE)
        with Image.open(paths.library / row["poster"]) as poster:
            assert poster.format == "PNG" and poster.size == (SIZE, SIZE)

    page = paths.gallery.read_text()
    assert f'"n":{len(df)},' in page and '"kinds":[["clip","clip"]]' in page and ">clip</option>" in page
    details = "".join(p.read_text() for p in (paths.library / "gallery").glob("*.js"))
    for row in df.head(3).itertuples():
        assert row.asset_id in page and (paths.library / "thumbs" / f"{row.asset_id}.webp").is_file()
        assert f'"src":"{row.path}"' in details and f'"poster":"{row.poster}"' in details


def checkpoint_sha(paths):
    from ganforge.paths import sha256_file

    return sha256_file(paths.checkpoint)


def test_clip_regenerates_exactly_from_its_row_through_the_sampler(built, tmp_path):
    paths, _ = built
    df = catalog.read(paths.catalog)
    state = checkpoint.load(paths.checkpoint)
    sampler = serving.GeneratorSampler()  # what mlflow.pyfunc.load_model runs, minus the registry round trip
    sampler.load_context(SimpleNamespace(artifacts=serving.write_artifacts(state, tmp_path / "artifacts")))
    rows = df.head(4)
    ask = pd.DataFrame(
        {"seed": [s[0] for s in rows["seeds"]], "class": rows["class"].tolist(), "truncation": rows["truncation"]}
    )
    clips = sampler.predict(None, ask)
    assert clips.shape == (len(rows), 1, T, 16, 16) and clips.dtype == np.uint8
    assert len({c.tobytes() for c in clips}) == len(rows)  # different seeds, different clips
    for clip, row in zip(clips, rows.itertuples(), strict=True):
        frames = np.ascontiguousarray(clip.transpose(1, 2, 3, 0))  # [T, H, W, C]
        # the asset id hashes the clip's pixels (and encoding settings): the same id means the same pixels
        assert scoring.content_id("clip", frames, FPS, SIZE, build_mod.VIDEO_CRF) == row.asset_id
        assert scoring.encode_hashes(scoring.clip_phash(clip)) == row.phash
        big = upscale(frames, SIZE)
        assert np.array_equal(np.asarray(Image.open(paths.library / row.poster)), big[T // 2])
        assert len({f.tobytes() for f in frames}) > 1  # it moves


def test_killed_build_resumes_and_a_rebuild_adds_nothing(base, built, tmp_path, monkeypatch):
    want = catalog.read(built[0].catalog)
    paths = copy_video_project(base, tmp_path / "p")
    monkeypatch.setattr(writer, "FLUSH_EVERY", 4)
    real_add, calls = build_mod.Catalog.add, []

    def dying_add(self, row):
        calls.append(row["asset_id"])
        if len(calls) == 7:  # its files are written, its row not yet: what a kill leaves
            raise KeyboardInterrupt
        real_add(self, row)

    monkeypatch.setattr(build_mod.Catalog, "add", dying_add)
    with pytest.raises(KeyboardInterrupt):
        build_library(cfg_with(), paths, progress=False)
    assert len(catalog.read(paths.catalog)) == 6  # flushed on the way out
    (paths.library / "clips" / "001" / ".0123456789abcdef.webp.x1.tmp").write_bytes(b"half")
    monkeypatch.setattr(build_mod.Catalog, "add", real_add)

    resumed = build_library(cfg_with(), paths, progress=False)
    got = catalog.read(paths.catalog)
    assert resumed.metrics["orphan_files_removed"] == 4  # the 7th clip's MP4, WebP and poster, and the temp file
    assert resumed.clips.already_present == 6 and resumed.clips.accepted == len(want) - 6
    assert sorted(got["asset_id"]) == sorted(want["asset_id"]) and got["asset_id"].is_unique
    on_disk = sorted(str(p.relative_to(paths.library)) for p in (paths.library / "clips").rglob("*") if p.is_file())
    assert on_disk == sorted(p for _, row in got.iterrows() for p in catalog.files_of(row))

    again = build_library(cfg_with(), paths, progress=False)
    assert again.clips.accepted == 0 and again.clips.already_present == len(got)
    pd.testing.assert_frame_equal(got, catalog.read(paths.catalog))
    assert again.line().startswith("library: 0 new clips")


def test_identical_clips_are_deduplicated(tiny_video_project, tmp_path):
    # the untouched 6-step generator draws one flat clip for every seed: with dedupe on, one is kept
    paths = copy_video_project(tiny_video_project, tmp_path / "p")
    s = build_library(cfg_with("library.dedupe_hamming=0", "library.clips=1"), paths, progress=False)
    assert s.clips.accepted == 1 and s.clips.duplicates == 9 and s.clips.near_copies == 0
    assert len(catalog.read(paths.catalog)) == s.clips.accepted


def test_clip_hashes_compare_every_frame():
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, size=(1, 5, 16, 16), dtype=np.uint8)
    hs = scoring.clip_phash(clip)
    assert scoring.clip_frames(5) == [0, 2, 4] and len(hs) == 3
    assert scoring.decode_hashes(scoring.encode_hashes(hs)) == hs and scoring.decode_hashes("") == ()
    other = clip.copy()
    other[:, 4] = 255 - other[:, 4]  # same first and middle frames, a different last one
    library = np.array([scoring.clip_phash(other), hs], dtype=np.uint64)
    d = scoring.max_hamming(hs, library)
    assert d[1] == 0 and d[0] > 8  # only a clip whose every compared frame is close is a duplicate
    assert scoring.max_hamming(hs, np.zeros((0, 3), dtype=np.uint64)).shape == (0,)
    # the build's hash store reads the clips of an existing catalog, and only the clips
    rows = pd.DataFrame({"kind": ["clip", "image"], "phash": [scoring.encode_hashes(hs), "00000000000000ff"]}).assign(
        model_sha256="x", seeds=[[0], [0]], classes=[[], []], truncation=1.0
    )
    cat = build_mod.Catalog(Paths(), rows, "b")
    assert cat.hashes("clip").tolist() == [list(hs)] and cat.hashes("image").tolist() == [[0xFF]]


def test_training_clips_fed_as_candidates_are_near_copies(built):
    paths, _ = built
    cfg = cfg_with()
    scorer = build_mod.Scorer(cfg, paths, from_checkpoint(paths.checkpoint, paths))
    train, labels = PreparedData.open(paths.prepared, kinds=KINDS).load("train")
    real = train[:3]
    s = scorer.score(real, labels[:3])
    assert s["nearest_index"].tolist() == [0, 1, 2] and (s["nearest_pixel"] < 1e-6).all()
    assert all(build_mod._memorised(cfg, scorer.real, float(f), float(p))
               for f, p in zip(s["nearest_feature"], s["nearest_pixel"], strict=True))  # fmt: skip
    # a one-level change in every pixel is still a copy (RMSE 1/255 < memorised_pixel), a generated clip is not
    nudged = scorer.score((real.int() + 1).clamp(max=255).to(torch.uint8), labels[:3])
    assert (nudged["nearest_pixel"] < cfg.library.memorised_pixel).all()
    y = torch.zeros(2, dtype=torch.long)
    fake = scorer.sampler.uint8([0, 1], y, 0.8)
    g = scorer.score(fake, y)
    assert not any(build_mod._memorised(cfg, scorer.real, float(f), float(p))
                   for f, p in zip(g["nearest_feature"], g["nearest_pixel"], strict=True))  # fmt: skip
    assert g["d_score"].shape == (2,) and torch.isfinite(g["d_score"]).all()  # the clip head: one logit per clip


def test_model_and_data_kinds_must_match(built, tmp_path):
    paths = copy_video_project(built[0], tmp_path / "p")
    spec = make_spec("dcgan", 16, 1, 10, z_dim=8, g_width=8, d_width=8)
    G, D = build(spec).values()
    state = {"spec": spec.to_dict(), "G": G.state_dict(), "G_ema": G.state_dict(), "D": D.state_dict()}
    checkpoint.save(paths.models / "image.pt", state)
    with pytest.raises(GanforgeError) as err:
        build_library(cfg_with("library.checkpoint=models/image.pt"), paths, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "is an image model (dcgan: it makes images)" in msg and "holds video clips" in msg
    assert not paths.catalog.exists() or catalog.read(paths.catalog).empty

    video = from_checkpoint(paths.checkpoint, paths)
    data = PreparedData.open(paths.prepared, kinds=KINDS)
    as_images = SimpleNamespace(**{**vars(data), "kind": "image", "frames": None, "out_dir": "data/prepared"})
    with pytest.raises(GanforgeError, match=r"is a video model \(mocogan: it makes video clips\) but data/prepared "
                       "holds images"):  # fmt: skip
        check_data(video, as_images)
    longer = SimpleNamespace(**{**vars(data), "frames": 8, "out_dir": "data/prepared"})
    with pytest.raises(GanforgeError, match=r"makes 16x16x1 x 4 frames video clips but data/prepared holds "
                       r"16x16x1 x 8 frames"):  # fmt: skip
        check_data(video, longer)


def test_sampler_signature_describes_clips():
    clip = serving.signature(1, 16, 4).outputs.inputs[0]
    image = serving.signature(3, 32).outputs.inputs[0]
    assert clip.shape == (-1, 1, 4, 16, 16) and image.shape == (-1, 3, 32, 32)


def test_clip_cards_escape_what_comes_from_data():
    from ganforge.assets.gallery import render_site

    evil = "<script>window.__pwned=1</script>\"&'"
    row = {
        "asset_id": "0123456789abcdef", "kind": "clip", "path": "clips/000/0123456789abcdef.mp4",
        "preview": "clips/000/0123456789abcdef.webp", "poster": "clips/000/0123456789abcdef.png", "width": 32,
        "height": 32, "frames": 4, "fps": 8.0, "seeds": [3], "class": 0, "classes": [0], "class_name": evil,
        "truncation": 0.8, "phash": evil, "source": evil, "realism": 1.0,
    }  # fmt: skip
    site = render_site(pd.DataFrame([row]))
    page, details = site.html, "".join(site.details.values())
    assert "<script>window" not in page + details  # JSON-escaped in the index and the detail file
    assert page.count("&lt;script&gt;window") == 1  # the class filter's option, as HTML text
    assert details.count("\\u003cscript\\u003ewindow") == 4  # heading, class, phash, source
    assert '"video":true' in details and '"src":"clips/000/0123456789abcdef.mp4"' in details
    assert '"poster":"clips/000/0123456789abcdef.png"' in details and "4 frames @ 8 fps" in details
