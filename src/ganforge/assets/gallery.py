"""A static, self-contained HTML gallery (index.html) for the asset library, opened straight from disk."""

from __future__ import annotations

import base64
import hashlib
import html
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from ganforge.paths import atomic_path

__all__ = ["write_gallery"]

DASH = "–"
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".webm", ".mov", ".ogv"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".bmp"})
VIDEO_KINDS = frozenset({"latent_walk", "class_morph", "clip"})
KIND_LABELS = {"image": "image", "latent_walk": "latent walk", "class_morph": "class morph", "clip": "clip",
               "translation": "translation"}  # fmt: skip
IMAGE_BOX = 128  # CSS px an image is scaled up towards (integer factor, pixelated)
VIDEO_BOX = 192  # videos get more room so the native controls fit

CSS = """
:root {
  --bg: #f5f6f8; --card: #fff; --ink: #1c2230; --muted: #5d6678; --line: #e2e5eb;
  --accent: #3451b2; --accent-soft: #e8edfb; --media: #eceef2;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; background: var(--bg); color: var(--ink); font-size: 14px; line-height: 1.4; }
header { background: var(--card); border-bottom: 1px solid var(--line); padding: 20px 32px 16px; }
.head { display: flex; gap: 24px; align-items: flex-start; justify-content: space-between; flex-wrap: wrap; }
h1 { margin: 0 0 4px; font-size: 22px; font-weight: 650; letter-spacing: -0.01em; }
.sub { margin: 0; color: var(--muted); }
table.summary { border-collapse: collapse; font-size: 13px; }
table.summary th, table.summary td { padding: 2px 10px; border-bottom: 1px solid var(--line); text-align: left; }
table.summary th { color: var(--muted); font-weight: 500; }
table.summary td { font-variant-numeric: tabular-nums; }
.filters { display: flex; gap: 16px; align-items: flex-end; flex-wrap: wrap; margin-top: 16px; }
.filters label {
  display: flex; flex-direction: column; gap: 4px; font-size: 12px; color: var(--muted); font-weight: 500;
}
.filters select, .filters input, .filters button {
  font: inherit; font-size: 14px; color: var(--ink); background: var(--card);
  border: 1px solid #c9ced8; border-radius: 6px; padding: 6px 8px; min-width: 150px;
}
.filters input { min-width: 110px; width: 110px; }
.filters button { min-width: 0; cursor: pointer; }
.filters button:hover { background: var(--accent-soft); }
#shown-count { margin: 0 0 0 auto; color: var(--muted); font-variant-numeric: tabular-nums; padding-bottom: 7px; }
main { padding: 24px 32px 48px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 16px; }
.card {
  display: flex; flex-direction: column; background: var(--card); border: 1px solid var(--line);
  border-radius: 10px; overflow: hidden; box-shadow: 0 1px 2px rgba(16, 24, 40, 0.05);
}
.media {
  display: flex; align-items: center; justify-content: center; min-height: 216px; padding: 12px;
  background: var(--media); border-bottom: 1px solid var(--line);
}
.media img, .media video {
  display: block; max-width: 100%; height: auto; image-rendering: pixelated;
  background: #000; border-radius: 2px;
}
.media .missing { color: var(--muted); font-size: 13px; text-align: center; }
.media figure { margin: 0; min-width: 0; flex: 1 1 0; text-align: center; }
.media figcaption { font-size: 11px; color: var(--muted); margin-top: 4px; overflow-wrap: anywhere; }
.media .arrow { padding: 0 6px; color: var(--muted); }
.body { padding: 12px 14px 14px; display: flex; flex-direction: column; gap: 8px; }
.title { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; }
.title h2 { margin: 0; font-size: 15px; font-weight: 600; overflow-wrap: anywhere; }
.badge {
  font-size: 11px; font-weight: 600; text-transform: uppercase; letter-spacing: 0.04em;
  color: var(--accent); background: var(--accent-soft); border-radius: 999px; padding: 2px 8px;
}
.scores { display: flex; gap: 6px; flex-wrap: wrap; }
.score {
  font-size: 12px; background: #f1f3f6; border-radius: 6px; padding: 2px 7px; font-variant-numeric: tabular-nums;
}
.score b { font-weight: 600; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 0; font-size: 12px; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 11.5px; }
.links { display: flex; gap: 12px; font-size: 13px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.refused { color: #a33; font-size: 12px; }
.empty { color: var(--muted); font-size: 16px; padding: 48px 0; text-align: center; }
"""

