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

from ganforge.assets.gallery import render_gallery, safe_href, write_gallery

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
VISIBLE_CARDS = "article.card:visible"


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


def test_escaping_and_safe_links() -> None:
    html_text = render_gallery(_plain_catalog(), title="<b>t</b>", summary={"<i>k</i>": "<v>", "n": 1.23456})
    assert "<script>window.__pwned" not in html_text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;&quot;&amp;&#x27;é" in html_text
    assert "<b>t</b>" not in html_text and "&lt;b&gt;t&lt;/b&gt;" in html_text
    assert "&lt;i&gt;k&lt;/i&gt;" in html_text and "&lt;v&gt;" in html_text and "1.235" in html_text
    parsed = _parse(html_text)
    assert parsed.scripts == 1  # only the page's own script
    assert parsed.tags["article"] == len(_plain_catalog())
    assert EVIL in "".join(parsed.text)  # shown as literal text
    assert parsed.urls and all(".." not in u and not u.startswith("/") and ":" not in u for u in parsed.urls)
    assert "images/class%201/a%233%20%C3%A9.png" in parsed.urls
    assert 'id="shown-count"' in html_text and "9 of 9 assets shown" in html_text
    for control in ("filter-class", "filter-kind", "filter-min-realism"):
        assert f'id="{control}"' in html_text
    assert "http://" not in html_text and "https://" not in html_text  # nothing from the network


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
    second = write_gallery(catalog, tmp_path).read_bytes()
    shuffled = write_gallery(catalog.sample(frac=1.0, random_state=3).reset_index(drop=True), tmp_path).read_bytes()
    assert first == second == shuffled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]  # no temp files left behind
    # sorted by kind, class, realism descending, then asset id
    ids = re.findall(r'data-asset-id="([0-9a-f]+)"', first.decode())
    assert ids[:4] == ["c0d1e2f3a4b50008", "a1b2c3d4e5f60001", "a1b2c3d4e5f60002", "deadbeefdeadbeef"]
    assert ids[-1] == "b0c1d2e3f4a50007"


def test_failed_write_keeps_old_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = write_gallery(_plain_catalog(), tmp_path)
    before = index.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_gallery(pd.DataFrame(), tmp_path)
    monkeypatch.undo()
    assert index.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]


def test_empty_catalog(tmp_path: Path) -> None:
    for catalog in (pd.DataFrame(), pd.DataFrame(columns=["asset_id", "kind", "path"])):
        text = write_gallery(catalog, tmp_path, title="empty").read_text(encoding="utf-8")
        assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
        assert "library is empty" in text and "0 of 0 assets shown" in text
        assert "<article" not in text
        _parse(text)


def test_tolerates_sparse_and_parquet_catalogs(tmp_path: Path) -> None:
    sparse = pd.DataFrame(
        [
            {"asset_id": "00ff", "kind": "image", "path": "a.png", "realism": float("nan"), "seeds": None},
            {"asset_id": "01ff", "kind": "weird<kind>", "class": float("nan"), "created_at": "not a date"},
            {"asset_id": "02ff"},
        ]
    )
    text = render_gallery(sparse)
    assert text.count('<article class="card"') == 3
    assert "–" in text and "weird&lt;kind&gt;" in text and "not a date" in text
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


def test_page_loads_with_all_cards(page, library) -> None:
    _, catalog, _ = library
    n = len(catalog)
    assert page.title() == "Test <gallery> & co"
    assert page.locator("article.card").count() == n
    assert page.locator(VISIBLE_CARDS).count() == n
    assert _counter(page).startswith(f"{n} of {n}")
    assert page.locator("table.summary").inner_text().count("duplicates <b>") == 1
    assert page.problems == []


