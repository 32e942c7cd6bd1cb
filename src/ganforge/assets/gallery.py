"""The library's gallery: a static site that opens straight from disk (index.html) and stays quick at 100k assets.

- index.html holds the page, its script and style (allowed by hash in its Content-Security-Policy) and the grid's
  index as inline JSON: per asset only what the grid filters and sorts on (id, kind, class, model version, build,
  realism, D score), about 40 bytes an asset, oldest build first (shown newest first). The grid shows one page
  of small thumbnails at a time; filters (model, version, class, kind, build, realism and D ranges) and sorts
  (newest, realism, D) run over the index in the page's script.
- thumbs/<asset_id>.webp: a small WebP of each asset (a video's poster), made once, when the gallery is written.
- gallery/<content hash>.js: every other field, CHUNK assets a file, loaded when an asset is opened: the detail panel
  with its provenance, the asset at full size beside its parent (translations) or its nearest training image, and
  the commands that regenerate or show it. A selection of assets gives an export command to copy.

Everything that comes from the catalog reaches the page as JSON data and becomes text (`textContent`) or a checked
library-relative URL (`safe_href`); nothing from data is parsed as markup. Files are written atomically, the
detail files before the page that names them (each named by the hash of its contents, so a build that appends
rewrites only the last of them), stale ones removed after.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from ganforge.paths import atomic_path

__all__ = ["render_gallery", "render_site", "safe_href", "write_gallery"]

DASH = "–"
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".webm", ".mov", ".ogv"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".bmp"})
VIDEO_KINDS = frozenset({"latent_walk", "class_morph", "clip"})
KIND_LABELS = {"image": "image", "latent_walk": "latent walk", "class_morph": "class morph", "clip": "clip",
               "translation": "translation"}  # fmt: skip
PAGE = 120  # thumbnails per page
CHUNK = 250  # assets per detail file
THUMB = 96  # px: the longest side of a thumbnail (smaller images keep their size, shown pixelated)
THUMB_DIR, DETAIL_DIR = "thumbs", "gallery"
HEX_ID = re.compile(r"^[0-9a-f]{16}$")

CSS = """
:root {
  --bg: #f5f6f8; --card: #fff; --ink: #1c2230; --muted: #5d6678; --line: #e2e5eb;
  --accent: #3451b2; --accent-soft: #e8edfb; --media: #eceef2;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; background: var(--bg); color: var(--ink); font-size: 14px; line-height: 1.4; }
header { background: var(--card); border-bottom: 1px solid var(--line); padding: 16px 24px 12px; }
.head { display: flex; gap: 24px; align-items: flex-start; justify-content: space-between; flex-wrap: wrap; }
h1 { margin: 0 0 4px; font-size: 22px; font-weight: 650; letter-spacing: -0.01em; }
.sub { margin: 0; color: var(--muted); }
table.summary { border-collapse: collapse; font-size: 13px; }
table.summary th, table.summary td { padding: 2px 10px; border-bottom: 1px solid var(--line); text-align: left; }
table.summary th { color: var(--muted); font-weight: 500; }
.filters { display: flex; gap: 10px; align-items: flex-end; flex-wrap: wrap; margin-top: 12px; }
.filters label { display: flex; flex-direction: column; gap: 3px; font-size: 12px; color: var(--muted); }
select, input, button {
  font: inherit; font-size: 13px; color: var(--ink); background: var(--card);
  border: 1px solid #c9ced8; border-radius: 6px; padding: 5px 7px;
}
.filters select { max-width: 190px; }
.filters input { width: 84px; }
button { cursor: pointer; }
button:hover { background: var(--accent-soft); }
button:disabled { cursor: default; opacity: 0.5; background: var(--card); }
.bar { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; margin-top: 10px; }
#shown-count { margin: 0; color: var(--muted); font-variant-numeric: tabular-nums; min-width: 190px; }
.pager, .selection { display: flex; gap: 6px; align-items: center; }
#page-info, #selected-count { color: var(--muted); font-variant-numeric: tabular-nums; padding: 0 4px; }
#export-command { width: 100%; margin-top: 8px; font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
main { padding: 16px 24px 48px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(112px, 1fr)); gap: 8px; }
.cell {
  position: relative; background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 6px; display: flex; flex-direction: column; gap: 4px;
}
.cell.selected { border-color: var(--accent); box-shadow: 0 0 0 2px var(--accent-soft); }
.cell.open { outline: 2px solid var(--accent); }
.thumb {
  display: flex; align-items: center; justify-content: center; width: 100%; height: 100px; padding: 0;
  border: 0; background: var(--media); border-radius: 4px;
}
.thumb img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated; }
.thumb .missing { color: var(--muted); font-size: 11px; padding: 4px; }
.cell .pick { position: absolute; top: 8px; left: 8px; margin: 0; width: 16px; height: 16px; }
.cell .kind {
  position: absolute; bottom: 28px; right: 8px; font-size: 10px; font-weight: 600; text-transform: uppercase;
  color: var(--accent); background: var(--accent-soft); border-radius: 999px; padding: 1px 6px;
}
.meta { display: flex; justify-content: space-between; gap: 4px; font-size: 11px; color: var(--muted); }
.meta .label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.meta .score { font-variant-numeric: tabular-nums; color: var(--ink); }
#detail {
  position: fixed; top: 0; right: 0; bottom: 0; width: min(460px, 100vw); overflow-y: auto; background: var(--card);
  border-left: 1px solid var(--line); box-shadow: -4px 0 16px rgba(16, 24, 40, 0.12); padding: 16px 18px 24px;
}
#detail h2 { margin: 0 0 8px; font-size: 16px; overflow-wrap: anywhere; }
#detail .close { float: right; }
.pair { display: flex; gap: 10px; align-items: flex-start; margin: 8px 0 12px; }
.pair figure { margin: 0; flex: 1 1 0; min-width: 0; text-align: center; background: var(--media); padding: 8px;
  border-radius: 6px; }