# Only reads data-* attributes and toggles `hidden`; never builds markup from data.
JS = """
(() => {
  "use strict";
  const cards = Array.from(document.querySelectorAll("article.card"));
  const byClass = document.getElementById("filter-class");
  const byKind = document.getElementById("filter-kind");
  const minRealism = document.getElementById("filter-min-realism");
  const reset = document.getElementById("filter-reset");
  const count = document.getElementById("shown-count");
  const none = document.getElementById("none-match");
  if (!byClass || !byKind || !minRealism || !count) return;
  function apply() {
    const cls = byClass.value;
    const kind = byKind.value;
    const minText = minRealism.value.trim();
    const min = minText === "" ? NaN : Number(minText);
    let shown = 0;
    for (const card of cards) {
      let show = true;
      if (cls !== "" && !(card.dataset.classes || "").split(" ").includes(cls)) show = false;
      if (kind !== "" && card.dataset.kind !== kind) show = false;
      if (Number.isFinite(min)) {
        const r = parseFloat(card.dataset.realism);
        if (!(r >= min)) show = false;
      }
      card.hidden = !show;
      if (show) shown += 1;
      else for (const v of card.querySelectorAll("video")) v.pause();
    }
    count.textContent = shown + " of " + cards.length + " assets shown";
    if (none) none.hidden = shown !== 0 || cards.length === 0;
  }
  byClass.addEventListener("change", apply);
  byKind.addEventListener("change", apply);
  minRealism.addEventListener("input", apply);
  if (reset) reset.addEventListener("click", () => {
    byClass.value = "";
    byKind.value = "";
    minRealism.value = "";
    apply();
  });
  apply();
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


# Defence in depth: only the inline script/style above may run, media only from the library (file: or same origin).
CSP = (
    "default-src 'none'; "
    f"script-src {_csp_hash(JS)}; style-src {_csp_hash(CSS)}; "
    "img-src 'self' file:; media-src 'self' file:; base-uri 'none'; form-action 'none'"
)


def _e(value: object) -> str:
    """HTML-escape for text and (quoted) attributes alike."""
    return html.escape(str(value), quote=True)


def _missing(value: Any) -> bool:
    if value is None:
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
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    if pd.isna(ts):
        return DASH
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC")


def safe_href(path: Any) -> str | None:
    """URL for a library-relative POSIX path, or None when it is absolute, escapes the library or is odd."""
    text = _str(path)
    if not text or "\\" in text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        return None
    p = PurePosixPath(text)
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        return None  # ':' in the first segment could be read as a URL scheme or a Windows drive
    return quote(p.as_posix(), safe="/")


def _class_label(number: int | None, name: str) -> str:
    if number is None or number < 0:
        return "no class"
    return f"{name} ({number})" if name else f"class {number}"


def _sort_key(row: Mapping[str, Any]) -> tuple:
    cls = _int(row.get("class"))
    realism = _float(row.get("realism"))
    return (
        _str(row.get("kind")),
        -1 if cls is None else cls,
        realism is None,
        -(realism or 0.0),
        _str(row.get("asset_id")),
        _str(row.get("path")),
    )


def _media(row: Mapping[str, Any], kind: str, alt: str) -> str:
    href = safe_href(row.get("path"))
    path = _str(row.get("path"))
    suffix = PurePosixPath(path).suffix.lower() if path else ""
    is_video = suffix in VIDEO_SUFFIXES or (suffix not in IMAGE_SUFFIXES and kind in VIDEO_KINDS)
    if href is None:
        reason = "no file" if not path else "path refused (outside the library)"
        return f'<div class="missing">{_e(reason)}</div>'
    w, h = _int(row.get("width")), _int(row.get("height"))
    size = ""
    if w and h and w > 0 and h > 0:
        box = VIDEO_BOX if is_video else IMAGE_BOX
        scale = max(1, box // max(w, h))
        size = f' width="{w * scale}" height="{h * scale}"'
    if is_video:
        poster = safe_href(row.get("poster"))
        poster_attr = f' poster="{_e(poster)}"' if poster else ""
        mime = "video/webm" if suffix == ".webm" else "video/mp4"
        return (
            f'<video controls muted loop playsinline preload="metadata"{poster_attr}{size} aria-label="{_e(alt)}">'
            f'<source src="{_e(href)}" type="{mime}"></video>'
        )
    return f'<img loading="lazy" decoding="async" src="{_e(href)}" alt="{_e(alt)}"{size}>'


def _card(row: Mapping[str, Any], class_names: Mapping[int, str]) -> str:
    kind = _str(row.get("kind"))
    asset_id = _str(row.get("asset_id"))
    cls = _int(row.get("class"))
    class_name = _str(row.get("class_name"))
    classes = _ints(row.get("classes"))
    tokens = sorted({c for c in [cls, *classes] if c is not None and c >= 0})
    realism, d_score = _float(row.get("realism")), _float(row.get("d_score"))
    feat, pix = _float(row.get("nearest_real_feature")), _float(row.get("nearest_real_pixel"))
    nearest_index = _int(row.get("nearest_real_index"))

    if cls is not None and cls >= 0:
        heading = _class_label(cls, class_name)
    elif classes:
        heading = " → ".join(_class_label(c, class_names.get(c, "")) for c in classes)
    else:
        heading = "no class"
    alt = f"{KIND_LABELS.get(kind, kind or 'asset')} {heading} {asset_id}".strip()

    model = _str(row.get("model_name")) or DASH
    version = _str(row.get("model_version"))
    model += f" {version}" if version else " · checkpoint"
    sha = _str(row.get("model_sha256"))
    w, h, frames, fps = _int(row.get("width")), _int(row.get("height")), _int(row.get("frames")), _float(row.get("fps"))
    size = f"{w}×{h}" if w and h else DASH
    if frames and frames > 1:
        size += f" · {frames} frames" + (f" @ {fps:g} fps" if fps else "")
    seeds = _ints(row.get("seeds"))
    nearest = f"feature {_fmt(feat)} · pixel {_fmt(pix)}"
    if nearest_index is not None and nearest_index >= 0:
        nearest += f" (#{nearest_index})"

    fields: list[tuple[str, str]] = [
        ("id", f"<code>{_e(asset_id or DASH)}</code>"),
        ("kind", _e(kind or DASH)),
        ("class", _e(heading if (cls is not None and cls >= 0) or classes else DASH)),
        ("model", _e(model)),
        ("model sha", f'<code title="{_e(sha)}">{_e(sha[:12] or DASH)}</code>'),
        ("run", f"<code>{_e(_str(row.get('run_id')) or DASH)}</code>"),
        ("seeds", _e(", ".join(map(str, seeds)) or DASH)),
        ("truncation", _e(_fmt(_float(row.get("truncation")), "g"))),
        ("nearest real", _e(nearest)),
        ("size", _e(size)),
        ("created", _e(_timestamp(row.get("created_at")))),
        ("phash", f"<code>{_e(_str(row.get('phash')) or DASH)}</code>"),
        ("source", _e(_str(row.get("source")) or DASH)),
        ("build", f"<code>{_e(_str(row.get('build_id')) or DASH)}</code>"),
    ]
    media = _media(row, kind, alt)
    if kind == "translation":  # the parent beside its translation, and where each came from
        parent_row = {"path": row.get("parent_path"), "width": row.get("width"), "height": row.get("height")}
        parent = _str(row.get("parent"))
        media = (
            f"<figure>{_media(parent_row, 'image', f'parent {parent}')}<figcaption>parent</figcaption></figure>"
            f'<span class="arrow" aria-hidden="true">→</span>'
            f"<figure>{media}<figcaption>{_e(_str(row.get('domain')) or DASH)}</figcaption></figure>"
        )
        domain = _e(_str(row.get("domain")) or DASH)
        fields[1:1] = [("parent", f"<code>{_e(parent or DASH)}</code>"), ("domain", domain)]
        fields = [(k, v) for k, v in fields if k not in ("seeds", "truncation", "nearest real")]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in fields)

    links = []
    href = safe_href(row.get("path"))
    if href:
        links.append(f'<a href="{_e(href)}">file</a>')
    elif _str(row.get("path")):
        links.append('<span class="refused">file path refused</span>')
    preview = safe_href(row.get("preview"))
    if preview:
        links.append(f'<a href="{_e(preview)}">preview (WebP)</a>')
    poster = safe_href(row.get("poster"))
    if poster:
        links.append(f'<a href="{_e(poster)}">poster</a>')

    data_realism = "" if realism is None else repr(realism)
    attrs = (
        f'data-kind="{_e(kind)}" data-class="{_e("" if cls is None else cls)}" '
        f'data-classes="{_e(" ".join(map(str, tokens)))}" data-realism="{_e(data_realism)}" '
        f'data-asset-id="{_e(asset_id)}"'
    )
    return (
        f'<article class="card" {attrs}>'
        f'<div class="media">{media}</div>'
        '<div class="body">'
        f'<div class="title"><span class="badge">{_e(KIND_LABELS.get(kind, kind) or DASH)}</span>'
        f"<h2>{_e(heading)}</h2></div>"
        f'<div class="scores"><span class="score">realism <b>{_e(_fmt(realism))}</b></span>'
        f'<span class="score">D <b>{_e(_fmt(d_score))}</b></span></div>'
        f"<dl>{dl}</dl>"
        f'<div class="links">{"".join(links)}</div>'
        "</div></article>"
    )


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


def render_gallery(
    catalog: pd.DataFrame | None, *, title: str = "ganforge asset library", summary: dict | None = None
) -> str:
    """The gallery page as a string (deterministic for the same catalog)."""
    rows: list[dict[str, Any]] = [] if catalog is None or catalog.empty else catalog.to_dict("records")
    rows.sort(key=_sort_key)

    class_names: dict[int, str] = {}
    class_numbers: set[int] = set()
    kinds: set[str] = set()
    for row in rows:
        cls, name = _int(row.get("class")), _str(row.get("class_name"))
        if cls is not None and cls >= 0:
            class_numbers.add(cls)
            if name and cls not in class_names:
                class_names[cls] = name
        class_numbers.update(c for c in _ints(row.get("classes")) if c >= 0)
        kinds.add(_str(row.get("kind")))

    total = len(rows)
    kind_counts = {k: sum(_str(r.get("kind")) == k for r in rows) for k in sorted(kinds)}
    subtitle = f"{total} asset{'s' if total != 1 else ''}"
    if total:
        subtitle += ": " + ", ".join(f"{n} {KIND_LABELS.get(k, k) or 'unknown'}" for k, n in kind_counts.items())
        subtitle += f" · {len(class_numbers)} class{'es' if len(class_numbers) != 1 else ''}"

    class_options = _options(
        [("", "all classes"), *((str(c), _class_label(c, class_names.get(c, ""))) for c in sorted(class_numbers))]
    )
    kind_options = _options([("", "all kinds"), *((k, KIND_LABELS.get(k, k) or DASH) for k in sorted(kinds))])
    cards = "\n".join(_card(r, class_names) for r in rows)
    if total:
        body = (
            f'<div class="grid" id="gallery">\n{cards}\n</div>'
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
<label for="filter-class">Class<select id="filter-class">{class_options}</select></label>
<label for="filter-kind">Kind<select id="filter-kind">{kind_options}</select></label>
<label for="filter-min-realism">Min. realism<input id="filter-min-realism" type="number" step="0.05" \
placeholder="any" inputmode="decimal"></label>
<button type="button" id="filter-reset">Reset</button>
<p id="shown-count" aria-live="polite">{total} of {total} assets shown</p>
</div>
</header>
<main>
{body}
</main>
<script>{JS}</script>
</body>
</html>
"""


def write_gallery(
    catalog: pd.DataFrame, library_dir: Path, *, title: str = "ganforge asset library", summary: dict | None = None
) -> Path:
    """Write library_dir/index.html (atomically: temp file + os.replace) and return its path."""
    library_dir = Path(library_dir)
    target = library_dir / "index.html"
    data = render_gallery(catalog, title=title, summary=summary).encode("utf-8")
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the page is meant to be shared like the assets
    return target
