"""`ganforge <command>`: parse, load the config, call the stage's core function, print one line.

Errors a user can cause print one line (`error: ...`) and exit non-zero; bugs keep their tracebacks.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganforge import __version__
from ganforge.errors import GanforgeError, one_line

Command = Callable[[argparse.Namespace], str]


def _config(args: argparse.Namespace):  # -> Config (imported lazily: --help stays fast)
    from ganforge.config import load_config

    overrides = list(args.set or [])
    if getattr(args, "device", None):
        overrides.append(f"train.device={args.device}")
    if getattr(args, "nproc", None) is not None:
        overrides.append(f"train.nproc={args.nproc}")
    return load_config(args.params, overrides)


def cmd_prepare(args: argparse.Namespace) -> str:
    cfg = _config(args)  # first: a bad config fails before the heavy imports
    from ganforge.data.prepare import prepare
    from ganforge.paths import Paths

    paths = Paths()
    return prepare(cfg.data, paths.prepared, paths.metrics / "prepare.json", progress=not args.quiet).line()


def cmd_train(args: argparse.Namespace) -> str:
    cfg = _config(args)
    from ganforge.paths import Paths
    from ganforge.training import launch

    paths = Paths()
    tc = cfg.train
    if tc.nproc > 1 and not launch.under_torchrun():  # start the same command once per process, and wait
        from ganforge.data.dataset import KINDS, PreparedData

        PreparedData.open(paths.prepared, kinds=KINDS)  # no data: one line here, not one per rank
        if tc.batch_size % (tc.nproc * tc.model.pack):
            raise GanforgeError(
                f"train.batch_size ({tc.batch_size}) is the global batch: it must be a multiple of train.nproc "
                f"({tc.nproc}) x train.model.pack ({tc.model.pack})"
            )
        launch.launch(tc.nproc, args.argv[args.argv.index("train") + 1 :], paths.checkpoint)
        return ""  # rank 0 printed the summary
    return _train_rank(cfg, paths, args)


def _train_rank(cfg: Any, paths: Any, args: argparse.Namespace) -> str:
    """This process's part of the training (the whole of it without torchrun); only rank 0 speaks."""
    import torch.distributed as tdist

    from ganforge.training.launch import LAUNCHED
    from ganforge.training.loop import train

    rank = int(os.environ.get("RANK", "0"))
    try:
        summary = train(cfg, paths, resume=args.resume, progress=not args.quiet)
    except GanforgeError as exc:
        if rank:
            exc.args = (f"rank {rank}: {exc}",)
        raise
    except RuntimeError as exc:  # a collective failed: another rank died, or stopped answering
        if not (isinstance(exc, tdist.DistError) or any(m in str(exc) for m in ("gloo", "NCCL", "closed by peer"))):
            raise  # a bug, with its traceback
        if os.environ.get(LAUNCHED):  # the launcher says which rank failed, in one line
            raise SystemExit(1) from None
        raise GanforgeError(
            f"train: rank {rank} lost the other ranks of the job ({one_line(str(exc))[:200]}); the last checkpoint "
            f"({paths.checkpoint}) is intact: run the same command again to continue"
        ) from None
    return summary.line(paths) if rank == 0 else ""


def cmd_features(args: argparse.Namespace) -> str:
    cfg = _config(args)
    from ganforge.features import train_classifier
    from ganforge.paths import Paths

    paths = Paths()
    return train_classifier(cfg.features, paths, progress=not args.quiet).line(paths.classifier)


def cmd_evaluate(args: argparse.Namespace) -> str:
    cfg = _config(args)
    from ganforge.evaluate import evaluate
    from ganforge.paths import Paths

    paths = Paths()
    return evaluate(cfg, paths).line(paths.metrics / "eval.json")


