"""Untrusted files, for real: poisoned and bomb torch files against every loader (and `ganforge evaluate`), hostile
names in the gallery in headless Chromium, catalog exports that try to leave DEST, and the host of every server.

Nothing here is mocked: the malicious files are what `torch.save`/`pickle` write (their payload is shown to be live
with `torch.load(weights_only=False)`), the bombs are real bombs for plain `torch.load`, the browser is Chromium.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from ganforge import cli
from ganforge.assets import catalog
from ganforge.assets.gallery import write_gallery
from ganforge.errors import GanforgeError
from ganforge.metrics import classifier, clips
from ganforge.models import build
from ganforge.paths import Paths
from ganforge.training import checkpoint

from .conftest import ROOT, make_spec
from .test_gallery import _row as gallery_row
from .test_gallery import _write_png, browser  # noqa: F401  (browser: the headless Chromium fixture)

# ------------------------------------------------------------------------------------ 1. torch files as data only


class RunsCode:
    """Unpickling this runs a shell command: what a poisoned checkpoint downloaded from somewhere does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


# the loaders, where each looks (a project's models/), and a file that is otherwise what it expects
LOADERS = {
    "checkpoint": (checkpoint.load, lambda p: p.checkpoint, lambda x: {"format": 1, "G_ema": x, "spec": {}}),
    "classifier": (classifier.load, lambda p: p.classifier, lambda x: {"format": 1, "state_dict": x, "arch": {}}),
    "clip_classifier": (
        clips.load,
        lambda p: p.clip_classifier,
        lambda x: {"format": 1, "kind": "clip_classifier", "state_dict": x, "arch": {}},
    ),
}
HOW = ("torch.save", "torch.save, pickle protocol 4", "plain pickle")


