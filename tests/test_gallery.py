"""The static gallery: HTML escaping and determinism, then the real page in headless Chromium (Playwright)."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ganforge.assets.gallery import PAGE, render_gallery, render_site, safe_href, write_gallery

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EVIL = "<script>window.__pwned=1</script>\"&'é"
CLASS_NAMES = {0: "zero", 1: "Ünïcode & “quotes”", 2: EVIL}
CELLS = "#gallery .cell"


# ----------------------------------------------------------------------------------------------- fixtures: assets


def _square_frame(i: int, size: int, n: int) -> np.ndarray:
    """An RGB frame with a bright square moving across a gradient."""
    y, x = np.mgrid[0:size, 0:size]
    frame = np.stack([x * 255 // size, y * 255 // size, np.full_like(x, 80)], axis=-1).astype(np.uint8)
    s = size // 4
    pos = (size - s) * i // max(1, n - 1)
    frame[size // 2 - s // 2 : size // 2 + s // 2, pos : pos + s] = (255, 255, 255)
    return frame


def _write_png(path: Path, seed: int, cls: int, size: int = 32) -> None:
    """A 32x32 grayscale PNG: a shape per class (disc, box, cross) on a seeded gradient."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    img = Image.fromarray((40 + (x + y) * int(rng.integers(1, 3))).astype(np.uint8), mode="L")
    draw = ImageDraw.Draw(img)
    a, b = (int(v) for v in rng.integers(4, 12, 2))
    box = (a, b, a + 16 + seed % 4, b + 16)
    if cls == 0:
        draw.ellipse(box, fill=235)
    elif cls == 1:
        draw.rectangle(box, outline=250, width=3)
    else:
        draw.line((box[0], box[1], box[2], box[3]), fill=250, width=3)
        draw.line((box[0], box[3], box[2], box[1]), fill=250, width=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _write_video(path: Path, poster: Path, preview: Path, *, size: int = 64, frames: int = 24, fps: int = 12) -> None:
    """A real H.264 MP4 (libx264, yuv420p) plus its poster PNG and animated WebP preview."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = [_square_frame(i, size, frames) for i in range(frames)]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20"}
        for arr in arrays:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    Image.fromarray(arrays[0]).save(poster)
    imgs = [Image.fromarray(a) for a in arrays]
    imgs[0].save(preview, save_all=True, append_images=imgs[1:], duration=1000 // fps, loop=0, lossless=True)


def _row(asset_id: str, kind: str, path: str, cls: int, realism: float, **extra) -> dict:
    video = kind != "image"
    row = {
        "asset_id": asset_id,
        "kind": kind,
        "path": path,
        "preview": None,
        "poster": None,
        "width": 64 if video else 32,
        "height": 64 if video else 32,
        "frames": 24 if video else 1,
        "fps": 12.0 if video else float("nan"),
        "seeds": [int(asset_id[:4], 16), int(asset_id[4:8], 16)] if video else [int(asset_id[:4], 16)],
        "class": cls,
        "classes": [cls] if cls >= 0 else [],
        "class_name": CLASS_NAMES.get(cls, ""),
        "truncation": 0.7,
        "model_name": "ganforge-digits",
        "model_version": "3",
        "model_sha256": "ab" * 32,
        "run_id": "0123456789abcdef0123456789abcdef",
        "source": "registry",
        "realism": realism,
        "d_score": realism - 0.5,
        "nearest_real_feature": 0.25 + realism / 10,
        "nearest_real_pixel": 0.125,
        "nearest_real_index": 17,
        "phash": "f0e1d2c3b4a59687",
        "created_at": pd.Timestamp("2025-01-02T03:04:05Z"),
        "build_id": "build-0001",
    }
    row.update(extra)
    return row


def _catalog_rows() -> list[dict]:
    images = [
        ("a1b2c3d4e5f60001", 0, 0.91),
        ("a1b2c3d4e5f60002", 0, 0.42),
        ("a1b2c3d4e5f60003", 1, 0.77),
        ("a1b2c3d4e5f60004", 1, 0.15),
        ("a1b2c3d4e5f60005", 2, 0.66),
        ("a1b2c3d4e5f60006", 2, 0.33),
    ]
    rows = [_row(aid, "image", f"images/class_{c}/{aid}.png", c, r) for aid, c, r in images]
    # a file name that needs URL-quoting (space, '#', non-ASCII) must still load
    rows[2]["path"] = "images/class 1/a#3 é.png"
    rows.append(
        _row(
            "b0c1d2e3f4a50007",
            "latent_walk",
            "videos/b0c1d2e3f4a50007.mp4",
            1,
            0.81,
            poster="videos/b0c1d2e3f4a50007.png",
            preview="videos/b0c1d2e3f4a50007.webp",
        )
    )
    rows.append(
        _row(
            "c0d1e2f3a4b50008",
            "class_morph",
            "videos/c0d1e2f3a4b50008.mp4",
            -1,
            0.58,
            classes=[0, 2],
            class_name="",
            model_version="",
            poster="videos/c0d1e2f3a4b50008.png",
            preview="videos/c0d1e2f3a4b50008.webp",
        )
    )
    # path attack: the card is shown but nothing may point outside the library
    rows.append(
        _row(
            "deadbeefdeadbeef",
            "image",
            "../../etc/passwd",
            0,
            0.05,
            poster="/etc/hostname",
            preview="videos/../../../x.webp",
        )
    )
    return rows


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> tuple[Path, pd.DataFrame, Path]:
    """A small real library: PNGs in 3 classes, two H.264 videos with posters and previews, and its gallery."""
    lib = tmp_path_factory.mktemp("library")
    rows = _catalog_rows()
    for i, row in enumerate(rows):
        if row["path"].startswith(".."):
            continue
        if row["kind"] == "image":
            _write_png(lib / row["path"], seed=i, cls=row["class"])
        else:
            _write_video(lib / row["path"], lib / row["poster"], lib / row["preview"])
    catalog = pd.DataFrame(rows)
    index = write_gallery(catalog, lib, title="Test <gallery> & co", summary={"accepted": 8, "duplicates <b>": 3})
    return lib, catalog, index


# ------------------------------------------------------------------------------------------- plain (no browser)


class _Collector(HTMLParser):
    """Counts elements and collects URL attributes; errors on badly nested tags we care about."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: dict[str, int] = {}
        self.urls: list[str] = []
        self.text: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.scripts += tag == "script"
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "poster")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(text: str) -> _Collector:
    c = _Collector()
    c.feed(text)
    c.close()
    return c