.pair img, .pair video { max-width: 100%; width: 192px; height: auto; image-rendering: pixelated; background: #000; }
.pair figcaption { font-size: 11px; color: var(--muted); margin-top: 4px; overflow-wrap: anywhere; }
.badge {
  font-size: 11px; font-weight: 600; text-transform: uppercase; letter-spacing: 0.04em;
  color: var(--accent); background: var(--accent-soft); border-radius: 999px; padding: 2px 8px;
}
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 8px 0; font-size: 12px; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
pre.command {
  white-space: pre-wrap; overflow-wrap: anywhere; background: #f1f3f6; padding: 6px 8px; border-radius: 6px;
  font: 11.5px ui-monospace, SFMono-Regular, Menlo, monospace; margin: 4px 0;
}
.links { display: flex; gap: 12px; font-size: 13px; margin-top: 6px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.refused { color: #a33; font-size: 12px; }
.empty { color: var(--muted); font-size: 16px; padding: 48px 0; text-align: center; }
@media (min-width: 1000px) { body.detail-open header, body.detail-open main { margin-right: min(460px, 100vw); } }
"""

# Reads the inline JSON index and the detail files; builds every element with createElement and textContent, never
# markup from data; URLs are the checked library-relative ones the page was written with.
JS = """
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const dataEl = $("gallery-data");
  if (!dataEl) return;
  const D = JSON.parse(dataEl.textContent);
  const N = D.n;
  const grid = $("gallery");
  const count = $("shown-count");
  if (!grid || !count) return;
  const ids = D.ids;
  const idOf = (i) => (typeof ids === "string" ? ids.substr(16 * i, 16) : ids[i]);
  const noThumb = new Set(D.noThumb);
  const modelName = D.models.map((m) => m[0]);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const classLabel = (c) => (Array.isArray(c) ? c.map((x) => D.classes[x]).join(" → ")
                                              : (c >= 0 ? D.classes[c] : "no class"));
  const fmt = (v) => (v === null ? "–" : (v / 1000).toFixed(3));
  const controls = {
    model: $("filter-model"), version: $("filter-version"), cls: $("filter-class"), kind: $("filter-kind"),
    build: $("filter-build"), rmin: $("filter-min-realism"), rmax: $("filter-max-realism"),
    dmin: $("filter-min-d"), dmax: $("filter-max-d"), sort: $("sort"),
  };
  const selected = new Set();
  let shown = [];
  let page = 0;
  let openIndex = -1;

  const bound = (input) => {
    const t = input.value.trim();
    if (t === "") return null;
    const v = Number(t);
    return Number.isFinite(v) ? Math.round(v * 1000) : null;
  };
  const inRange = (v, lo, hi) => (lo === null || (v !== null && v >= lo)) && (hi === null || (v !== null && v <= hi));

  function apply(keepPage) {
    const model = controls.model.value, version = controls.version.value, cls = controls.cls.value;
    const kind = controls.kind.value, build = controls.build.value;
    const rmin = bound(controls.rmin), rmax = bound(controls.rmax), dmin = bound(controls.dmin);
    const dmax = bound(controls.dmax);
    const c = cls === "" ? null : Number(cls), k = kind === "" ? null : Number(kind);
    const v = version === "" ? null : Number(version), b = build === "" ? null : Number(build);
    const out = [];
    for (let i = 0; i < N; i++) {
      if (k !== null && D.k[i] !== k) continue;
      if (v !== null && D.m[i] !== v) continue;
      if (model !== "" && modelName[D.m[i]] !== model) continue;
      if (b !== null && D.b[i] !== b) continue;
      if (c !== null) {
        const ci = D.c[i];
        if (Array.isArray(ci) ? !ci.includes(c) : ci !== c) continue;
      }
      if (!inRange(D.r[i], rmin, rmax) || !inRange(D.d[i], dmin, dmax)) continue;
      out.push(i);
    }
    const by = controls.sort.value === "realism" ? D.r : controls.sort.value === "d" ? D.d : null;
    if (by) out.sort((a, z) => (by[z] === null) - (by[a] === null) || (by[z] ?? 0) - (by[a] ?? 0) || a - z);
    else out.sort((a, z) => D.b[z] - D.b[a] || a - z);  // newest build first (the data holds the oldest first)
    shown = out;
    if (!keepPage) page = 0;
    render();
  }

  function cell(i) {
    const id = idOf(i);
    const box = el("div", "cell");
    box.dataset.i = String(i);
    box.dataset.assetId = id;
    box.dataset.kind = D.kinds[D.k[i]][0];
    box.dataset.classes = Array.isArray(D.c[i]) ? D.c[i].join(" ") : (D.c[i] >= 0 ? String(D.c[i]) : "");
    box.dataset.realism = D.r[i] === null ? "" : String(D.r[i] / 1000);
    const label = D.kinds[D.k[i]][1] + " · " + classLabel(D.c[i]);
    const button = el("button", "thumb");
    button.type = "button";
    button.title = label + " · " + id;
    if (noThumb.has(i)) {
      button.append(el("span", "missing", "no preview"));
    } else {
      const img = el("img");
      img.loading = "lazy";
      img.decoding = "async";
      img.alt = label;
      img.width = 96;
      img.height = 96;
      img.src = D.thumbs + "/" + id + ".webp";
      button.append(img);
    }
    button.addEventListener("click", () => openDetail(i));
    const pick = el("input", "pick");
    pick.type = "checkbox";
    pick.checked = selected.has(id);
    pick.setAttribute("aria-label", "select " + id);
    pick.addEventListener("change", () => {
      toggle(id, pick.checked);
      box.classList.toggle("selected", pick.checked);
    });
    if (pick.checked) box.classList.add("selected");
    if (i === openIndex) box.classList.add("open");
    const meta = el("div", "meta");
    meta.append(el("span", "label", classLabel(D.c[i])), el("span", "score", fmt(D.r[i])));
    box.append(button, pick, meta);
    if (D.kinds[D.k[i]][0] !== "image") box.append(el("span", "kind", D.kinds[D.k[i]][1]));
    return box;
  }

  function render() {
    const pages = Math.max(1, Math.ceil(shown.length / D.page));
    page = Math.min(page, pages - 1);
    const frag = document.createDocumentFragment();
    for (const i of shown.slice(page * D.page, (page + 1) * D.page)) frag.append(cell(i));
    grid.replaceChildren(frag);
    count.textContent = shown.length + " of " + N + " assets shown";
    $("page-info").textContent = "page " + (page + 1) + " of " + pages;
    $("page-prev").disabled = page === 0;
    $("page-next").disabled = page >= pages - 1;
    const none = $("none-match");
    if (none) none.hidden = shown.length !== 0 || N === 0;
  }

  function toggle(id, on) {
    if (on) selected.add(id); else selected.delete(id);
    $("selected-count").textContent = selected.size + " selected";
    const cmd = $("export-command");
    cmd.value = selected.size ? "ganforge library export exported --format " + $("export-format").value +
      " --ids " + Array.from(selected).sort().join(",") : "";
    cmd.hidden = selected.size === 0;
  }

  // the detail panel: the detail file of the asset's chunk is loaded once, then kept
  const chunks = new Map();
  const waiting = new Map();
  window.ganforgeDetail = (n, rows) => {
    chunks.set(n, rows);
    for (const f of waiting.get(n) || []) f(rows);
    waiting.delete(n);
  };
  function withChunk(n, f) {
    if (chunks.has(n)) return f(chunks.get(n));
    if (!waiting.has(n)) {
      waiting.set(n, []);
      const s = document.createElement("script");
      s.src = D.chunks[n];
      s.addEventListener("error", () => {  // a page without its detail files (copied alone, or a build midway)
        waiting.delete(n);
        const panel = $("detail");
        panel.replaceChildren(el("p", "refused", "The detail file " + s.getAttribute("src") + " is missing: " +
          "run `ganforge library build` to write the gallery again."));
        panel.hidden = false;
      });
      document.head.append(s);
    }
    waiting.get(n).push(f);
  }
  function media(src, video, row, label) {
    if (!src) return el("span", "refused", row && row.refused ? "path refused (outside the library)" : "no file");
    if (video) {
      const v = el("video");
      v.controls = true; v.muted = true; v.loop = true; v.playsInline = true; v.preload = "metadata";
      if (row.poster) v.poster = row.poster;
      v.setAttribute("aria-label", label);
      const s = el("source");
      s.src = src;
      s.type = row.mime;
      v.append(s);
      return v;
    }
    const img = el("img");
    img.src = src;
    img.alt = label;
    return img;
  }
  function openDetail(i) {
    openIndex = i;
    for (const c of grid.querySelectorAll(".cell.open")) c.classList.remove("open");
    const current = grid.querySelector('.cell[data-i="' + i + '"]');
    if (current) current.classList.add("open");
    withChunk(Math.floor(i / D.chunk), (rows) => { if (openIndex === i) showDetail(rows[i % D.chunk]); });
  }
  function showDetail(row) {
    const panel = $("detail");
    const close = el("button", "close", "close ✕");
    close.type = "button";
    close.addEventListener("click", () => {
      panel.hidden = true;
      document.body.classList.remove("detail-open");
      openIndex = -1;
      render();
    });
    const head = el("div", "title");
    head.append(el("span", "badge", row.kind), el("h2", null, row.heading));
    const pair = el("div", "pair");
    const main = el("figure");
    main.append(media(row.src, row.video, row, row.kind + " " + row.heading + " " + row.id),
                el("figcaption", null, "this asset"));
    if (row.beside) {
      const other = el("figure");
      other.append(media(row.beside.src, false, null, row.beside.label), el("figcaption", null, row.beside.label));
      pair.append(other);
    }
    pair.prepend(main);
    const dl = el("dl");
    for (const [k, v] of row.fields) dl.append(el("dt", null, k), el("dd", null, v));
    const links = el("div", "links");
    for (const [label, href] of [["file", row.src], ["preview (WebP)", row.preview], ["poster", row.poster]]) {
      if (!href) continue;
      const a = el("a", null, label);
      a.href = href;
      links.append(a);
    }
    const commands = el("div", "commands");
    for (const c of row.commands) commands.append(el("pre", "command", c));
    panel.replaceChildren(close, head, pair, dl, el("h3", null, "regenerate"), commands, links);
    panel.hidden = false;
    document.body.classList.add("detail-open");
  }

  for (const key of ["model", "version", "cls", "kind", "build", "sort"]) {
    controls[key].addEventListener("change", () => apply(false));
  }
  for (const key of ["rmin", "rmax", "dmin", "dmax"]) controls[key].addEventListener("input", () => apply(false));
  $("filter-reset").addEventListener("click", () => {
    for (const key of ["model", "version", "cls", "kind", "build"]) controls[key].value = "";
    for (const key of ["rmin", "rmax", "dmin", "dmax"]) controls[key].value = "";
    controls.sort.value = "newest";
    apply(false);
  });
  $("page-prev").addEventListener("click", () => { page -= 1; render(); });
  $("page-next").addEventListener("click", () => { page += 1; render(); });
  $("select-page").addEventListener("click", () => {
    for (const i of shown.slice(page * D.page, (page + 1) * D.page)) toggle(idOf(i), true);
    render();
  });
  $("select-clear").addEventListener("click", () => {
    for (const id of Array.from(selected)) toggle(id, false);
    render();
  });
  $("export-format").addEventListener("change", () => toggle("", false));
  $("copy-export").addEventListener("click", () => {
    const cmd = $("export-command");
    if (!cmd.value) return;
    cmd.hidden = false;
    cmd.select();
    if (navigator.clipboard) navigator.clipboard.writeText(cmd.value).catch(() => document.execCommand("copy"));
    else document.execCommand("copy");
  });
  apply(false);
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


# Defence in depth: only the inline script/style above and the detail files beside the page may run, media only
# from the library (file: or same origin).
CSP = (
    "default-src 'none'; "
    f"script-src {_csp_hash(JS)} 'self'; style-src {_csp_hash(CSS)}; "
    "img-src 'self' file:; media-src 'self' file:; base-uri 'none'; form-action 'none'"
)


def _e(value: object) -> str:
    """HTML-escape for text and (quoted) attributes alike."""
    return html.escape(str(value), quote=True)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):  # the common cases first: this runs for every field of every asset
        return False
    if isinstance(value, float):
        return value != value
    if isinstance(value, int):
        return False
    if value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (list, tuple, dict, set, np.ndarray)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _str(value: Any) -> str:
    return "" if _missing(value) else str(value)


def _float(value: Any) -> float | None:
    if _missing(value):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(value: Any) -> int | None:
    f = _float(value)
    return None if f is None else int(f)


def _ints(value: Any) -> list[int]:
    """A list of ints from a list, tuple, numpy array or scalar; anything unusable is dropped."""
    if _missing(value):
        return []
    items = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
    return [i for i in (_int(v) for v in np.asarray(items, dtype=object).ravel()) if i is not None]


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return DASH if value is None else format(value, spec)


def _timestamp(value: Any) -> str:
    if _missing(value):
        return DASH
    if isinstance(value, pd.Timestamp) and value.tzinfo is not None:  # what a catalog holds (UTC): the fast way
        return value.strftime("%Y-%m-%d %H:%M:%S UTC") if str(value.tzinfo) == "UTC" else _timestamp(str(value))
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    if pd.isna(ts):
        return DASH
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC")


CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_href(path: Any) -> str | None:
    """URL for a library-relative POSIX path, or None when it is absolute, escapes the library or is odd."""
    text = _str(path)
    if not text or "\\" in text or text.startswith("/") or CONTROL.search(text):
        return None
    parts = [p for p in text.split("/") if p not in ("", ".")]  # as pathlib reads it
    if not parts or ".." in parts or ":" in parts[0]:
        return None  # ':' in the first segment could be read as a URL scheme or a Windows drive
    return quote("/".join(parts), safe="/")


def _class_label(number: int | None, name: str) -> str:
    if number is None or number < 0:
        return "no class"
    return f"{name} ({number})" if name else f"class {number}"


def _summary_value(value: Any) -> str:
    if isinstance(value, float):
        return DASH if not math.isfinite(value) else f"{value:.4g}"
    return DASH if _missing(value) else str(value)


def _summary_table(summary: Mapping[Any, Any] | None) -> str:
    if not summary:
        return ""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_summary_value(v))}</td></tr>" for k, v in summary.items())
    return f'<table class="summary" aria-label="build summary">{rows}</table>'


