"""Small data: the digits demo's recipe trained on a tenth of the train split, without augmentation, with
DiffAugment and with ADA, side by side at the same step budget.

The in-domain classifier (the evaluation's feature space) is trained once on the whole train split, so every
variant is measured with the same instrument; FID, precision, recall and class accuracy are computed on the full
test split against `evaluate.n_fake` generated images. Everything runs in a temporary directory, tracking off.

    .venv/bin/python benchmarks/small_data.py [--fraction 0.1] [--steps 2000] [--variants none,diffaugment,ada]
                                              [--set key=value ...]

Prints one line per variant and ends with a markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ganforge.config import load_config
from ganforge.data.prepare import prepare
from ganforge.evaluate import evaluate
from ganforge.features import train_classifier
from ganforge.paths import Paths
from ganforge.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "none": [],
    "diffaugment": ["train.augment.kind=diffaugment"],
    "ada": ["train.augment.kind=ada"],
    "ada+lecam": ["train.augment.kind=ada", "train.lecam.weight=0.3"],
}


def subset(prepared: Path, out: Path, fraction: float, seed: int) -> int:
    """A copy of `prepared` whose train split keeps `fraction` of each class (seeded); the test split is whole."""
    shutil.copytree(prepared, out)
    info = json.loads((out / "info.json").read_text())
    train = info["splits"]["train"]
    images = np.concatenate([np.load(out / s) for s in train["shards"]])
    labels = np.load(out / train["labels"])
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([
        rng.permutation(np.flatnonzero(labels == c))[: max(2, round(fraction * int((labels == c).sum())))]
        for c in np.unique(labels)
    ]))  # fmt: skip
    for s in train["shards"]:
        (out / s).unlink()
    np.save(out / "train-00000.npy", images[keep])
    np.save(out / train["labels"], labels[keep])
    info["splits"]["train"] = {**train, "count": len(keep), "shards": ["train-00000.npy"]}
    (out / "info.json").write_text(json.dumps(info, indent=2))
    return len(keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--variants", default="none,diffaugment,ada")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="params override (repeatable)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ganforge-small-"))
    base = ["tracking.enabled=false", f"train.steps={args.steps}", "registry.promote=false", *args.set]
    full = Paths(work / "full")
    cfg = load_config(ROOT / "params.yaml", base)
    if not full.classifier.exists():
        prepare(cfg.data, full.prepared, full.metrics / "prepare.json", progress=False)
        train_classifier(cfg.features, full, progress=False)
    rows = []
    for name in args.variants.split(","):
        paths = Paths(work / name)
        shutil.rmtree(paths.root, ignore_errors=True)
        n = subset(full.prepared, paths.prepared, args.fraction, seed=0)
        paths.models.mkdir(parents=True)
        shutil.copy2(full.classifier, paths.classifier)
        c = load_config(ROOT / "params.yaml", [*base, *VARIANTS[name]])
        t0 = time.perf_counter()
        s = train(c, paths, progress=False)
        seconds = time.perf_counter() - t0
        evaluate(c, paths)
        ev = json.loads((paths.metrics / "eval.json").read_text())
        row = {"variant": name, "n_train": n, "steps": s.steps, "train_s": round(seconds),
               **{k: round(ev[k], 3) for k in ("fid", "precision", "recall", "class_accuracy")}}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), f"grid: {paths.samples_latest}", flush=True)
    print("\n| variant | train images | steps | train s | FID | precision | recall | class accuracy |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['variant']} | {r['n_train']} | {r['steps']} | {r['train_s']} | {r['fid']} | {r['precision']} | "
              f"{r['recall']} | {r['class_accuracy']} |")  # fmt: skip


if __name__ == "__main__":
    main()