def _plain_catalog() -> pd.DataFrame:
    return pd.DataFrame(_catalog_rows())


def _data(html_text: str) -> dict:
    """The grid's index: the page's inline JSON."""
    import json

    m = re.search(r'<script type="application/json" id="gallery-data">(.*?)</script>', html_text, re.S)
    assert m, "no inline index"
    return json.loads(m.group(1))


def _ids(index: dict) -> list[str]:
    ids = index["ids"]
    return [ids[i : i + 16] for i in range(0, len(ids), 16)] if isinstance(ids, str) else ids


def test_escaping_and_safe_links() -> None:
    site = render_site(_plain_catalog(), title="<b>t</b>", summary={"<i>k</i>": "<v>", "n": 1.23456})
    html_text = site.html
    assert "<script>window.__pwned" not in html_text and "__pwned" in html_text  # only as escaped JSON
    assert "<b>t</b>" not in html_text and "&lt;b&gt;t&lt;/b&gt;" in html_text
    assert "&lt;i&gt;k&lt;/i&gt;" in html_text and "&lt;v&gt;" in html_text and "1.235" in html_text
    parsed = _parse(html_text)
    assert parsed.scripts == 2  # the inline index (data, never run) and the page's own script
    assert parsed.urls == []  # every URL is set by the script, from the checked data
    index = _data(html_text)
    assert index["n"] == len(_plain_catalog()) and f"{EVIL} (2)" in index["classes"].values()
    details = [row for text in site.details.values() for row in _detail_rows(text)]
    assert len(details) == index["n"] and all("<" not in t for t in site.details.values())
    urls = [u for row in details for u in (row["src"], row["poster"], row["preview"]) if u]
    urls += [row["beside"]["src"] for row in details if row["beside"] and row["beside"]["src"]]
    assert urls and all(".." not in u and not u.startswith("/") and ":" not in u for u in urls)
    assert "images/class%201/a%233%20%C3%A9.png" in urls
    attack = next(row for row in details if row["id"] == "deadbeefdeadbeef")
    assert attack["src"] is None and attack["refused"] and attack["poster"] is None and attack["preview"] is None
    assert _ids(index).index("deadbeefdeadbeef") in index["noThumb"]
    assert 'id="shown-count"' in html_text and "9 of 9 assets shown" in html_text
    for control in ("filter-model", "filter-version", "filter-class", "filter-kind", "filter-build",
                    "filter-min-realism", "filter-max-realism", "filter-min-d", "filter-max-d", "sort"):  # fmt: skip
        assert f'id="{control}"' in html_text
    assert "http://" not in html_text and "https://" not in html_text  # nothing from the network