def _options(pairs: Iterable[tuple[str, str]]) -> str:
    return "".join(f'<option value="{_e(v)}">{_e(label)}</option>' for v, label in pairs)


def _order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The data's order: oldest build first (a build's time: its last asset's), within a build by kind, class,
    realism (best first), id and path. A new build appends, so the detail files of the builds before keep their
    contents and names and are not written again; the page shows the newest build first."""
    built: dict[str, float] = {}
    for row in rows:
        b = _str(row.get("build_id"))
        built[b] = max(built.get(b, -math.inf), _created(row.get("created_at")))

    def key(row: Mapping[str, Any]) -> tuple:
        b = _str(row.get("build_id"))
        cls = _int(row.get("class"))
        realism = _float(row.get("realism"))
        return (built[b], b, _str(row.get("kind")), -1 if cls is None else cls, realism is None,
                -(realism or 0.0), _str(row.get("asset_id")), _str(row.get("path")))  # fmt: skip

    return sorted(rows, key=key)


def _created(value: Any) -> float:
    if _missing(value):
        return -math.inf
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return -math.inf
    if pd.isna(ts):
        return -math.inf
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts).timestamp()


def _milli(value: float | None) -> int | None:
    return None if value is None else round(value * 1000)


def _suffix(path: str) -> str:
    return os.path.splitext(path.rsplit("/", 1)[-1])[1].lower()


def _is_video(row: Mapping[str, Any], kind: str) -> bool:
    suffix = _suffix(_str(row.get("path")))
    return suffix in VIDEO_SUFFIXES or (suffix not in IMAGE_SUFFIXES and kind in VIDEO_KINDS)


def thumb_source(row: Mapping[str, Any]) -> str | None:
    """The library file a thumbnail is made from (an image, or a video's poster), or None."""
    kind = _str(row.get("kind"))
    if not HEX_ID.match(_str(row.get("asset_id"))):
        return None
    rel = row.get("poster") if _is_video(row, kind) else row.get("path")
    return _str(rel) if safe_href(rel) else None


def _regenerate(row: Mapping[str, Any], cls: int | None, seeds: list[int]) -> list[str]:
    """The commands a user copies from the detail panel."""
    kind, asset_id = _str(row.get("kind")), _str(row.get("asset_id"))
    out = [f"ganforge library show {asset_id}"] if asset_id else []
    if kind not in ("image", "clip") or not seeds:
        return out
    name, version, source = _str(row.get("model_name")), _str(row.get("model_version")), _str(row.get("source"))
    if version and name:
        model = f"--name {_shell(name)} --model {_shell(version)}"
    elif source.startswith("checkpoint:"):
        model = f"--model {_shell(source.removeprefix('checkpoint:'))}"
    else:
        return out
    trunc = _float(row.get("truncation"))
    cls_arg = f" --class {cls}" if cls is not None and cls >= 0 else ""
    psi = f" --truncation {trunc:g}" if trunc is not None else ""
    seed_arg = ",".join(map(str, seeds))
    out.append(f"ganforge generate {model} --seeds {seed_arg}{cls_arg}{psi} --out regenerated")
    return out


def _shell(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9._/:@+-]+", text) else "'" + text.replace("'", "'\"'\"'") + "'"