def test_filters(page, library) -> None:
    _, catalog, _ = library
    n = len(catalog)

    def in_class(c: int) -> int:
        return sum(row["class"] == c or c in row["classes"] for row in catalog.to_dict("records"))

    for c in (0, 1, 2):
        page.select_option("#filter-class", str(c))
        assert page.locator(VISIBLE_CARDS).count() == in_class(c)
        assert _counter(page).startswith(f"{in_class(c)} of {n}")
    # the select lists classes by name, the hostile one as literal text
    labels = page.locator("#filter-class option").all_inner_texts()
    assert labels[0] == "all classes" and any(EVIL in label for label in labels)

    page.select_option("#filter-class", "")
    page.select_option("#filter-kind", "latent_walk")
    visible = page.locator(VISIBLE_CARDS)
    assert visible.count() == (catalog["kind"] == "latent_walk").sum() == 1
    assert visible.locator("video").count() == 1 and visible.locator("img").count() == 0

    page.select_option("#filter-kind", "")
    page.fill("#filter-min-realism", "0.6")
    expected = int((catalog["realism"] >= 0.6).sum())
    assert page.locator(VISIBLE_CARDS).count() == expected
    assert _counter(page).startswith(f"{expected} of {n}")
    realisms = [float(v) for v in page.locator(VISIBLE_CARDS).evaluate_all("cs => cs.map(c => c.dataset.realism)")]
    assert min(realisms) >= 0.6

    page.click("#filter-reset")
    assert page.locator(VISIBLE_CARDS).count() == n
    assert _counter(page).startswith(f"{n} of {n}")
    assert page.problems == []


def test_videos_play(page) -> None:
    results = page.evaluate(
        """async () => {
          const out = [];
          for (const v of document.querySelectorAll("video")) {
            v.muted = true;
            await v.play();
            const t0 = performance.now();
            while (v.currentTime <= 0 && performance.now() - t0 < 5000) await new Promise(r => setTimeout(r, 50));
            out.push({t: v.currentTime, ready: v.readyState, error: v.error ? v.error.code : null,
                      w: v.videoWidth, poster: v.getAttribute("poster")});
            v.pause();
          }
          return out;
        }"""
    )
    assert len(results) == 2
    for r in results:
        assert r["error"] is None, r
        assert r["t"] > 0, r
        assert r["ready"] >= 2, r
        assert r["w"] == 64 and r["poster"], r
    assert page.problems == []


def test_no_script_injection_or_escaping_links(page, library) -> None:
    lib, _, _ = library
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    assert EVIL in page.locator("body").inner_text()
    assert page.locator("article.card h2", has_text=EVIL).count() >= 1
    links = page.locator("[src], [href], [poster]").evaluate_all(
        """els => els.flatMap(e => ["src", "href", "poster"].filter(a => e.hasAttribute(a))
                 .map(a => ({raw: e.getAttribute(a), abs: a === "poster" ? new URL(e.getAttribute(a),
                             document.baseURI).href : e[a]})))"""
    )
    assert len(links) >= 9 + 2 * 3  # file link per safe card, plus media, posters, previews
    base = lib.as_uri() + "/"
    for link in links:
        assert ".." not in link["raw"], link
        assert link["abs"].startswith(base), link
    attack = page.locator('article.card[data-asset-id="deadbeefdeadbeef"]')
    assert attack.count() == 1 and attack.is_visible()
    assert attack.locator("[src], [href], [poster]").count() == 0
    assert page.problems == []  # no dialog, no error (more payloads: tests/test_untrusted.py)


def test_images_load_and_screenshot(page, library, tmp_path: Path) -> None:
    _, catalog, _ = library
    page.wait_for_function(
        """() => Array.from(document.images).filter(i => i.offsetParent !== null)
                 .every(i => i.complete && i.naturalWidth > 0)""",
        timeout=5000,
    )
    sizes = page.locator("article.card img").evaluate_all("is => is.map(i => [i.naturalWidth, i.clientWidth])")
    assert len(sizes) == int(((catalog["kind"] == "image") & ~catalog["path"].str.startswith("..")).sum())
    assert all(nat == 32 and shown == 128 for nat, shown in sizes), sizes
    assert page.locator("article.card img").first.evaluate("i => getComputedStyle(i).imageRendering") == "pixelated"
    # let the posters decode and the videos' metadata arrive (no loading spinner) before the picture is taken
    page.evaluate(
        """() => Promise.all(Array.from(document.querySelectorAll("video[poster]"), v => {
             const img = new Image(); img.src = v.poster; return img.decode(); }))"""
    )
    page.wait_for_function("() => Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 1)")
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