def _detail_rows(text: str) -> list[dict]:
    import json

    m = re.fullmatch(r"window\.ganforgeDetail\((\d+),(.*)\);\n", text, re.S)
    assert m, text[:80]
    return json.loads(m.group(2))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("images/a.png", "images/a.png"),
        ("images/a b#?.png", "images/a%20b%23%3F.png"),
        ("images/é.png", "images/%C3%A9.png"),
        ("../../etc/passwd", None),
        ("images/../../x.png", None),
        ("/etc/passwd", None),
        ("C:/Windows/x.png", None),
        ("javascript:alert(1)", None),
        ("http://example.com/x.png", None),
        ("images\\..\\x.png", None),
        ("images/a\n.png", None),
        ("", None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_safe_href(path, expected) -> None:
    assert safe_href(path) == expected


def test_deterministic_and_atomic(tmp_path: Path) -> None:
    catalog = _plain_catalog()
    first = write_gallery(catalog, tmp_path).read_bytes()
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    second = write_gallery(catalog, tmp_path).read_bytes()
    shuffled = write_gallery(catalog.sample(frac=1.0, random_state=3).reset_index(drop=True), tmp_path).read_bytes()
    assert first == second == shuffled
    after = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert after == files and files[0].startswith("gallery/") and files[-1] == "index.html"  # no temp files
    assert len(files) == 2  # one detail file for 9 assets; no thumbnails (no asset files here)
    # one build: by kind, class, realism descending, then asset id
    ids = _ids(_data(first.decode()))
    assert ids[:4] == ["c0d1e2f3a4b50008", "a1b2c3d4e5f60001", "a1b2c3d4e5f60002", "deadbeefdeadbeef"]
    assert ids[-1] == "b0c1d2e3f4a50007"
    # a new catalog: new detail files, the old ones removed once the page no longer names them
    write_gallery(catalog.head(3), tmp_path)
    details = list((tmp_path / "gallery").iterdir())
    assert len(details) == 1 and details[0].name not in first.decode()


def test_failed_write_keeps_old_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = write_gallery(_plain_catalog(), tmp_path)
    before = index.read_bytes()
    listing = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_gallery(_plain_catalog().head(2), tmp_path)
    monkeypatch.undo()
    assert index.read_bytes() == before
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == listing


def test_empty_catalog(tmp_path: Path) -> None:
    for catalog in (pd.DataFrame(), pd.DataFrame(columns=["asset_id", "kind", "path"])):
        text = write_gallery(catalog, tmp_path, title="empty").read_text(encoding="utf-8")
        assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
        assert "library is empty" in text and "0 of 0 assets shown" in text
        assert _data(text)["n"] == 0
        _parse(text)


def test_tolerates_sparse_and_parquet_catalogs(tmp_path: Path) -> None:
    sparse = pd.DataFrame(
        [
            {"asset_id": "00ff", "kind": "image", "path": "a.png", "realism": float("nan"), "seeds": None},
            {"asset_id": "01ff", "kind": "weird<kind>", "class": float("nan"), "created_at": "not a date"},
            {"asset_id": "02ff"},
        ]
    )
    site = render_site(sparse)
    index = _data(site.html)
    assert index["n"] == 3 and index["ids"] == ["02ff", "00ff", "01ff"] and index["r"] == [None, None, None]
    assert "weird&lt;kind&gt;" in site.html and index["noThumb"] == [0, 1, 2]
    rows = _detail_rows(next(iter(site.details.values())))
    assert "not a date" in str(rows) and "–" in str(rows)
    # parquet turns lists into numpy arrays and timestamps into datetime64[us, UTC]
    pq = tmp_path / "catalog.parquet"
    _plain_catalog().to_parquet(pq)
    from_parquet = pd.read_parquet(pq)
    assert isinstance(from_parquet["seeds"].iloc[0], np.ndarray)
    assert render_gallery(from_parquet) == render_gallery(_plain_catalog())


# ------------------------------------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def browser():
    """One headless Debian Chromium for the module; skipped (or failed in CI) when it is not installed."""
    problems = []
    if not CHROMIUM.exists():
        problems.append(f"{CHROMIUM} not found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problems.append("the Python package 'playwright' is not installed")
    if problems:
        reason = "browser gallery tests need Chromium and Playwright: " + "; ".join(problems)
        if os.environ.get("GANFORGE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}. Install them with `apt-get install chromium` and `pip install playwright`.")
        pytest.skip(reason)
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def page(browser, library):
    """The gallery opened from file://, with console and page errors collected on `page.problems`."""
    _, _, index = library
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    pg.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))  # an injected alert()
    pg.problems = problems
    pg.goto(index.as_uri())
    yield pg
    context.close()