def _poison(path: Path, state: dict, how: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "plain pickle":
        path.write_bytes(pickle.dumps(state, protocol=4))
    else:
        torch.save(state, path, pickle_protocol=4 if "4" in how else 2)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and len(text) < 400, text
    return text


def test_the_poisoned_file_is_live(tmp_path: Path) -> None:
    """The control: loaded the unsafe way, the file runs its command (so the refusals below mean something)."""
    marker = tmp_path / "pwned"
    _poison(tmp_path / "evil.pt", LOADERS["checkpoint"][2](RunsCode(marker)), "torch.save")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("name", LOADERS)
def test_loaders_refuse_pickled_code(tmp_path: Path, name: str, how: str) -> None:
    load, where, wrap = LOADERS[name]
    marker = tmp_path / "pwned"
    paths = Paths(tmp_path / "project")
    _poison(where(paths), wrap(RunsCode(marker)), how)
    with pytest.raises(GanforgeError) as exc:
        load(where(paths))
    why = "(not a torch.save zip archive)" if how == "plain pickle" else "(UnpicklingError)"  # weights_only's
    what = {"checkpoint": "ganforge checkpoint", "classifier": "classifier", "clip_classifier": "clip classifier"}[name]
    assert _one_line(exc) == f"{where(paths)}: not a readable {what} {why}"
    assert not marker.exists()


# -- bombs: small files that plain torch.load(weights_only=True) accepts (or nearly) and that would cost a lot


class _Storage:
    """Pickled as torch's persistent id of a storage record: ("storage", type, key, location, numel)."""

    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _Tensor:
    """Pickled exactly as torch pickles a tensor: `_rebuild_tensor_v2(storage, offset, size, stride, ...)`."""

    def __init__(self, storage: _Storage, size: tuple[int, ...], stride: tuple[int, ...] | None = None) -> None:
        contiguous = tuple(int(torch.Size(size[i + 1 :]).numel()) for i in range(len(size)))
        self.storage, self.size, self.stride = storage, size, contiguous if stride is None else stride

    def __reduce__(self):
        args = (self.storage, 0, self.size, self.stride, False, collections.OrderedDict())
        return (torch._utils._rebuild_tensor_v2, args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel) if isinstance(obj, _Storage) else None


def _torch_zip(path: Path, data_pkl: bytes, records: dict[str, bytes | int] | None = None, deflate: bool = False):
    """A file in torch.save's zip layout; a record given as an int is that many zero bytes, streamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for key, data in (records or {}).items():
            if isinstance(data, int):
                with z.open(f"archive/data/{key}", "w", force_zip64=True) as f:
                    for _ in range(data // (1 << 20)):
                        f.write(bytes(1 << 20))
            else:
                z.writestr(f"archive/data/{key}", data)


def _pickled(obj) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _laughs(levels: int = 12, width: int = 10) -> bytes:
    """{"format": 1, "spec": L, "G_ema": L}: L holds `width` references to a list holding `width` references to
    ... (`levels` deep): width**levels = 10**12 values in ~1 KB, raw pickle opcodes (protocol 2)."""

    def memo(i: int) -> bytes:
        return i.to_bytes(4, "little")

    def level(n: int) -> bytes:  # ] ( <items> e r<memo>: a list, appended to, memoised as 1000+n
        if n == 0:
            return b"](" + b"K\x00" * width + b"er" + memo(1000)
        return b"](" + level(n - 1) + (b"j" + memo(999 + n)) * (width - 1) + b"er" + memo(1000 + n)

    body = b"}(X\x06\x00\x00\x00formatK\x01X\x04\x00\x00\x00spec" + level(levels - 1)
    body += b"X\x05\x00\x00\x00G_emaj" + memo(999 + levels) + b"u"
    return b"\x80\x02" + body + b"."


def _deep(depth: int = 50_000) -> bytes:
    """{"format": 1, "G_ema": [[[...]]]} nested `depth` deep in 2 bytes a level (a checksum's recursion dies)."""
    return b"\x80\x02}(X\x06\x00\x00\x00formatK\x01X\x05\x00\x00\x00G_ema" + b"]" * depth + b"a" * (depth - 1) + b"u."


def _zero_stride_classifier(path: Path) -> None:
    """A classifier whose `arch` builds a 256 MB network, every weight present with the right shape: as broadcast
    views (stride 0) of one stored float each. A few KB on disk."""
    arch = {"channels": 1, "num_classes": 1 << 13, "width": 8, "feature_dim": 1 << 13}
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in classifier.Classifier(**arch).state_dict().items()}
    weights = {k: _Tensor(_Storage(str(i), 1), s, (0,) * len(s)) for i, (k, s) in enumerate(shapes.items())}
    state = {
        "format": 1,
        "state_dict": weights,
        "arch": arch,
        "class_names": [],
        "resolution": 16,
        "test_accuracy": 1.0,
    }
    _torch_zip(path, _pickled(state), {str(i): bytes(4) for i in range(len(shapes))})


def _make_bomb(name: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if name == "zip bomb (64 MB tensor in a 64 KB file)":
        state = {"format": 1, "G_ema": {"w": _Tensor(_Storage("0", 1 << 24), (1 << 24,))}, "spec": {}}
        _torch_zip(path, _pickled(state), {"0": 1 << 26}, deflate=True)
    elif name == "billion laughs (10**12 values in 1 KB)":
        _torch_zip(path, _laughs())
    elif name == "nested 50,000 deep":
        _torch_zip(path, _deep())
    elif name == "storage claiming 4 TB":
        state = {"format": 1, "G_ema": {"w": _Tensor(_Storage("0", 1 << 40), (1 << 40,))}, "spec": {}}
        _torch_zip(path, _pickled(state), {"0": bytes(16)})
    elif name == "spec building a 16 GB generator":  # z_dim is bounded (4096); the classes come from the data
        spec = make_spec("dcgan", 16, 1, 1 << 20, z_dim=4096, d_norm="batch", g_upsample="convtranspose")
        torch.save({"format": 1, "G_ema": {}, "spec": spec.to_dict(), "step": 1}, path)
    elif name == "arch building a 4 TB classifier":
        arch = {"channels": 1, "num_classes": 1 << 20, "width": 8, "feature_dim": 1 << 20}
        state = {"state_dict": {}, "arch": arch, "class_names": [], "resolution": 16, "test_accuracy": 1.0}
        torch.save({"format": 1, **state}, path)
    elif name == "256 MB classifier from stride-0 weights":
        _zero_stride_classifier(path)
    else:
        raise AssertionError(name)


BOMBS = {  # bomb -> (loader, what the one-line refusal names: the guard that caught it before any cost)
    "zip bomb (64 MB tensor in a 64 KB file)": ("checkpoint", "compressed records"),
    "billion laughs (10**12 values in 1 KB)": ("checkpoint", "pickle bomb"),
    "nested 50,000 deep": ("checkpoint", "pickle bomb"),
    "storage claiming 4 TB": ("checkpoint", "(RuntimeError)"),  # torch's own size check
    "spec building a 16 GB generator": ("checkpoint", "its architecture needs 17,"),
    "arch building a 4 TB classifier": ("classifier", "its architecture needs 4,"),
    "256 MB classifier from stride-0 weights": ("classifier", "its architecture needs 26"),
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@pytest.mark.parametrize("bomb", BOMBS)
def test_bombs_are_refused_quickly_in_little_memory(tmp_path: Path, bomb: str) -> None:
    loader, reason = BOMBS[bomb]
    load, where, _ = LOADERS[loader]
    path = where(Paths(tmp_path))
    _make_bomb(bomb, path)
    assert path.stat().st_size < 200_000
    with torch.device("meta"):  # the first meta build imports torch._dynamo (~2 s, ~120 MB, once): not the bomb's cost
        build(make_spec("dcgan", 16, 1, 10, z_dim=8, g_width=8, d_width=8))
    peak, t0 = _peak_rss_mb(), time.perf_counter()
    with pytest.raises(GanforgeError) as exc:
        load(path)
    took, grew = time.perf_counter() - t0, _peak_rss_mb() - peak
    assert reason in _one_line(exc)
    assert took < 2.0 and grew < 50, (bomb, took, grew, str(exc.value))
    # the control: weights_only=True alone lets every one of them through (except the storage claim it catches)
    if bomb == "storage claiming 4 TB":
        with pytest.raises(RuntimeError, match="does not match expected size"):
            torch.load(path, weights_only=True)
        return
    state = torch.load(path, weights_only=True)
    if bomb.startswith("zip bomb"):
        assert state["G_ema"]["w"].numel() == 1 << 24  # 64 MB, inflated from 64 KB
    elif bomb.startswith("billion"):
        assert state["spec"] is state["G_ema"] and len(state["spec"][0][0][0][0][0][0][0][0][0][0]) == 10
    elif bomb.startswith("nested"):
        depth, x = 0, state["G_ema"]
        while x:
            depth, x = depth + 1, x[0]
        assert depth == 49_999
    elif "stride-0" in bomb:
        w = state["state_dict"]["head.1.weight"]
        assert w.shape == (1 << 13, 1 << 13) and w.untyped_storage().nbytes() == 4


def test_loaders_still_load_what_ganforge_writes(tmp_path: Path) -> None:
    """The bounds leave real files alone: a checkpoint and a classifier written the normal way load."""
    spec = make_spec("dcgan", 16, 1, 10, z_dim=8, g_width=8, d_width=8, d_norm="spectral")
    G, D = build(spec).values()
    nets = {"G": G.state_dict(), "G_ema": G.state_dict(), "D": D.state_dict()}
    checkpoint.save(tmp_path / "ck.pt", {**nets, "spec": spec.to_dict(), "step": 3, "class_names": list("0123456789")})
    assert checkpoint.load(tmp_path / "ck.pt")["step"] == 3
    net = classifier.Classifier(1, 10, width=8, feature_dim=16)
    arch = {"channels": 1, "num_classes": 10, "width": 8, "feature_dim": 16}
    classifier.save(tmp_path / "c.pt", {"state_dict": net.state_dict(), "arch": arch, "class_names": list("0123456789"),
                                        "resolution": 16, "test_accuracy": 0.9})  # fmt: skip
    loaded, record = classifier.load(tmp_path / "c.pt")
    assert record["test_accuracy"] == 0.9 and torch.equal(loaded.state_dict()["head.1.weight"], net.head[1].weight)
    # and a checkpoint whose weights do not fit its own spec is refused in one line, not with a traceback
    other = make_spec("dcgan", 16, 1, 10, z_dim=8, g_width=16, d_width=8, d_norm="spectral")
    checkpoint.save(tmp_path / "bad.pt", {"G_ema": G.state_dict(), "spec": other.to_dict()})
    with pytest.raises(GanforgeError, match="G_ema weights do not fit") as exc:
        checkpoint.load(tmp_path / "bad.pt")
    _one_line(exc)


def test_cli_evaluate_refuses_a_poisoned_checkpoint(tmp_path: Path, digits16: Path) -> None:
    """`python -m ganforge evaluate` in a project whose models/checkpoint.pt runs code: exit 1, one line, no run."""
    project = tmp_path / "project"
    shutil.copytree(digits16, project / "data" / "prepared")
    (project / "params.yaml").write_text("tracking:\n  enabled: false\n")
    marker = tmp_path / "pwned"
    _poison(Paths(project).checkpoint, LOADERS["checkpoint"][2](RunsCode(marker)), "torch.save, pickle protocol 4")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "GANFORGE_"))}
    out = subprocess.run(
        [sys.executable, "-m", "ganforge", "evaluate", "-q"], cwd=project, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out
    assert out.stderr.startswith("error: models/checkpoint.pt: not a readable ganforge checkpoint"), out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr  # torch's warning is gone too
    assert not marker.exists()


# ------------------------------------------------------------------------------- 2. hostile strings in the gallery

XSS = {
    "class_name": '<img src=x onerror="window.pwned=1;alert(1)">',
    "model_name": 'gan" onmouseover="alert(2)" x="',
    "model_version": "1'><script>alert(3)</script>",
    "run_id": "</code><script>window.pwned=4</script>",
    "source": "javascript:alert(5)",
    "phash": "<iframe src=javascript:alert(6)></iframe>",
    "build_id": '"><svg onload=alert(7)>',
}
HOSTILE_DIR = "images/<img src=x onerror=alert(8)>"  # folder and file names can hold all this (no '/')
HOSTILE_FILE = "\"'><svg onload=alert(9)>.png"
TITLE = "</title><script>alert(10)</script>"
SUMMARY = {"<img src=x onerror=alert(11)>": "<script>alert(12)</script>"}
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", e => window.__csp.push(e.violatedDirective + " " + e.sample));
"""


def _open(browser, index: Path):  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    seen: list[str] = []
    page.on("dialog", lambda d: (seen.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("console", lambda m: seen.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.append(f"pageerror: {e}"))
    page.add_init_script(WATCH)
    page.goto(index.as_uri())
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=5000)
    page.seen = seen
    return context, page


def _nothing_ran(page) -> None:
    assert page.evaluate("() => typeof window.pwned") == "undefined"
    assert page.evaluate("() => window.__csp") == []  # not even blocked by the CSP: never parsed as markup
    scripts = page.evaluate("() => Array.from(document.scripts, s => [s.type, s.getAttribute('src')])")
    inline = [t for t, src in scripts if src is None]
    assert inline == ["application/json", ""]  # the index (data) and the page's own script
    assert all(src.startswith("gallery/") and src.endswith(".js") for t, src in scripts if src)  # detail files
    on_attrs = page.evaluate(
        """() => Array.from(document.querySelectorAll("*")).flatMap(
             e => Array.from(e.attributes).filter(a => a.name.startsWith("on")).map(a => e.tagName + " " + a.name))"""
    )
    assert on_attrs == []
    assert page.locator("svg, iframe").count() == 0
    assert page.seen == []


def test_hostile_strings_stay_text_in_chromium(browser, tmp_path: Path) -> None:  # noqa: F811
    lib = tmp_path / "library"
    rel = f"{HOSTILE_DIR}/{HOSTILE_FILE}"
    _write_png(lib / rel, seed=1, cls=0)
    rows = [gallery_row("a1b2c3d4e5f60001", "image", rel, 3, 0.9, **XSS)]
    rows.append(gallery_row("a1b2c3d4e5f60002", "image", "images/ok.png", 4, 0.5, class_name='tab"le & <chair>'))
    _write_png(lib / "images/ok.png", seed=2, cls=1)
    index = write_gallery(pd.DataFrame(rows), lib, title=TITLE, summary=SUMMARY)
    html = index.read_text(encoding="utf-8")
    for variant, text in (
        ("with CSP", html),
        ("escaping alone (CSP removed)", re.sub(r"<meta http-equiv[^>]*>", "", html)),
    ):
        page_file = lib / ("index.html" if variant == "with CSP" else "no-csp.html")
        page_file.write_text(text, encoding="utf-8")
        assert ("Content-Security-Policy" in text) == (variant == "with CSP")
        context, page = _open(browser, page_file)
        try:
            _nothing_ran(page)
            assert page.title() == TITLE
            body = page.locator("body").inner_text()
            for value in [*SUMMARY, *SUMMARY.values()]:
                assert value in body, (variant, value)
            hostile = page.locator('.cell[data-asset-id="a1b2c3d4e5f60001"]')
            assert XSS["class_name"] in hostile.locator(".label").inner_text()
            options = page.locator("#filter-class option").all_inner_texts()
            assert f"{XSS['class_name']} (3)" in options and 'tab"le & <chair> (4)' in options
            assert f"{XSS['model_name']} {XSS['model_version']}" in page.locator("#filter-version").inner_text()
            assert XSS["build_id"] in page.locator("#filter-build").inner_text()
            # the detail panel shows every hostile field as text, and the image under the hostile folder and file
            # name loads from inside the library
            page.locator('.cell[data-asset-id="a1b2c3d4e5f60001"] .thumb').click()
            page.wait_for_function(
                "() => document.querySelector('#detail img') && document.querySelector('#detail img').complete"
            )
            panel = page.locator("#detail").inner_text()
            for value in XSS.values():
                assert value in panel, (variant, value)
            assert page.locator("#detail h2").inner_text() == f"{XSS['class_name']} (3)"
            img = page.locator("#detail img").first.evaluate("i => [i.naturalWidth, i.src]")
            assert img[0] == 32 and img[1].startswith(lib.as_uri() + "/"), img
            thumb = hostile.locator("img").evaluate("i => [i.naturalWidth, i.src]")
            assert thumb[0] == 32 and thumb[1].startswith(lib.as_uri() + "/thumbs/"), thumb
            _nothing_ran(page)
        finally:
            context.close()


def test_class_folder_names_flow_from_prepare_into_the_gallery_as_text(browser, tmp_path: Path) -> None:  # noqa: F811
    """End to end from disk: class folders named like markup -> `prepare` -> class names -> gallery in Chromium."""
    from PIL import Image

    from ganforge.config import DataConfig
    from ganforge.data.dataset import PreparedData
    from ganforge.data.prepare import prepare

    names = ["<script>alert(1)<", "<img src=x onerror=alert(2)>", "\"' onmouseover=alert(3) x='"]
    raw = tmp_path / "raw"
    for c, name in enumerate(names):
        for i in range(3):
            (raw / name).mkdir(parents=True, exist_ok=True)
            Image.new("L", (8, 8), 40 * c + 10 * i).save(raw / name / f"{i}.png")
    out = tmp_path / "prepared"
    prepare(DataConfig(source="folder", path=str(raw), resolution=16), out, tmp_path / "prepare.json", progress=False)
    class_names = PreparedData.open(out).class_names
    assert sorted(class_names) == sorted(names)  # unchanged by prepare
    lib = tmp_path / "library"
    rows = []
    for c, name in enumerate(class_names):
        rel = f"images/{c:03d}/a1b2c3d4e5f6000{c}.png"
        _write_png(lib / rel, seed=c, cls=c % 3)
        rows.append(gallery_row(f"a1b2c3d4e5f6000{c}", "image", rel, c, 0.5, class_name=name))
    context, page = _open(browser, write_gallery(pd.DataFrame(rows), lib))
    try:
        _nothing_ran(page)
        labels = page.locator(".cell .label").all_inner_texts()
        options = page.locator("#filter-class option").all_inner_texts()
        for c, name in enumerate(class_names):
            assert f"{name} ({c})" in labels and f"{name} ({c})" in options
            page.locator(f'.cell[data-asset-id="a1b2c3d4e5f6000{c}"] .thumb').click()
            page.wait_for_function("t => document.querySelector('#detail h2')?.textContent === t", arg=f"{name} ({c})")
        _nothing_ran(page)
    finally:
        context.close()


# ------------------------------------------------------------------------------- 3. catalog exports stay in DEST

GOOD = "images/002/00000000000000aa.png"


def _catalog_row(asset_id: str, path: str = GOOD, **kw) -> dict:
    row = {c: None for c in catalog.SCHEMA}
    row.update(
        asset_id=asset_id, kind="image", path=path, preview="", poster="", width=8, height=8, frames=1,
        fps=float("nan"), seeds=[1], classes=[2], class_name="two", truncation=0.8, model_name="m",
        model_version="1", model_sha256="abc", run_id="r", source="models:/m/1", realism=1.5, d_score=0.1,
        nearest_real_feature=1.0, nearest_real_pixel=0.2, nearest_real_index=4, phash="0" * 16,
        created_at=pd.Timestamp("2025-01-01", tz="UTC"), build_id="b", **{"class": 2},
    )  # fmt: skip
    row.update(kw)
    return row


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def exportable(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """A library with one good asset, and beside it an `outside` folder with a secret; symlinks from the library
    to the secret (a file) and to the folder (clips/)."""
    lib, outside = tmp_path / "library", tmp_path / "outside"
    (lib / "images" / "002").mkdir(parents=True)
    (lib / GOOD).write_bytes(b"good png")
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    (lib / "images" / "002" / "00000000000000bb.png").symlink_to(outside / "secret.png")
    (lib / "clips").symlink_to(outside, target_is_directory=True)
    return lib, outside, _tree(outside)


BAD_ROWS = {
    "absolute path": {"path": "OUTSIDE/secret.png"},
    "absolute poster": {"poster": "/etc/hostname"},
    "dot-dot": {"path": "images/../../outside/secret.png"},
    "dot-dot staying inside": {"path": "images/002/../002/00000000000000aa.png"},
    "not an asset folder": {"preview": "catalog.parquet"},
    "symlinked file": {"path": "images/002/00000000000000bb.png"},
    "symlinked folder": {"preview": "clips/secret.png"},
    "symlink in DEST": {},
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_export_refuses_paths_leading_outside(exportable, tmp_path: Path, case: str) -> None:
    lib, outside, before = exportable
    fields = {k: v.replace("OUTSIDE", str(outside)) for k, v in BAD_ROWS[case].items()}
    rows = pd.DataFrame(
        [_catalog_row("00000000000000aa", GOOD), _catalog_row("00000000000000ee", **{"path": GOOD, **fields})]
    )
    dest = tmp_path / "dest"
    elsewhere = tmp_path / "elsewhere"
    if case == "symlink in DEST":  # DEST/images leads somewhere else: nothing may be written through it
        elsewhere.mkdir()
        dest.mkdir()
        (dest / "images").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(GanforgeError, match="outside") as exc:
        catalog.export(rows, lib, dest)
    assert "nothing was exported" in _one_line(exc)
    assert _tree(outside) == before  # untouched, and nothing was written anywhere:
    assert not dest.exists() or [p.name for p in dest.iterdir()] == ["images"]
    assert not elsewhere.exists() or list(elsewhere.iterdir()) == []


def test_cli_library_export(exportable, tmp_path: Path, monkeypatch, capsys) -> None:
    """`ganforge library export DEST`: a hostile catalog row -> exit 1 and one line; a clean catalog exports."""
    lib, outside, before = exportable
    monkeypatch.chdir(lib.parent)
    catalog.write(
        pd.DataFrame(
            [_catalog_row("00000000000000aa", GOOD), _catalog_row("00000000000000ee", f"{outside}/secret.png")]
        ),
        lib / "catalog.parquet",
    )
    assert cli.main(["library", "export", "dest"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: export: asset '00000000000000ee'") and err.count("\n") == 1, err
    assert not (lib.parent / "dest").exists() and _tree(outside) == before
    catalog.write(pd.DataFrame([_catalog_row("00000000000000aa", GOOD)]), lib / "catalog.parquet")
    assert cli.main(["library", "export", "dest"]) == 0
    assert (lib.parent / "dest" / GOOD).read_bytes() == b"good png"


# ------------------------------------------------------------------------------------- 4. servers bind 127.0.0.1

SERVER = re.compile(
    r"mlflow\s+(ui|server)\b|prefect\s+server\s+start|\"server\",\s*\"start\"|uvicorn|http\.server|gunicorn|"
    r"\.serve\(|--with-healthcheck"
)
LOOPBACK = re.compile(r"--host[= ]\"?127\.0\.0\.1|\"--host\",\s*\"127\.0\.0\.1\"|--bind[= ]127\.0\.0\.1")


def _project_files() -> list[Path]:
    files = [ROOT / n for n in ("README.md", "prefect.yaml", "Makefile", "dvc.yaml", "pyproject.toml")]
    for folder, pattern in (("src", "**/*.py"), ("flows", "**/*.py"), ("tests", "*.py"), ("benchmarks", "*.py")):
        files += sorted((ROOT / folder).glob(pattern))
    files += sorted(ROOT.glob("video/*.yaml"))
    return [f for f in files if f.is_file() and f.name != Path(__file__).name]


def test_every_server_binds_loopback(tmp_path: Path, monkeypatch, capsys) -> None:
    """Every command that starts a server, in the code, the docs and the tests, gives --host 127.0.0.1; nothing
    anywhere binds 0.0.0.0. (A static check: starting MLflow or Prefect takes far longer than this whole file.)"""
    starts, wrong = [], []
    for f in _project_files():
        text = f.read_text(encoding="utf-8", errors="replace")
        assert "0.0.0.0" not in text, f
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if not SERVER.search(line):
                continue
            command = " ".join(lines[i : i + 3])  # a command may go on over the next lines (Python lists)
            starts.append(f"{f.relative_to(ROOT)}:{i + 1}")
            if not LOOPBACK.search(command) and "PREFECT_WORKER_WEBSERVER_HOST=127.0.0.1" not in command:
                wrong.append(f"{f.relative_to(ROOT)}:{i + 1}: {line.strip()}")
    assert wrong == []
    assert any(s.startswith("README.md") for s in starts) and any("test_flows_server" in s for s in starts), starts
    # the command `ganforge report` prints, as the code builds it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "prepare.json").write_text('{"kept": 1}')
    assert cli.main(["report"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "mlflow ui" in x)
    argv = shlex.split(line.split("#")[0])
    assert argv[:2] == ["mlflow", "ui"] and argv[argv.index("--host") + 1] == "127.0.0.1", argv
