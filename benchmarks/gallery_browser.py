"""The gallery of a large library in headless Chromium: time to the first grid, to a filter change, page weight.

Opens LIBRARY/index.html from disk (as a user does) in Debian's Chromium through Playwright and measures:
- first grid: from navigation to the first page of thumbnails laid out and decoded (every <img> of the grid
  complete), median of --repeats fresh pages;
- a filter change: selecting a class, then a realism bound, then a sort, each from the event to the new grid
  rendered (the next animation frame), median over the three;
- page weight at first load: the bytes of every file the page loaded before it was idle (index.html,
  thumbnails; the detail files load only when an asset is opened).

    .venv/bin/python benchmarks/gallery_browser.py /tmp/ganforge-library-scale/r16-s400/library-100000
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("library", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shot", type=Path, help="save a screenshot of the first grid here")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    index = (args.library / "index.html").resolve()
    firsts, changes, weights = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for r in range(args.repeats):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            loaded: list[str] = []
            page.on("requestfinished", lambda req, seen=loaded: seen.append(req.url))
            t0 = time.perf_counter()
            page.goto(index.as_uri(), wait_until="commit")
            page.wait_for_function(
                "() => { const im = document.querySelectorAll('#gallery img');"
                " return im.length > 0 && Array.from(im).every(i => i.complete && i.naturalWidth > 0); }",
                polling="raf",
                timeout=60_000,
            )
            firsts.append(time.perf_counter() - t0)
            page.wait_for_load_state("networkidle")
            weights.append(sum(Path(unquote(urlparse(u).path)).stat().st_size for u in set(loaded)))
            n = page.locator("#shown-count").inner_text()
            if r == 0 and args.shot:
                page.screenshot(path=str(args.shot))
            for action in (
                "() => { const s = document.getElementById('filter-class'); s.value = s.options[2].value;"
                " s.dispatchEvent(new Event('change')); }",
                "() => { const s = document.getElementById('filter-min-realism'); s.value = '1.0';"
                " s.dispatchEvent(new Event('input')); }",
                "() => { const s = document.getElementById('sort'); s.value = 'realism';"
                " s.dispatchEvent(new Event('change')); }",
            ):
                ms = page.evaluate(
                    f"""() => new Promise(done => {{
                        const t = performance.now(); ({action})();
                        requestAnimationFrame(() => done(performance.now() - t)); }})"""
                )
                changes.append(ms / 1000)
            context.close()
        browser.close()
    print(f"library: {args.library} ({n})")
    print(f"first grid      {statistics.median(firsts):6.2f} s   (runs: {', '.join(f'{t:.2f}' for t in firsts)})")
    print(f"filter change   {statistics.median(changes):6.3f} s   (max {max(changes):.3f})")
    page_mib, first_mib = index.stat().st_size / 2**20, max(weights) / 2**20
    print(f"page weight     {first_mib:6.2f} MiB at first load (index.html {page_mib:.2f} MiB)")


if __name__ == "__main__":
    main()