def _heading(row: Mapping[str, Any], class_names: Mapping[int, str]) -> str:
    cls, classes = _int(row.get("class")), _ints(row.get("classes"))
    if cls is not None and cls >= 0:
        return _class_label(cls, _str(row.get("class_name")))
    if classes:
        return " → ".join(_class_label(c, class_names.get(c, "")) for c in classes)
    return "no class"


def _detail(row: Mapping[str, Any], class_names: Mapping[int, str]) -> dict[str, Any]:
    """Everything the detail panel shows of one asset: text, and checked library-relative URLs."""
    kind = _str(row.get("kind"))
    asset_id = _str(row.get("asset_id"))
    cls = _int(row.get("class"))
    heading = _heading(row, class_names)
    realism, d_score = _float(row.get("realism")), _float(row.get("d_score"))
    feat, pix = _float(row.get("nearest_real_feature")), _float(row.get("nearest_real_pixel"))
    nearest_index = _int(row.get("nearest_real_index"))
    model = _str(row.get("model_name")) or DASH
    version = _str(row.get("model_version"))
    model += f" {version}" if version else " · checkpoint"
    w, h, frames, fps = _int(row.get("width")), _int(row.get("height")), _int(row.get("frames")), _float(row.get("fps"))
    size = f"{w}×{h}" if w and h else DASH
    if frames and frames > 1:
        size += f" · {frames} frames" + (f" @ {fps:g} fps" if fps else "")
    seeds = _ints(row.get("seeds"))
    nearest = f"feature {_fmt(feat)} · pixel {_fmt(pix)}"
    if nearest_index is not None and nearest_index >= 0:
        nearest += f" (#{nearest_index})"
    fields: list[list[str]] = [
        ["id", asset_id or DASH],
        ["kind", kind or DASH],
        ["class", heading],
        ["model", model],
        ["model sha", _str(row.get("model_sha256")) or DASH],
        ["run", _str(row.get("run_id")) or DASH],
        ["seeds", ", ".join(map(str, seeds)) or DASH],
        ["truncation", _fmt(_float(row.get("truncation")), "g")],
        ["realism", _fmt(realism)],
        ["D score", _fmt(d_score)],
        ["nearest real", nearest],
        ["size", size],
        ["created", _timestamp(row.get("created_at"))],
        ["phash", _str(row.get("phash")) or DASH],
        ["source", _str(row.get("source")) or DASH],
        ["build", _str(row.get("build_id")) or DASH],
    ]
    beside = None
    if kind == "translation":
        fields[1:1] = [["parent", _str(row.get("parent")) or DASH], ["domain", _str(row.get("domain")) or DASH]]
        fields = [f for f in fields if f[0] not in ("seeds", "truncation", "nearest real")]
        beside = {"label": "parent", "src": safe_href(row.get("parent_path"))}
    elif safe_href(row.get("nearest_real_path")):
        beside = {"label": f"nearest training image (#{nearest_index})", "src": safe_href(row.get("nearest_real_path"))}
    path = _str(row.get("path"))
    video = _is_video(row, kind)
    suffix = _suffix(path)
    src = safe_href(path)
    return {
        "id": asset_id,
        "kind": KIND_LABELS.get(kind, kind) or DASH,
        "heading": heading,
        "src": src,
        "refused": bool(path) and src is None,
        "video": video,
        "mime": "video/webm" if suffix == ".webm" else "video/mp4",
        "poster": safe_href(row.get("poster")),
        "preview": safe_href(row.get("preview")),
        "w": w or 0,
        "h": h or 0,
        "beside": beside,
        "fields": fields,
        "commands": _regenerate(row, cls, seeds),
    }


