"""Image translation on the built-in digit styles: how much of the source's content survives, per direction.

Prepares `digit_styles` (--styles; the handwritten digits and/or digits typeset from the fonts inside matplotlib's
wheel) at 32 px, trains the features classifier (the judge: 20-40 classes of style x digit), then for each
--variant trains a translator (train.model, with the variant's overrides) and evaluates it: FID to the target
domain beside the untranslated FID, content kept (the classifier reads the source's digit on its translation),
target domain reached, cycle L1. Everything runs in --work (kept: a second run reuses the data and classifier).

    .venv/bin/python benchmarks/translation_quality.py                       # cyclegan, handwritten <-> typeset
    .venv/bin/python benchmarks/translation_quality.py --family stargan --styles sans serif mono \\
        --domains 'sans_*' 'serif_*' 'mono_*' --variant train.steps=600
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from ganforge.config import load_config
from ganforge.data.prepare import prepare
from ganforge.evaluate import evaluate
from ganforge.features import train_classifier
from ganforge.paths import Paths
from ganforge.training.loop import train

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="cyclegan")
    ap.add_argument("--styles", nargs="+", default=["handwritten", "typeset"])
    ap.add_argument("--domains", nargs="+", default=["handwritten_*", "typeset_*"])
    ap.add_argument("--num-images", type=int, default=1800, help="typeset digits per font style")
    ap.add_argument("--params", type=Path, default=ROOT / "translate" / "params.yaml")
    ap.add_argument("--variant", action="append", default=[], help="comma-separated overrides; repeatable")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ganforge-translation-bench")
    args = ap.parse_args()
    base = [
        "tracking.enabled=false",
        f"train.model.family={args.family}",
        f"data.styles=[{', '.join(args.styles)}]",
        f"data.num_images={args.num_images}",
        f"translate.domains=[{', '.join(args.domains)}]",
        "registry.gate.min={content_accuracy: 0.0}",
    ]
    shared = Paths(args.work / "shared")
    cfg = load_config(args.params, base)
    marker = shared.root / f".ready-{'-'.join(args.styles)}-{args.num_images}"
    if not marker.exists():
        shutil.rmtree(shared.root, ignore_errors=True)
        t = time.perf_counter()
        prepare(cfg.data, shared.prepared, shared.metrics / "prepare.json", progress=False)
        summary = train_classifier(cfg.features, shared, progress=False)
        print(f"data + classifier in {time.perf_counter() - t:.0f}s: {summary.line(shared.classifier)}")
        marker.touch()
    for variant in args.variant or [""]:
        overrides = [v for v in variant.split(",") if v]
        name = variant.replace("/", "_") or "recipe"
        paths = Paths(args.work / name)
        shutil.rmtree(paths.root, ignore_errors=True)
        shutil.copytree(shared.prepared, paths.prepared)
        paths.models.mkdir(parents=True)
        shutil.copy(shared.classifier, paths.classifier)
        run_cfg = load_config(args.params, [*base, *overrides])
        t = time.perf_counter()
        s = train(run_cfg, paths, progress=False)
        ev = evaluate(run_cfg, paths)
        directions = json.loads((paths.metrics / "eval.json").read_text())["directions"]
        print(f"{args.family} {variant or '(recipe)'}: {s.steps} steps in {time.perf_counter() - t:.0f}s; "
              f"content kept {ev.scores['content_accuracy']:.3f}, domain {ev.scores['domain_accuracy']:.3f}, "
              f"FID {ev.scores['fid']:.2f} (untranslated {ev.scores['fid_untranslated']:.2f}), "
              f"cycle L1 {ev.scores['cycle_l1']:.4f}; grid {paths.samples_latest}")  # fmt: skip
        for direction, row in directions.items():
            print(f"    {direction}: content {row['content_accuracy']:.3f}, FID {row['fid']:.2f} (n {row['n']})")


if __name__ == "__main__":
    main()