def cmd_registry(args: argparse.Namespace) -> str:
    cfg = _config(args)
    from ganforge import registry

    name = args.name or cfg.registry.model_name
    if args.action == "list":
        rows = registry.list_versions(name)
        for r in rows:
            aliases = ",".join(r.get("aliases") or []) or "-"
            scores = " ".join(
                f"{k}={r[k]:.4g}" for k in ("fid", "class_accuracy", "precision", "recall") if r.get(k) is not None
            )
            gate = f"{r.get('gate') or '-'} ({r.get('gate_reason') or ''})"
            print(f"v{r['version']:<4} {aliases:<20} {scores}  gate: {gate}")
        return f"registry: {name} has {len(rows)} version(s)"
    if args.action == "promote":
        if args.version is None:
            raise GanforgeError("registry promote: give the VERSION to make champion")
        registry.promote(name, args.version, reason=f"manual promote of v{args.version}")
        return f"registry: {name} champion -> v{args.version}"
    version = registry.rollback(name)
    return f"registry: {name} champion rolled back to v{version}"


def _library_paths(args: argparse.Namespace):  # -> Paths with library.dir (params.yaml, when there is one)
    from ganforge.paths import Paths

    if args.params == Path("params.yaml") and not args.set and not args.params.exists():
        return Paths()  # ls/show/export read only the catalog: they work where no params file is
    return Paths(library_dir=Path(_config(args).library.dir))


def cmd_library(args: argparse.Namespace) -> str:
    if args.action == "build":
        from ganforge.assets.build import build_library

        if args.model:
            args.set = [*(args.set or []), f"library.model={args.model}"]
        cfg = _config(args)
        return build_library(cfg, _library_paths(args), progress=not args.quiet).line()
    from ganforge.assets import catalog

    paths = _library_paths(args)
    if not paths.catalog.exists():
        raise GanforgeError(f"{paths.catalog}: no library yet; run `ganforge library build` (or `dvc repro`)")
    df = catalog.read(paths.catalog)
    if args.action == "show":
        return _show(catalog.find(df, args.target), paths)
    rows = catalog.select(df, args.cls, args.kind, args.min_realism, _ids(args.ids))
    if args.action == "ls":
        rows = rows.sort_values(["kind", "class", "realism", "asset_id"], ascending=[True, True, False, True])
        shown = rows if args.limit is None else rows.head(args.limit)
        for r in shown.itertuples(index=False):
            cls = r.class_name or "-"
            print(
                f"{r.asset_id}  {r.kind:<11}  {cls[:16]:<16}  realism {r.realism:6.3f}  D {r.d_score:7.3f}  "
                f"nearest {r.nearest_real_feature:6.3f}/{r.nearest_real_pixel:5.3f}  {r.path}"
            )
        return f"library: {len(shown)} of {len(rows)} matching assets ({len(df)} in {paths.catalog})"
    from ganforge.assets.export import export

    return export(rows, paths.library, Path(args.target), args.format, args.shard_size).line()


def _ids(text: str | None) -> list[str] | None:
    """--ids: asset ids (or unique prefixes) separated by commas or spaces, or @FILE holding them."""
    if text is None:
        return None
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise GanforgeError(f"--ids {text}: cannot read it ({exc.strerror})") from None
    return [t for t in re.split(r"[\s,]+", text) if t]


def _show(row, paths) -> str:
    import json

    for key, value in row.items():
        if key in ("seeds", "classes"):
            value = list(value)
        print(f"{key:>22}: {value}")
    kind, seeds, classes = row["kind"], list(row["seeds"]), list(row["classes"])
    if kind == "translation":
        by = f"models:/{row['model_name']}/{row['model_version']}" if row["model_version"] else row["source"]
        print(f"{'translated from':>22}: {row['parent']} ({paths.library / row['parent_path']})")
        print(f"{'translator':>22}: {by} (weights {str(row['model_sha256'])[:12]}), into {row['domain']}")
        if row["model_version"]:
            frame = json.dumps({"image": [str(paths.library / row["parent_path"])], "target": [row["domain"]]})
            print(f"{'regenerate':>22}: mlflow.pyfunc.load_model('{by}').predict(pandas.DataFrame({frame}))")
    if kind in ("image", "clip") and row["model_version"]:
        cls = classes[0] if classes else -1
        frame = json.dumps({"seed": seeds, "class": [cls], "truncation": [float(row["truncation"])]})
        print(
            f"{'regenerate':>22}: mlflow.pyfunc.load_model('models:/{row['model_name']}/{row['model_version']}')"
            f".predict(pandas.DataFrame({frame}))"
        )
    return f"library: {row['asset_id']} is {paths.library / row['path']}"


