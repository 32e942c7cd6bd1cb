"""What `prepare` does to every sample, image or clip frame: the `Skipped` reasons, and `normalise`.

Shared by the image path (`prepare`) and the clip path (`clips`), which both import it; it imports neither.
"""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ganforge.config import DataConfig
from ganforge.data.sources import display

PAD_COLOR = "white"
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA = {"RGBA", "RGBa", "LA", "La", "PA"}


class Skipped(Exception):
    """A sample that cannot be used: `category` is what the counts group by, `reason` goes in the manifest."""

    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category = category
        self.reason = reason


def short_message(exc: BaseException) -> str:
    """The first line of an exception's message (its type when empty), at most 80 characters, valid UTF-8."""
    text = display(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def sniff(head: bytes) -> str | None:
    """What the first bytes of a file that no decoder recognised look like: "HTML", "SVG", "text" or None."""
    head = head[:1024]
    low = head.lower()
    if b"<svg" in low:
        return "SVG"
    if b"<html" in low or b"<!doctype html" in low:
        return "HTML"
    text = head.decode("utf-8", "ignore")
    if head and b"\0" not in head and len(text.encode()) >= len(head) - 3:  # decodes (bar a character cut short)
        return "text" if all(c.isprintable() or c in "\t\n\r\f\v" for c in text) else None
    return None


def _flatten(img: Image.Image) -> Image.Image:
    """Any mode -> "L" or "RGB": 16-bit /257, float 0..1 (or 0..255), alpha composited on white."""
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        arr = np.asarray(img).astype(np.float64).clip(0, 65535) / 257.0
        return Image.fromarray(np.rint(arr).astype(np.uint8))
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
        return Image.fromarray(np.rint((arr * scale).clip(0, 255)).astype(np.uint8))
    transparent = mode in _ALPHA or "transparency" in img.info
    if mode in ("L", "RGB") and not transparent:
        return img
    try:
        if transparent:
            white = Image.new("RGBA", img.size, PAD_COLOR)
            return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")
        return img.convert("L" if mode == "1" else "RGB")
    except ValueError:
        raise Skipped("unsupported mode", f"unsupported mode {mode}") from None


def normalise(img: Image.Image, cfg: DataConfig) -> np.ndarray:
    """A decoded image -> uint8 [C, R, R] following `cfg` (channels, fit, resolution, resize_filter)."""
    img = _flatten(img).convert("L" if cfg.channels == 1 else "RGB")
    size = (cfg.resolution, cfg.resolution)
    method = Image.Resampling[cfg.resize_filter.upper()]
    if cfg.fit == "crop":
        img = ImageOps.fit(img, size, method=method)
    else:
        img = ImageOps.pad(img, size, method=method, color=PAD_COLOR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def unreadable(exc: OSError) -> Skipped:
    """The reason a file that could not be read (vanished, no permission...) is skipped."""
    return Skipped("unreadable", f"unreadable: {display(exc.strerror or str(exc))}")


def decode_error(exc: Exception, raw: bytes) -> Skipped:
    """Why a file's bytes could not be decoded, as the manifest says it."""
    if isinstance(exc, Image.DecompressionBombError):  # refused from the header, before any pixel is allocated
        size = re.search(r"\((\d+) pixels\).*?limit of (\d+)", str(exc))
        why = f"{size[1]} pixels, over the decompression-bomb limit of {size[2]}" if size else short_message(exc)
        return Skipped("too large", f"too large: {why}")
    if isinstance(exc, UnidentifiedImageError):
        kind = sniff(raw)
        return Skipped("not an image", f"not an image ({kind})" if kind else "not an image")
    if "truncat" in str(exc).lower():
        return Skipped("truncated", "truncated")
    return Skipped("corrupt", f"corrupt: {short_message(exc)}")


def open_image(raw: bytes, resolution: int, meta: dict[str, Any] | None = None) -> Image.Image:
    """Decode an image file's bytes fully (its first frame), EXIF orientation applied; `meta` gets its width,
    height, mode and format as soon as they are known. Skipped (with the manifest's reason) when it cannot be.

    Large JPEGs are decoded at a reduced scale (PIL's `draft`), never below twice the target resolution.
    An EXIF block that cannot be read leaves the image as stored.
    """
    meta = {} if meta is None else meta
    if not raw:
        raise Skipped("zero-byte", "zero-byte file")
    try:
        img = Image.open(io.BytesIO(raw))
        meta.update(width=img.width, height=img.height, mode=img.mode, format=img.format)
        if img.format == "JPEG":
            img.draft(img.mode, (2 * resolution, 2 * resolution))
        img.load()
    except Exception as exc:  # any decoder failure on a user's file is that file's problem, never fatal
        raise decode_error(exc, raw) from None
    with contextlib.suppress(Exception):  # broken metadata, good pixels: keep them as stored
        ImageOps.exif_transpose(img, in_place=True)
    if not (img.width and img.height):
        raise Skipped("corrupt", "corrupt: empty image")
    return img