def _json(value: Any) -> str:
    """JSON that is also safe inside a <script> element and as a JavaScript literal (ASCII, no '<', '>', '&')."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class Site:
    """The gallery's files: index.html and the detail files (name -> text)."""

    def __init__(self, html_text: str, details: dict[str, str], thumbs: dict[str, str]) -> None:
        self.html = html_text
        self.details = details
        self.thumbs = thumbs  # asset id -> the library file its thumbnail is made from


def render_site(
    catalog: pd.DataFrame | None,
    *,
    title: str = "ganforge asset library",
    summary: dict | None = None,
    missing_thumbs: frozenset[str] = frozenset(),
) -> Site:
    """The gallery's page and detail files for a catalog (deterministic: the same catalog gives the same bytes)."""
    rows: list[dict[str, Any]] = [] if catalog is None or catalog.empty else catalog.to_dict("records")
    rows = _order(rows)

    class_names: dict[int, str] = {}
    for row in rows:
        cls, name = _int(row.get("class")), _str(row.get("class_name"))
        if cls is not None and cls >= 0 and name and cls not in class_names:
            class_names[cls] = name
    kinds: list[str] = sorted({_str(r.get("kind")) for r in rows})
    models: dict[tuple[str, str], int] = {}
    builds: dict[str, int] = {}
    class_numbers: set[int] = set()
    ids, k, c, m, b, r, d, no_thumb = [], [], [], [], [], [], [], []
    thumbs: dict[str, str] = {}
    for i, row in enumerate(rows):
        asset_id = _str(row.get("asset_id"))
        ids.append(asset_id)
        k.append(kinds.index(_str(row.get("kind"))))
        cls, classes = _int(row.get("class")), [x for x in _ints(row.get("classes")) if x >= 0]
        tokens = sorted({x for x in [cls, *classes] if x is not None and x >= 0})
        class_numbers.update(tokens)
        c.append(tokens[0] if len(tokens) == 1 else tokens if tokens else -1)
        model = (_str(row.get("model_name")), _str(row.get("model_version")))
        m.append(models.setdefault(model, len(models)))
        b.append(builds.setdefault(_str(row.get("build_id")), len(builds)))
        r.append(_milli(_float(row.get("realism"))))
        d.append(_milli(_float(row.get("d_score"))))
        source = thumb_source(row)
        if source and asset_id not in missing_thumbs:
            thumbs[asset_id] = source
        else:
            no_thumb.append(i)
    details = [_detail(row, class_names) for row in rows]
    texts = [
        f"window.ganforgeDetail({n},{_json(details[s : s + CHUNK])});\n"
        for n, s in enumerate(range(0, len(details), CHUNK))
    ]  # each named by its content: a file is rewritten only when what it holds changes
    names = [f"{DETAIL_DIR}/{hashlib.sha256(t.encode()).hexdigest()[:16]}.js" for t in texts]
    files = dict(zip(names, texts, strict=True))
    build_names = sorted(builds, key=builds.get)
    index = {
        "n": len(rows),
        "page": PAGE,
        "chunk": CHUNK,
        "chunks": names,
        "thumbs": THUMB_DIR,
        "kinds": [[kind, KIND_LABELS.get(kind, kind) or DASH] for kind in kinds],
        "classes": {str(x): _class_label(x, class_names.get(x, "")) for x in sorted(class_numbers)},
        "models": [[name, version] for name, version in sorted(models, key=models.get)],
        "builds": build_names,
        "ids": "".join(ids) if all(HEX_ID.match(x) for x in ids) else ids,
        "k": k, "c": c, "m": m, "b": b, "r": r, "d": d,
        "noThumb": no_thumb,
    }  # fmt: skip
    html_text = _page(title, summary, index, rows, class_numbers, class_names, kinds, models, build_names)
    return Site(html_text, files, thumbs)


