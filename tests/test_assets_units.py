"""Units of the asset library: interpolation, scores, hashes, DRS, the catalog."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ganforge.assets import catalog, scoring
from ganforge.assets.sampling import morph, slerp, walk
from ganforge.errors import GanforgeError
from ganforge.models import build
from ganforge.sampling import latent, latents

from .conftest import make_spec


def test_slerp_walk_and_morph():
    a, b = latent(0, 16), latent(1, 16)
    path = slerp(a, b, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(path[0], a, atol=1e-6) and torch.allclose(path[2], b, atol=1e-5)
    # slerp keeps the norm between the endpoints' (about sqrt(D)), where lerp would shrink it
    assert path[1].norm() > (a + b).norm() / 2
    keys = latents([0, 1, 2], 16)
    w = walk(keys, 5)
    assert w.shape == (15, 16) and torch.allclose(w[0], keys[0]) and torch.allclose(w[5], keys[1], atol=1e-5)
    m = morph([3, 5], 10, 4)
    assert m.shape == (8, 10) and torch.allclose(m.sum(1), torch.ones(8))
    assert m[0, 3] == 1 and m[4, 5] == 1 and m[2, 3] == m[2, 5] == 0.5


def test_generator_takes_class_weights():
    spec = make_spec("dcgan", 16, 1, num_classes=4, z_dim=8, g_width=8, d_width=8)
    G, _ = build(spec).values()
    G.eval()
    z = latents([0, 1, 2], 8)
    y = torch.tensor([0, 3, 1])
    with torch.no_grad():
        hard, soft = G(z, y), G(z, torch.eye(4)[y])
    assert torch.allclose(hard, soft, atol=1e-6)


def _realism_reference(fake, real, k):
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=2)
    radii = np.sort(d_rr, axis=1)[:, k]  # column 0 is the point itself
    keep = radii <= np.median(radii)
    d = np.linalg.norm(fake[:, None] - real[keep][None], axis=2)
    return (radii[keep][None] / d).max(axis=1)


def test_realism_and_nearest_match_numpy():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(120, 6))
    fake = rng.normal(size=(30, 6)) * 1.5
    images = torch.from_numpy(rng.integers(0, 256, size=(120, 1, 4, 4), dtype=np.uint8))
    fake_images = images[:30].clone()
    fake_images[5:] = torch.from_numpy(rng.integers(0, 256, size=(25, 1, 4, 4), dtype=np.uint8))
    rs = scoring.RealSet.build(torch.from_numpy(real), images, k=3)
    s = scoring.compare(torch.from_numpy(fake), fake_images, rs)
    np.testing.assert_allclose(s.realism.numpy(), _realism_reference(fake, real, 3), rtol=1e-10)
    d = np.linalg.norm(fake[:, None] - real[None], axis=2)
    np.testing.assert_allclose(s.nearest_feature.numpy(), d.min(1), rtol=1e-10)
    assert s.nearest_index.tolist() == d.argmin(1).tolist()
    assert torch.all(s.nearest_pixel[:5] < 1e-6)  # the first five are training images: pixel copies
    assert torch.all(s.nearest_pixel[5:] > 0.05)
    nn1 = np.sort(np.linalg.norm(real[:, None] - real[None], axis=2), axis=1)[:, 1]
    assert rs.median_nn == pytest.approx(np.sort(nn1)[(len(nn1) - 1) // 2])  # the lower median (torch)
    # a real sample itself is inside the manifold (realism >= 1) when it is in the pruned half
    s_real = scoring.compare(rs.manifold, images[:1].expand(len(rs.manifold), -1, -1, -1), rs)
    assert torch.all(s_real.realism >= 1)


def test_discriminator_rejection_sampling_probabilities():
    logits = torch.tensor([-3.0, -1.0, 0.0, 0.5, 2.0])
    p = scoring.drs_accept_probability(logits, percentile=50)
    assert torch.all(p[1:] >= p[:-1])  # monotone in D
    assert float(p[2]) == pytest.approx(0.5)  # the median F gets p = 1/2
    assert float(p[-1]) > 0.99  # the best logit is (nearly) always accepted
    u = [scoring.uniform("drs", s, 3) for s in range(1000)]
    assert u == [scoring.uniform("drs", s, 3) for s in range(1000)] and 0.45 < np.mean(u) < 0.55


def test_discriminator_logits_of_packed_discriminator():
    spec = make_spec("dcgan", 16, 1, num_classes=3, z_dim=8, g_width=8, d_width=8, pack=2, d_norm="spectral")
    _, D = build(spec).values()
    D.eval()
    x = torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1])
    d = scoring.discriminator_logits(D, x, y)
    assert d.shape == (5,)
    single = scoring.discriminator_logits(D, x[2:3], y[2:3])
    assert torch.allclose(d[2], single[0], atol=1e-5)  # one image's score does not depend on its batch


def test_phash_and_hamming():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(1, 32, 32), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] ^= 1  # one pixel, one grey level
    c = rng.integers(0, 256, size=(3, 32, 32), dtype=np.uint8)
    ha, hb, hc = scoring.phash(a), scoring.phash(b), scoring.phash(c)
    dist = scoring.hamming(ha, np.array([ha, hb, hc], dtype=np.uint64))
    assert dist[0] == 0 and dist[1] <= 2 and dist[2] > 10
    assert scoring.content_id("image", a) != scoring.content_id("image", b)
    assert scoring.content_id("image", a) == scoring.content_id("image", a.copy())


def _row(asset_id, path, **kw):
    row = {c: None for c in catalog.SCHEMA}
    row.update(
        asset_id=asset_id, kind="image", path=path, preview="", poster="", width=8, height=8, frames=1, fps=math.nan,
        seeds=[1], **{"class": 2}, classes=[2], class_name="two", truncation=0.8, model_name="m", model_version="1",
        model_sha256="abc", run_id="r", source="models:/m/1", realism=1.5, d_score=0.1, nearest_real_feature=1.0,
        nearest_real_pixel=0.2, nearest_real_index=4, phash="0" * 16, created_at=pd.Timestamp.now(tz="UTC"),
        build_id="b",
    )  # fmt: skip
    row.update(kw)
    return row


def test_catalog_roundtrip_reconcile_select_and_export(tmp_path):
    lib = tmp_path / "library"
    (lib / "images" / "002").mkdir(parents=True)
    (lib / "images" / "002" / "00000000000000aa.png").write_bytes(b"png-a")
    rows = [
        _row("00000000000000aa", "images/002/00000000000000aa.png"),
        _row("00000000000000bb", "images/002/00000000000000bb.png", realism=0.5),  # its file is gone
    ]
    df = pd.DataFrame(rows)
    catalog.write(df, lib / "catalog.parquet")
    back = catalog.read(lib / "catalog.parquet")
    assert back["seeds"].tolist() == [[1], [1]] and str(back["created_at"].dtype).endswith("UTC]")
    (lib / "images" / "002" / "00000000000000cc.png").write_bytes(b"orphan")
    (lib / "images" / "002" / ".00000000000000dd.png.x.tmp").write_bytes(b"half")
    (lib / "images" / "002" / "notes.txt").write_text("a user's file stays")
    kept, dropped, removed = catalog.reconcile(back, lib)
    assert (len(kept), dropped, removed) == (1, 1, 2)
    assert sorted(p.name for p in (lib / "images" / "002").iterdir()) == ["00000000000000aa.png", "notes.txt"]
    assert len(catalog.select(back, "2")) == 2 and len(catalog.select(back, "two", min_realism=1.0)) == 1
    assert catalog.find(back, "00000000000000a")["asset_id"] == "00000000000000aa"
    with pytest.raises(GanforgeError, match="ambiguous"):
        catalog.find(back, "0000")
    with pytest.raises(GanforgeError, match="unknown kind"):
        catalog.select(back, kind="gif")

    out = catalog.export(kept, lib, tmp_path / "out")
    assert (out / "images/002/00000000000000aa.png").read_bytes() == b"png-a"
    assert catalog.read(out / "catalog.parquet")["asset_id"].tolist() == ["00000000000000aa"]
    evil = pd.DataFrame([_row("00000000000000ee", "../../outside.png")])
    (tmp_path / "outside.png").write_bytes(b"x")
    with pytest.raises(GanforgeError, match="outside the library"):
        catalog.export(evil, lib, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
    with pytest.raises(GanforgeError, match="inside the library"):
        catalog.export(kept, lib, lib / "sub")


def test_catalog_read_errors(tmp_path):
    bad = tmp_path / "catalog.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(GanforgeError, match="unreadable catalog"):
        catalog.read(bad)
    pd.DataFrame({"x": [1]}).to_parquet(bad)
    with pytest.raises(GanforgeError, match="missing columns"):
        catalog.read(bad)


def test_library_lock_refuses_a_second_build(tmp_path):
    lib = tmp_path / "lib"
    with (
        catalog.locked(lib),
        pytest.raises(GanforgeError, match="another library build is running"),
        catalog.locked(lib),
    ):
        pass
    with catalog.locked(lib):  # released
        pass


def test_catalog_hash_table_grows():
    from ganforge.assets.hashindex import HashTable

    table = HashTable([(1,), (2,)], 1)
    for h in range(3000):
        table.add((h * 7919,))
    view = table.view()
    assert view.shape == (3002, 1) and view[:2, 0].tolist() == [1, 2]
    assert int(view[-1, 0]) == 2999 * 7919 and int(view[3, 0]) == 7919


def test_library_model_accepts_a_version_number():
    from ganforge.config import LibraryConfig

    assert LibraryConfig(model=3).model == "3" and LibraryConfig(model="champion").model == "champion"


@pytest.mark.parametrize("radius", [0, 4, 15, 40])
@pytest.mark.parametrize("k", [1, 3])
def test_hash_index_answers_as_the_linear_scan(radius, k):
    """Multi-index hashing finds exactly the rows a scan finds, on clustered hashes as a GAN's images give."""
    from ganforge.assets import scoring
    from ganforge.assets.hashindex import HashIndex

    rng = np.random.default_rng(radius * 10 + k)
    centres = rng.integers(0, 2**63, size=(20, k), dtype=np.uint64)

    def near(c):  # a centre with a few random bits flipped in each frame
        bits = [rng.choice(64, rng.integers(0, 12), replace=False) for _ in range(k)]
        flips = [sum(1 << int(b) for b in frame) for frame in bits]
        return tuple(int(h) ^ f for h, f in zip(centres[c], flips, strict=True))

    index = HashIndex(k, radius)
    rows: list[tuple[int, ...]] = []
    hits = 0
    for i in range(600):
        q = near(i % 20)
        expected = bool(rows) and bool((scoring.max_hamming(q, np.array(rows, dtype=np.uint64)) <= radius).any())
        assert index.near(q) == expected
        hits += expected
        if i % 2:
            index.add(q)
            rows.append(q)
    assert len(index) == 300 and (hits > 0 or radius == 0)
    if radius <= 15:  # the index compares a small share of the rows, not all of them
        assert len(index.candidates(near(0))) < 300 or radius >= 9


