"""ganbench validate | run | summary — studies (and single trial configs for validate)."""
from __future__ import annotations

import argparse
import sys


def cmd_validate(args: argparse.Namespace) -> int:
    from harness import api
    from harness.study import Plan
    from harness.tracking import missing_package
    from harness.tracking.study import effective

    checked = api.validate(args.config, api.StudyOptions.from_namespace(args))
    tracking = effective(checked) if isinstance(checked, Plan) else checked.tracking
    for name, _ in tracking.enabled():
        problem = missing_package(name)
        if problem is not None:
            print(f"ganbench: note: {problem}", file=sys.stderr)
    if isinstance(checked, Plan):
        print(f"{args.config}: {checked.describe()}")
        return 0
    spec = checked
    print(f"{args.config}: valid trial '{spec.name}' "
          f"({spec.architecture.name}, {spec.loss.name}, {spec.dataset.name} {spec.dataset.resolution}px, "
          f"{spec.optimization.iterations} iterations)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from harness import api

    frame = api.run(args.study, api.RunOptions.from_namespace(args))
    bad = frame[frame["status"].isin(["failed", "running", "pending"])] if len(frame) else frame
    return 0 if not len(bad) else 3


def cmd_summary(args: argparse.Namespace) -> int:
    from harness import api
    from harness.summary import to_json

    frame = api.trials(args.dir)
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif args.format == "json":
        sys.stdout.write(to_json(frame))
    else:
        cols = [c for c in frame.columns if not c.startswith(("config.", "protocol.", "direction.")) and c != "labels"]
        print(frame[cols].to_string(index=False))
    return 0


def register(sub) -> None:
    from harness.cli.common import add_config, add_max_trials

    p = sub.add_parser("validate", help="check a trial config or a whole study without running it")
    add_config(p)
    p.add_argument("--preset", default=None, help="a study's preset (e.g. cpu, gpu) when its file defines presets")
    add_max_trials(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a study on Ray: an ablation grid or an Optuna search")
    p.add_argument("study", help="study YAML (see docs/study-file.md)")
    p.add_argument("--results", default="results",
                   help="results root, a folder or object storage (s3://BUCKET/PREFIX, gs://..., any pyarrow.fs URI); "
                        "the study writes RESULTS/<name>/")
    p.add_argument("--address", default=None,
                   help="an existing Ray cluster (default $RAY_ADDRESS, else an embedded local Ray)")
    p.add_argument("--resume", action="store_true", help="continue a study whose driver stopped")
    p.add_argument("--allow-new-data", action="store_true",
                   help="with --resume: continue trials whose dataset changed since they started (recorded)")
    p.add_argument("--preset", default=None,
                   help="which of the study file's presets to run (e.g. cpu, gpu); results go to RESULTS/<name>-<preset>/")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a dotted study key (repeatable), e.g. search.n_trials=4")
    add_max_trials(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("summary", help="one row per trial of a study results directory")
    p.add_argument("dir", help="RESULTS/<study name> (a folder, or s3://BUCKET/PREFIX/<study name>)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_summary)