def cmd_generate(args: argparse.Namespace) -> str:
    from ganforge.generate import check_truncation, parse_seeds

    seeds = parse_seeds(args.seeds)  # first: a bad range or truncation fails before the heavy imports
    check_truncation(args.truncation)
    model = args.model
    if model == "checkpoint":
        sets = ["library.model=checkpoint"]
    elif model.endswith(".pt") or Path(model).is_file():
        sets = ["library.model=checkpoint", f"library.checkpoint={Path(model).resolve()}"]
    else:
        sets = [f"library.model={model}"]
    if args.name:
        sets.append(f"registry.model_name={args.name}")
    args.set = [*(args.set or []), *sets]
    if args.params == Path("params.yaml") and not args.params.exists():  # a checkpoint outside a project
        from ganforge.config import apply_overrides, validate

        cfg = validate(apply_overrides({}, args.set), "--set")
    else:
        cfg = _config(args)
    from ganforge.assets.source import open_source
    from ganforge.generate import generate, parse_classes
    from ganforge.paths import Paths

    src = open_source(cfg, Paths())
    classes = parse_classes(args.cls, src)
    return generate(src, seeds, classes, args.truncation, Path(args.out), args.batch_size).line()


def cmd_translate(args: argparse.Namespace) -> str:
    for flag, key in (("model", "model"), ("input", "input"), ("to", "to")):
        if getattr(args, flag):
            args.set = [*(args.set or []), f"translate.{key}={getattr(args, flag)}"]
    cfg = _config(args)
    from ganforge.assets.translate import translate_assets

    return translate_assets(cfg, _library_paths(args), progress=not args.quiet).line()