def _counter(page) -> str:
    return page.locator("#shown-count").inner_text()


def _open_detail(page, asset_id: str):
    page.locator(f'.cell[data-asset-id="{asset_id}"] .thumb').click()
    page.wait_for_function(
        "id => !document.getElementById('detail').hidden && document.querySelector('#detail dd')"
        " && document.querySelector('#detail dd').textContent === id",
        arg=asset_id,
    )
    return page.locator("#detail")


def test_page_loads_with_all_cells(page, library) -> None:
    _, catalog, _ = library
    n = len(catalog)
    assert page.title() == "Test <gallery> & co"
    assert page.locator(CELLS).count() == n
    assert _counter(page).startswith(f"{n} of {n}")
    assert page.locator("#page-info").inner_text() == "page 1 of 1"
    assert page.locator("table.summary").inner_text().count("duplicates <b>") == 1
    assert page.problems == []


def test_filters_and_sorts(page, library) -> None:
    _, catalog, _ = library
    n = len(catalog)

    def in_class(c: int) -> int:
        return sum(row["class"] == c or c in row["classes"] for row in catalog.to_dict("records"))

    for c in (0, 1, 2):
        page.select_option("#filter-class", str(c))
        assert page.locator(CELLS).count() == in_class(c)
        assert _counter(page).startswith(f"{in_class(c)} of {n}")
    # the select lists classes by name, the hostile one as literal text
    labels = page.locator("#filter-class option").all_inner_texts()
    assert labels[0] == "all classes" and any(EVIL in label for label in labels)

    page.select_option("#filter-class", "")
    page.select_option("#filter-kind", label="latent walk")
    assert page.locator(CELLS).count() == (catalog["kind"] == "latent_walk").sum() == 1
    assert page.locator(CELLS).first.get_attribute("data-kind") == "latent_walk"

    page.select_option("#filter-kind", "")
    page.fill("#filter-min-realism", "0.6")
    expected = int((catalog["realism"] >= 0.6).sum())
    assert page.locator(CELLS).count() == expected
    assert _counter(page).startswith(f"{expected} of {n}")
    realisms = [float(v) for v in page.locator(CELLS).evaluate_all("cs => cs.map(c => c.dataset.realism)")]
    assert min(realisms) >= 0.6
    page.fill("#filter-max-d", "0.3")  # d_score = realism - 0.5
    expected = int(((catalog["realism"] >= 0.6) & (catalog["d_score"] <= 0.3)).sum())
    assert page.locator(CELLS).count() == expected

    page.click("#filter-reset")
    page.select_option("#filter-version", label="ganforge-digits –")  # the checkpoint-drawn morph: no version
    assert page.locator(CELLS).count() == (catalog["model_version"] == "").sum() == 1
    page.select_option("#filter-version", "")
    page.select_option("#sort", "realism")
    realisms = [float(v) for v in page.locator(CELLS).evaluate_all("cs => cs.map(c => c.dataset.realism)")]
    assert realisms == sorted(catalog["realism"], reverse=True)
    page.click("#filter-reset")
    assert page.locator(CELLS).count() == n and _counter(page).startswith(f"{n} of {n}")
    assert page.problems == []


