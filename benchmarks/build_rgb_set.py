"""Build a real RGB class-folder development set (20 classes, ~3.3k images, uneven) from colour emoji artwork.

Source (openly licensed, from Debian's package archive, nothing else downloaded):

- the glyphs: `fonts-noto-color-emoji` (Google's Noto Color Emoji, a colour bitmap font). Debian's copyright
  file: the font files (`fonts/*`) are under the SIL Open Font License 1.1, the rest of upstream's repository
  under the Apache License 2.0; Copyright 2013-2017 Google Inc., Arjen Nienhuis. The OFL allows the font to be
  used, and what is rendered with it to be used, freely; the font itself is not redistributed here.
- the classes: `unicode-data` (the Unicode Character Database, Unicode License v3), whose `emoji-test.txt`
  puts every emoji in a group and subgroup (face-smiling, animal-bird, food-fruit, country-flag, ...).

Each class below is one or more Unicode emoji subgroups (a semantic group: happy faces, mammals, flags,
ground vehicles, ...), holding every fully qualified emoji of them that the font draws, skin-tone variants
left out. A class gets 4 images per glyph, at least 60 and at most 400 (so classes are uneven: 64 bugs,
400 flags), the glyphs taken in turn. Each image is the glyph with a mild random augmentation: scaled to
55-90% of the side, rotated up to +-12 degrees, shifted anywhere it fits, on a random light background colour;
saved as a 64x64 RGB PNG at `<out>/<class>/<codepoints>-<n>.png`. Image n of a class depends only on
(`--seed`, class, n): the same seed gives the same pixels.

Where the two packages are not installed (`/usr/share/...`), `apt-get download` fetches their .deb files
into `--cache` and `dpkg-deb -x` unpacks them there (no root needed). The set is written to a temporary
folder beside `out`, then renamed into place.

    .venv/bin/python benchmarks/build_rgb_set.py [out=data/raw/rgb_dev] [--seed 0] [--sheet sheet.png]

Then: `ganforge prepare --set data.source=folder --set data.path=data/raw/rgb_dev --set data.channels=3`.
The images are derived artwork: never commit them (`data/raw/` is git-ignored).
"""

from __future__ import annotations

import argparse
import colorsys
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
FONT = "usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
EMOJI_TEST = "usr/share/unicode/emoji/emoji-test.txt"
PACKAGES = {FONT: "fonts-noto-color-emoji", EMOJI_TEST: "unicode-data"}
BITMAP_SIZE = 109  # the one size Noto Color Emoji's bitmaps (CBDT) are drawn at
SIDE = 64
PER_GLYPH, MIN_IMAGES, MAX_IMAGES = 4, 60, 400
SKIN_TONES = range(0x1F3FB, 0x1F400)

CLASSES: dict[str, tuple[str, ...]] = {  # class folder -> Unicode emoji subgroups
    "face_happy": ("face-smiling", "face-affection", "face-tongue", "face-hand"),
    "face_unhappy": ("face-concerned", "face-negative", "face-unwell", "face-sleepy"),
    "heart": ("heart",),
    "hand": ("hand-fingers-open", "hand-fingers-partial", "hand-single-finger", "hand-fingers-closed", "hands"),
    "mammal": ("animal-mammal",),
    "bird": ("animal-bird",),
    "sea_and_reptile": ("animal-marine", "animal-amphibian", "animal-reptile"),
    "bug": ("animal-bug",),
    "plant": ("plant-flower", "plant-other"),
    "fruit_vegetable": ("food-fruit", "food-vegetable"),
    "meal": ("food-prepared", "food-asian", "food-marine"),
    "drink": ("drink", "dishware"),
    "flag": ("country-flag",),
    "ground_vehicle": ("transport-ground",),
    "air_water_vehicle": ("transport-air", "transport-water"),
    "building": ("place-building", "place-religious"),
    "sky_weather": ("sky & weather",),
    "clock": ("time",),
    "sport": ("sport",),
    "clothing": ("clothing",),
}


def _files(cache: Path) -> dict[str, Path]:
    """The font and emoji-test.txt: installed, or unpacked from their Debian packages into `cache`."""
    found = {rel: Path("/", rel) for rel in PACKAGES}
    missing = [rel for rel, path in found.items() if not path.exists() and not (cache / rel).exists()]
    if missing:
        cache.mkdir(parents=True, exist_ok=True)
        names = sorted({PACKAGES[rel] for rel in missing})
        print(f"fetching {', '.join(names)} (apt-get download) into {cache}", flush=True)
        subprocess.run(["apt-get", "download", *names], cwd=cache, check=True, stdout=subprocess.DEVNULL)
        for deb in sorted(cache.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(cache)], check=True)
    return {rel: path if path.exists() else cache / rel for rel, path in found.items()}