def cmd_config(args: argparse.Namespace) -> str:
    import yaml

    cfg = _config(args)
    sys.stdout.write(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return f"config: {args.params} is valid"


def cmd_report(args: argparse.Namespace) -> str:
    import json
    import time

    from ganforge.paths import Paths
    from ganforge.tracking import tracking_uri

    paths = Paths(library_dir=Path(_config(args).library.dir)) if args.params.exists() else Paths()
    lines = []
    for name in ("prepare", "features", "train", "eval", "library", "translate"):
        f = paths.metrics / f"{name}.json"
        if f.exists():
            values = json.loads(f.read_text())
            flat = {k: v for k, v in values.items() if not isinstance(v, dict | list)}
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in flat.items())
            lines.append(f"  {f}: {shown}")
    if not lines:
        raise GanforgeError("no results yet: run `make demo` or `dvc repro`")
    print("Results")
    print(f"  sample grid:    {paths.samples_latest}  (every snapshot: {paths.samples_dir}/)")
    print(f"  loss curves:    {paths.train_losses}  (`dvc plots show` renders dvc_plots/index.html)")
    print(f"  checkpoint:     {paths.checkpoint}")
    print("Metrics (`dvc metrics show`)")
    print("\n".join(lines))
    eval_file = paths.metrics / "eval.json"
    if eval_file.exists():
        ev = json.loads(eval_file.read_text())
        p, reg = ev["protocol"], ev.get("registry", {})
        acc = f", class accuracy {ev['class_accuracy']:.3f}" if "class_accuracy" in ev else ""
        if "frame_class_accuracy" in ev:  # video: the clip classifier's verdict above, the frame classifier's here
            acc += f" (clips), {ev['frame_class_accuracy']:.3f} (every frame)"
        if "cas" in ev:
            acc += f", CAS {ev['cas']:.3f} ({ev['cas_ratio']:.0%} of real data's {ev['cas_real']:.3f})"
        print("Quality")
        if "fid_untranslated" in ev:  # a translator
            kept = (f", content kept {ev['content_accuracy']:.3f}, target domain reached {ev['domain_accuracy']:.3f}"
                    if "content_accuracy" in ev else "")  # fmt: skip
            print(
                f"  FID to the target domain {ev['fid']:.3f} (untranslated {ev['fid_untranslated']:.3f}){kept}, "
                f"cycle L1 {ev['cycle_l1']:.4f} ({p['extractor']} features, {p['directions']} directions)"
            )
            for direction, row in ev["directions"].items():
                content = f", content kept {row['content_accuracy']:.3f}" if "content_accuracy" in row else ""
                print(f"    {direction}: FID {row['fid']:.3f}{content} (n {row['n']})")
        else:
            print(
                f"  FID {ev['fid']:.3f}{acc}, precision {ev['precision']:.3f}, recall {ev['recall']:.3f} "
                f"({p['extractor']} features, n_real {p['n_real']}, n_fake {p['n_fake']})"
            )
        if "video" in ev:
            print(f"  {_video_line(ev['video'])}")
        if "version" in reg:
            champion = (
                f"champion is v{reg['champion']}: mlflow.pyfunc.load_model('models:/{reg['model_name']}@champion')"
                if reg["champion"] is not None
                else f"no champion yet: train longer, or `ganforge registry promote {reg['version']}` by hand"
            )
            print(
                f"  registry: {reg['model_name']} v{reg['version']} "
                f"{'is the new champion' if reg['promoted'] else 'stays candidate'} ({reg['reason']}); {champion}"
            )
    lib_file = paths.metrics / "library.json"
    translated = paths.metrics / "translate.json"
    if translated.exists():  # a translator's project: it adds to a library, it does not build one
        tr = json.loads(translated.read_text())
        print("Asset library")
        print(f"  {tr['added']} translations into {tr['domain']} added ({tr['already_present']} already there) by "
              f"{tr['translator']}; {tr['catalog_assets']} assets in {paths.catalog}")  # fmt: skip
        print(f"  gallery:        {paths.gallery.resolve().as_uri()}   (parents beside their translations)")
        print("  browse:         ganforge library ls --kind translation | show ID")
        lib_file = translated  # the library step of this pipeline
    stale = lib_file.exists() and eval_file.exists() and lib_file.stat().st_mtime < eval_file.stat().st_mtime
    if eval_file.exists() and (not lib_file.exists() or stale):
        print("Asset library")
        print(
            f"  not built from this evaluation{' (the one below is older)' if stale else ''}: "
            "`ganforge library build` draws from the champion (or --model candidate, a version, checkpoint)"
        )
    if lib_file.exists() and lib_file != translated:
        lib = json.loads(lib_file.read_text())
        print("Asset library")

        def n(kind: str) -> int:
            counts = lib.get(kind) or {}
            return counts.get("accepted", 0) + counts.get("already_present", 0)

        made = ", ".join(f"{n(k)} {k}" for k in ("images", "videos", "clips") if n(k)) or "nothing new"
        source, where = lib["protocol"]["source"], lib["catalog"]
        print(f"  {lib['catalog_assets']} assets ({made} this build) from {source}; catalog {where}")
        print(f"  gallery:        {paths.gallery.resolve().as_uri()}   (open it in a browser; no server needed)")
        print("  browse:         ganforge library ls --class 3 --min-realism 1.0 | show ID | export DEST --format hf")
        print("  generate:       ganforge generate --model champion --seeds 0-99 --class 3 --out DIR")
    uri = tracking_uri()
    print("MLflow")
    print(f"  mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000   # then open http://127.0.0.1:5000")
    took = f" in {time.time() - args.started:.0f}s" if args.started else ""
    if eval_file.exists() and (not lib_file.exists() or stale):
        return f"report: the pipeline stopped before the library{took}"
    return f"report: pipeline done{took}"