def test_videos_play_in_the_detail_panel(page, library) -> None:
    _, catalog, _ = library
    videos = catalog[catalog["kind"] != "image"]
    assert len(videos) == 2
    for asset_id in videos["asset_id"]:
        _open_detail(page, asset_id)
        r = page.evaluate(
            """async () => {
              const v = document.querySelector("#detail video");
              v.muted = true;
              await v.play();
              const t0 = performance.now();
              while (v.currentTime <= 0 && performance.now() - t0 < 5000) await new Promise(r => setTimeout(r, 50));
              const out = {t: v.currentTime, ready: v.readyState, error: v.error ? v.error.code : null,
                           w: v.videoWidth, poster: v.getAttribute("poster")};
              v.pause();
              return out;
            }"""
        )
        assert r["error"] is None and r["t"] > 0 and r["ready"] >= 2 and r["w"] == 64 and r["poster"], r
    assert page.problems == []


def test_no_script_injection_or_escaping_links(page, library) -> None:
    lib, catalog, _ = library
    base = lib.as_uri() + "/"
    for asset_id in catalog["asset_id"]:
        panel = _open_detail(page, asset_id)
        links = panel.locator("[src], [href], [poster]").evaluate_all(
            """els => els.flatMap(e => ["src", "href", "poster"].filter(a => e.hasAttribute(a))
                     .map(a => ({raw: e.getAttribute(a), abs: new URL(e.getAttribute(a), document.baseURI).href})))"""
        )
        for link in links:
            assert ".." not in link["raw"] and link["abs"].startswith(base), link
        if asset_id == "deadbeefdeadbeef":  # the path attack: shown, pointing nowhere
            assert links == [] and "path refused" in panel.inner_text()
        else:
            assert links
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    _open_detail(page, "a1b2c3d4e5f60005")
    assert EVIL in page.locator("#detail h2").inner_text()
    srcs = page.evaluate("() => Array.from(document.scripts, s => s.getAttribute('src')).filter(Boolean)")
    assert srcs and all(s.startswith("gallery/") for s in srcs)  # only the page's own detail files
    assert page.problems == []  # no dialog, no error (more payloads: tests/test_untrusted.py)


def test_selection_gives_an_export_command(page, library) -> None:
    _, catalog, _ = library
    picks = ["a1b2c3d4e5f60003", "a1b2c3d4e5f60001"]
    for asset_id in picks:
        page.locator(f'.cell[data-asset-id="{asset_id}"] .pick').check()
    assert page.locator("#selected-count").inner_text() == "2 selected"
    page.select_option("#export-format", "webdataset")
    page.locator(f'.cell[data-asset-id="{picks[0]}"] .pick').uncheck()
    page.locator(f'.cell[data-asset-id="{picks[0]}"] .pick').check()
    page.click("#copy-export")
    command = page.locator("#export-command").input_value()
    assert command == f"ganforge library export exported --format webdataset --ids {','.join(sorted(picks))}"
    page.click("#select-page")
    assert page.locator("#selected-count").inner_text() == f"{len(catalog)} selected"
    page.click("#select-clear")
    assert page.locator("#selected-count").inner_text() == "0 selected" and page.locator("#export-command").is_hidden()
    assert page.problems == []