def render_gallery(
    catalog: pd.DataFrame | None, *, title: str = "ganforge asset library", summary: dict | None = None
) -> str:
    """The gallery page as a string (deterministic for the same catalog)."""
    return render_site(catalog, title=title, summary=summary).html


def _page(
    title: str,
    summary: Mapping[Any, Any] | None,
    index: dict[str, Any],
    rows: list[dict[str, Any]],
    class_numbers: set[int],
    class_names: Mapping[int, str],
    kinds: list[str],
    models: Mapping[tuple[str, str], int],
    builds: list[str],
) -> str:
    total = len(rows)
    kind_counts = {kind: index["k"].count(i) for i, kind in enumerate(kinds)}
    subtitle = f"{total} asset{'s' if total != 1 else ''}"
    if total:
        subtitle += ": " + ", ".join(f"{n} {KIND_LABELS.get(k, k) or 'unknown'}" for k, n in kind_counts.items())
        subtitle += f" · {len(class_numbers)} class{'es' if len(class_numbers) != 1 else ''}"
    class_options = _options(
        [("", "all classes"), *((str(c), _class_label(c, class_names.get(c, ""))) for c in sorted(class_numbers))]
    )
    kind_options = _options(
        [("", "all kinds"), *((str(i), KIND_LABELS.get(k, k) or DASH) for i, k in enumerate(kinds))]
    )
    names = sorted({name for name, _ in models})
    model_options = _options([("", "all models"), *((n, n or "checkpoint") for n in names)])
    version_options = _options(
        [("", "all versions"), *((str(i), f"{n or 'checkpoint'} {v or DASH}") for (n, v), i in models.items())]
    )
    build_options = _options([("", "all builds"), *((str(i), b or DASH) for i, b in reversed(list(enumerate(builds))))])
    if total:
        body = (
            '<div class="grid" id="gallery" aria-label="assets"></div>'
            '<p class="empty" id="none-match" hidden>No assets match these filters.</p>'
        )
    else:
        body = '<p class="empty" id="empty-library">The library is empty: no assets have been generated yet.</p>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">