def _video_line(video: dict) -> str:
    """The clip scores of eval.json's video section, in one line."""
    parts = [f"{k} {video[k]:.3f}" for k in ("clip_fd", "motion") if isinstance(video.get(k), int | float)]
    parts.append(f"FVD {video['fvd']:.2f}" if isinstance(video.get("fvd"), int | float) else "FVD not computed")
    return "clips: " + ", ".join(parts) + " (clip_fd: in-domain clip Frechet distance, not FVD; motion 1.0 = as real)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganforge",
        description="Train GANs on your own images; every stage reads params.yaml (override with --set).",
    )
    parser.add_argument("--version", action="version", version=f"ganforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Command, help_text: str, under: Any = sub) -> argparse.ArgumentParser:
        p = under.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
        p.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override one param, e.g. --set train.steps=100 (repeatable; value read as YAML)",
        )
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=fn)
        return p

    add("prepare", cmd_prepare, "validate, resize and shard the source images (or video clips) into data/prepared/")
    p = add("train", cmd_train, "train the GAN; checkpoints in models/, sample grids in plots/samples/")
    p.add_argument("--resume", action="store_true", help="continue from models/checkpoint.pt exactly")
    p.add_argument("--device", help="force a device: cpu, cuda, cuda:N, mps (same as --set train.device=...)")
    p.add_argument(
        "--nproc", type=int, help="train in N processes, one per GPU, through torchrun's launcher (= train.nproc)"
    )
    add("features", cmd_features, "train the in-domain classifier (feature space for metrics) -> models/classifier.pt")
    add("evaluate", cmd_evaluate, "score the generator (FID, KID, precision/recall, class accuracy); register it")
    p = add("registry", cmd_registry, "the MLflow model registry: list versions, promote one, roll back champion")
    p.add_argument("action", choices=["list", "promote", "rollback"])
    p.add_argument("version", nargs="?", type=int, help="with promote: the version to make champion")
    p.add_argument("--name", help="registered model name (default: registry.model_name)")
    lib = sub.add_parser("library", help="the asset library: build it; list, show and export assets (library/)")
    actions = lib.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = add("build", cmd_library, "add scored, de-duplicated assets to library/ from library.model", actions)
    p.add_argument("--model", help="champion, candidate, a version number, or checkpoint (sets library.model)")
    show = add("show", cmd_library, "every catalog field of one asset, and how to regenerate it", actions)
    show.add_argument("target", metavar="ID", help="an asset ID, or a unique prefix of one")
    p_ls = add("ls", cmd_library, "list assets, best first within each kind and class", actions)
    p_ls.add_argument("--limit", type=int, help="show at most this many")
    p_ex = add("export", cmd_library, "copy matching assets and their catalog.parquet to DEST", actions)
    p_ex.add_argument("target", metavar="DEST", help="the folder to export to (created when missing)")
    p_ex.add_argument(
        "--format", choices=["copy", "imagefolder", "hf", "webdataset"], default="copy",
        help="copy (the library's layout + catalog.parquet), imagefolder (torchvision), hf (Hugging Face "
        "imagefolder + metadata.jsonl) or webdataset (tar shards)",
    )  # fmt: skip
    p_ex.add_argument("--shard-size", type=int, default=1000, help="webdataset: samples per tar shard")
    for p in (p_ls, p_ex):
        p.add_argument("--ids", help="only these asset ids (comma-separated, unique prefixes allowed, or @FILE)")
        p.add_argument("--class", dest="cls", help="only this class (number or name)")
        p.add_argument("--kind", help="image, latent_walk, class_morph, clip or translation")
        p.add_argument("--min-realism", type=float, help="only assets with at least this realism score")
    p = add("translate", cmd_translate, "restyle library assets or an image folder with a translator, into library/")
    p.add_argument("--model", help="checkpoint, champion, candidate or a version number (sets translate.model)")
    p.add_argument("--input", help="library, a library folder, or an image folder (sets translate.input)")
    p.add_argument("--to", help="the target domain, one of translate.domains (sets translate.to)")
    p = add("generate", cmd_generate, "seed-addressed samples from a registered version or a checkpoint, to a folder")
    p.add_argument(
        "--model", default="champion", help="champion, candidate, a version number, checkpoint or a .pt file"
    )
    p.add_argument("--name", help="registered model name (default: registry.model_name)")
    p.add_argument("--seeds", required=True, help="seeds: 0-99, 1,5,7 or 0-9,20-29")
    p.add_argument("--class", dest="cls", help="class numbers or names, comma-separated (default: every class)")
    p.add_argument("--truncation", type=float, default=1.0, help="psi in (0, 1]: 1 samples the plain prior")
    p.add_argument("--out", required=True, help="the folder to write to (created when missing)")
    p.add_argument("--batch-size", type=int, default=64, help="samples per forward pass")
    add("config", cmd_config, "print the validated params (with overrides applied)")
    p = add("report", cmd_report, "say where the results of the last run are (sample grid, metrics, MLflow UI)")
    p.add_argument("--started", type=float, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `train --nproc N` starts itself again with these
    try:
        if out := args.func(args):
            print(out)
    except GanforgeError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ganforge library ls | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush into the pipe
    return 0


if __name__ == "__main__":
    sys.exit(main())