def test_pages_of_a_large_catalog(browser, tmp_path: Path) -> None:
    rows = [_row(f"{i:016x}", "image", f"images/000/{i:016x}.png", i % 3, i / 1000) for i in range(2 * PAGE + 7)]
    index = write_gallery(pd.DataFrame(rows), tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    try:
        pg.goto(index.as_uri())
        assert pg.locator(CELLS).count() == PAGE and pg.locator("#page-info").inner_text() == "page 1 of 3"
        assert pg.locator("#page-prev").is_disabled()
        pg.click("#page-next")
        pg.click("#page-next")
        assert pg.locator(CELLS).count() == 7 and pg.locator("#page-next").is_disabled()
        pg.select_option("#filter-class", "1")  # a filter goes back to the first page
        assert (
            pg.locator("#page-info").inner_text() == "page 1 of 1" and pg.locator(CELLS).count() == (2 * PAGE + 7) // 3
        )
        assert pg.locator(".cell .missing").count() == pg.locator(CELLS).count()  # no files: no thumbnails
        _open_detail(pg, f"{2 * PAGE + 4:016x}")
        assert pg.locator("#detail").inner_text().count("ganforge generate --name ganforge-digits --model 3") == 1
        for f in (tmp_path / "gallery").iterdir():  # a page copied without its detail files says so
            f.unlink()
        pg.reload()
        pg.locator(CELLS).first.locator(".thumb").click()
        pg.wait_for_function("() => document.querySelector('#detail').innerText.includes('is missing')")
        assert "run `ganforge library build`" in pg.locator("#detail").inner_text()
    finally:
        context.close()


def test_thumbnails_load_and_screenshot(page, library, tmp_path: Path) -> None:
    lib, catalog, _ = library
    page.wait_for_function(
        "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)", timeout=5000
    )
    sizes = page.locator("#gallery img").evaluate_all("is => is.map(i => [i.naturalWidth, i.clientWidth])")
    safe = catalog[~catalog["path"].str.startswith("..")]
    assert len(sizes) == len(safe)  # images and video posters
    assert sorted(nat for nat, _ in sizes) == [32] * int((safe["kind"] == "image").sum()) + [64, 64], sizes
    assert all(shown == 96 for _, shown in sizes), sizes
    assert page.locator("#gallery img").first.evaluate("i => getComputedStyle(i).imageRendering") == "pixelated"
    assert sorted(p.stem for p in (lib / "thumbs").iterdir()) == sorted(safe["asset_id"])
    with Image.open(lib / "thumbs" / "a1b2c3d4e5f60001.webp") as im:
        assert im.format == "WEBP" and im.size == (32, 32)
    _open_detail(page, "b0c1d2e3f4a50007")
    page.wait_for_function("() => document.querySelector('#detail video').readyState >= 1")
    page.wait_for_timeout(1500)  # Chromium's media controls play a ~1.2 s loading-spinner animation after load
    shots = [tmp_path / "gallery.png", ROOT / "test-artifacts" / "gallery.png"]
    shots[1].parent.mkdir(parents=True, exist_ok=True)
    png = page.screenshot(full_page=True)
    for shot in shots:
        shot.write_bytes(png)
        assert shot.stat().st_size > 1000
        with Image.open(shot) as im:
            assert im.format == "PNG" and im.width == 1280
    assert page.problems == []


def test_a_new_build_leaves_the_detail_files_of_the_old_ones_alone(browser, tmp_path: Path) -> None:
    old = [_row(f"{i:016x}", "image", f"images/000/{i:016x}.png", 0, i / 100) for i in range(300)]
    write_gallery(pd.DataFrame(old), tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "gallery").iterdir()}
    new = [_row(f"{i:016x}", "image", f"images/000/{i:016x}.png", 1, 0.5, build_id="build-0002",
                created_at=pd.Timestamp("2025-02-01T00:00:00Z")) for i in range(300, 320)]  # fmt: skip
    text = write_gallery(pd.DataFrame(old + new), tmp_path).read_text()
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "gallery").iterdir()}
    kept = set(before) & set(after)
    assert len(before) == 2 and len(after) == 2 and len(kept) == 1  # the full first file stays, untouched
    assert all(before[n] == after[n] for n in kept)
    index = _data(text)
    assert index["builds"] == ["build-0001", "build-0002"] and _ids(index)[-1] == f"{319:016x}"
    context = browser.new_context()
    pg = context.new_page()
    try:  # the page shows the newest build first, and its build filter lists it first
        pg.goto((tmp_path / "index.html").as_uri())
        assert pg.locator(CELLS).first.get_attribute("data-asset-id") == f"{300:016x}"
        assert pg.locator("#filter-build option").all_inner_texts() == ["all builds", "build-0002", "build-0001"]
    finally:
        context.close()