def test_hash_index_off_finds_nothing():
    from ganforge.assets.hashindex import HashIndex

    index = HashIndex(1, -1, [(5,)])
    assert not index.near((5,))


def test_catalog_journal_appends_rows_and_a_rewrite_folds_them_in(tmp_path):
    from ganforge.assets import catalog

    path = tmp_path / "catalog.parquet"
    rows = catalog.empty()

    def frame(ids):
        return pd.DataFrame([_row(f"{i:016x}", f"images/002/{i:016x}.png") for i in ids])

    catalog.write(frame(range(3)), path)
    catalog.append(frame(range(3, 5)), path)
    catalog.append(frame([5]), path)
    assert sorted(p.name for p in catalog.journal(path).iterdir()) == ["00000001.parquet", "00000002.parquet"]
    df = catalog.read(path)
    assert df["asset_id"].tolist() == [f"{i:016x}" for i in range(6)] and list(df.columns) == list(rows.columns)
    # a kill after the full rewrite but before the journal went: each row once
    full = df.copy()
    from ganforge.assets.catalog import _write_table

    _write_table(full, path)
    assert catalog.read(path)["asset_id"].tolist() == [f"{i:016x}" for i in range(6)]
    catalog.write(full, path)
    assert not catalog.journal(path).exists() and len(catalog.read(path)) == 6