def emoji_by_subgroup(emoji_test: Path) -> dict[str, list[str]]:
    """Every fully qualified emoji (no skin-tone variant) of each subgroup, in the file's order."""
    out: dict[str, list[str]] = {}
    subgroup = ""
    for line in emoji_test.read_text(encoding="utf-8").splitlines():
        if line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#"):
            points, status = (part.strip() for part in line.split("#", 1)[0].split(";"))
            codes = [int(p, 16) for p in points.split()]
            if status == "fully-qualified" and not any(c in SKIN_TONES for c in codes):
                out.setdefault(subgroup, []).append("".join(map(chr, codes)))
    return out


def render(text: str, font: ImageFont.FreeTypeFont) -> Image.Image | None:
    """The emoji as an RGBA image cropped to its pixels; None when the font draws nothing (or a blank box)."""
    canvas = Image.new("RGBA", (4 * BITMAP_SIZE, 2 * BITMAP_SIZE), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((8, 8), text, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    rgb = np.asarray(glyph)[..., :3].reshape(-1, 3)
    alpha = np.asarray(glyph)[..., 3].reshape(-1)
    if glyph.width > 1.5 * BITMAP_SIZE or rgb[alpha > 0].std() < 1:  # not one glyph (unshaped), or a flat tofu
        return None
    return glyph


def augment(glyph: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The glyph scaled, rotated and shifted onto a SIDE x SIDE light background of a random colour."""
    hue, sat, val = rng.random(), rng.uniform(0.0, 0.45), rng.uniform(0.75, 1.0)
    background = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val))
    rotated = glyph.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BICUBIC, expand=True)
    side = rng.uniform(0.55, 0.9) * SIDE
    scale = side / max(rotated.size)
    size = (max(1, round(rotated.width * scale)), max(1, round(rotated.height * scale)))
    small = rotated.resize(size, Image.Resampling.LANCZOS)
    x = int(rng.integers(0, SIDE - size[0] + 1))
    y = int(rng.integers(0, SIDE - size[1] + 1))
    out = Image.new("RGBA", (SIDE, SIDE), (*background, 255))
    out.alpha_composite(small, (x, y))
    return out.convert("RGB")


def build(out: Path, seed: int, cache: Path) -> Counter[str]:
    files = _files(cache)
    font = ImageFont.truetype(str(files[FONT]), BITMAP_SIZE)
    groups = emoji_by_subgroup(files[EMOJI_TEST])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    counts: Counter[str] = Counter()
    try:
        for index, (name, subgroups) in enumerate(CLASSES.items()):
            glyphs = [(e, g) for s in subgroups for e in groups.get(s, []) if (g := render(e, font)) is not None]
            if not glyphs:
                raise SystemExit(f"error: the font draws no emoji of class {name} ({', '.join(subgroups)})")
            (tmp / name).mkdir()
            for n in range(min(MAX_IMAGES, max(MIN_IMAGES, PER_GLYPH * len(glyphs)))):
                text, glyph = glyphs[n % len(glyphs)]
                image = augment(glyph, np.random.default_rng([seed, index, n]))
                points = "_".join(f"{ord(c):x}" for c in text if c != "\ufe0f")
                image.save(tmp / name / f"{points}-{n:03d}.png", optimize=False)
                counts[name] += 1
            print(f"{name:18s} {counts[name]:4d} images from {len(glyphs):3d} glyphs", flush=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def contact_sheet(root: Path, dest: Path, classes: int = 8, per_class: int = 10) -> None:
    """A PNG grid: the first `classes` class folders, one row each, `per_class` images spread over the class."""
    rows = sorted(p for p in root.iterdir() if p.is_dir())[:classes]
    sheet = Image.new("RGB", (per_class * SIDE, len(rows) * SIDE), "white")
    for r, folder in enumerate(rows):
        files = sorted(folder.glob("*.png"))
        for c in range(per_class):
            with Image.open(files[c * len(files) // per_class]) as im:
                sheet.paste(im.convert("RGB").resize((SIDE, SIDE)), (c * SIDE, r * SIDE))
    sheet.save(dest)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", type=Path, default=ROOT / "data" / "raw" / "rgb_dev")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=ROOT / ".ganforge-cache" / "rgb_dev_packages")
    p.add_argument("--sheet", type=Path, help="also write a contact sheet (PNG) of the first classes here")
    args = p.parse_args(argv)
    counts = build(args.out.resolve(), args.seed, args.cache)
    print(f"rgb_dev: {sum(counts.values())} images in {len(counts)} classes -> {args.out}")
    if args.sheet:
        contact_sheet(args.out, args.sheet)
        print(f"contact sheet: {args.sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