<meta name="referrer" content="no-referrer">
<title>{_e(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<div class="head">
<div><h1>{_e(title)}</h1><p class="sub">{_e(subtitle)}</p></div>
{_summary_table(summary)}
</div>
<div class="filters" role="search">
<label for="filter-model">Model<select id="filter-model">{model_options}</select></label>
<label for="filter-version">Version<select id="filter-version">{version_options}</select></label>
<label for="filter-class">Class<select id="filter-class">{class_options}</select></label>
<label for="filter-kind">Kind<select id="filter-kind">{kind_options}</select></label>
<label for="filter-build">Build<select id="filter-build">{build_options}</select></label>
<label for="filter-min-realism">Realism ≥<input id="filter-min-realism" type="number" step="0.05" placeholder="any" \
inputmode="decimal"></label>
<label for="filter-max-realism">Realism ≤<input id="filter-max-realism" type="number" step="0.05" placeholder="any" \
inputmode="decimal"></label>
<label for="filter-min-d">D ≥<input id="filter-min-d" type="number" step="0.05" placeholder="any" inputmode="decimal">\
</label>
<label for="filter-max-d">D ≤<input id="filter-max-d" type="number" step="0.05" placeholder="any" inputmode="decimal">\
</label>
<label for="sort">Sort<select id="sort"><option value="newest">newest</option><option value="realism">realism</option>\
<option value="d">D score</option></select></label>
<button type="button" id="filter-reset">Reset</button>
</div>
<div class="bar">
<p id="shown-count" aria-live="polite">{total} of {total} assets shown</p>
<nav class="pager" aria-label="pages"><button type="button" id="page-prev">‹ previous</button>\
<span id="page-info"></span><button type="button" id="page-next">next ›</button></nav>
<div class="selection"><span id="selected-count">0 selected</span>\
<button type="button" id="select-page">select page</button><button type="button" id="select-clear">clear</button>\
<select id="export-format" aria-label="export format"><option value="imagefolder">imagefolder</option>\
<option value="hf">hf</option><option value="webdataset">webdataset</option><option value="copy">copy</option></select>\
<button type="button" id="copy-export">copy export command</button></div>
</div>
<textarea id="export-command" readonly rows="2" hidden aria-label="export command"></textarea>
</header>
<main>
{body}
</main>
<aside id="detail" hidden aria-label="asset detail"></aside>
<script type="application/json" id="gallery-data">{_json(index)}</script>
<script>{JS}</script>
</body>
</html>
"""


def _write_thumb(src: Path, out: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(src) as im:
            im.seek(0)
            img = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
    if max(img.size) > THUMB:
        img.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
    small = max(img.size) <= 64
    with atomic_path(out, sweep=False) as tmp:  # write_gallery swept thumbs/ before
        img.save(tmp, format="WEBP", lossless=small, quality=80, method=4)
    os.chmod(out, 0o644)
    return True


def write_gallery(
    catalog: pd.DataFrame, library_dir: Path, *, title: str = "ganforge asset library", summary: dict | None = None
) -> Path:
    """Write the gallery into library_dir: thumbnails that are missing, the detail files, then index.html (each
    atomically); remove thumbnails and detail files nothing names any more. Returns index.html's path."""
    library_dir = Path(library_dir)
    site = render_site(catalog, title=title, summary=summary)
    thumbs = library_dir / THUMB_DIR
    for folder in (thumbs, library_dir / DETAIL_DIR):  # what a killed writer left (its writes do not sweep)
        for stale in folder.glob(".*.tmp") if folder.is_dir() else []:
            stale.unlink(missing_ok=True)
    failed = set()
    for asset_id, rel in site.thumbs.items():
        out = thumbs / f"{asset_id}.webp"
        if out.exists():
            continue
        src = (library_dir / rel).resolve()
        if library_dir.resolve() not in src.parents or not src.is_file():
            failed.add(asset_id)
            continue
        out.parent.mkdir(exist_ok=True)
        if not _write_thumb(src, out):
            failed.add(asset_id)
    if failed:
        site = render_site(catalog, title=title, summary=summary, missing_thumbs=frozenset(failed))
    for rel, text in site.details.items():
        target = library_dir / rel
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            with atomic_path(target) as tmp:
                tmp.write_text(text, encoding="utf-8")
                os.chmod(tmp, 0o644)
    target = library_dir / "index.html"
    with atomic_path(target) as tmp:
        tmp.write_bytes(site.html.encode("utf-8"))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the page is meant to be shared like the assets
    for stale in (library_dir / DETAIL_DIR).glob("*.js") if (library_dir / DETAIL_DIR).is_dir() else []:
        if f"{DETAIL_DIR}/{stale.name}" not in site.details:
            stale.unlink()
    named = {f"{a}.webp" for a in site.thumbs}
    for stale in thumbs.glob("*.webp") if thumbs.is_dir() else []:
        if stale.name not in named:
            stale.unlink()
    return target
