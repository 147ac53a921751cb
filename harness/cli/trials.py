"""ganbench describe | trial | pretrain — one trial config."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List

from harness.cli.common import add_config, add_max_trials, load_plan, load_trial
from harness.study.planning import describe_plans


def _prepared(args: argparse.Namespace):
    """The trial config, with what it needs before training (its dataset) prepared — the
    same step ``ganbench run`` takes for a study."""
    from harness.prepare import prepare_trial

    spec = load_trial(args)
    prepare_trial(spec)
    return spec


def cmd_describe(args: argparse.Namespace) -> int:
    from harness.build import build_networks, model_info
    from harness.spec import load_yaml
    from harness.study import is_study

    if is_study(load_yaml(args.config)):
        return _describe_study(args)
    spec = load_trial(args)
    G, D = build_networks(spec)
    info = model_info(spec, G, D)
    if args.json:
        print(json.dumps({"config": spec.to_dict(), "model": info}, indent=2))
        return 0
    print(spec.to_yaml().rstrip())
    print("# ---")
    for key, value in info.items():
        print(f"# {key}: {value:,}" if isinstance(value, int) else f"# {key}: {value}")
    return 0


def _describe_study(args: argparse.Namespace) -> int:
    """A study file: its plans, budgets and resources (the trials are validated, none run)."""
    plan = load_plan(args.config, args.set, getattr(args, "preset", None), args.max_trials)
    info = plan.overview()
    if args.json:
        info["planned"] = [{"trial_id": p.trial_id, "labels": p.labels, "config": p.spec.to_dict()}
                           for p in plan.trials]
        print(json.dumps(info, indent=2, default=str))
        return 0
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key}:" + ("" if value else " none"))
            for k, v in value.items():
                print(f"  {k}: {v}")
        elif value not in (None, ""):
            print(f"{key}: {value}")
    if plan.trials:
        print("planned trials:\n" + describe_plans(plan.trials))
    return 0


def cmd_trial(args: argparse.Namespace) -> int:
    from harness import api
    from harness.storage import is_uri

    args.set = list(args.set or []) + tracking_sets(args)
    result = api.trial(args.config, args.out, api.TrialOptions.from_namespace(args))
    report = result.last_report or {}
    where = args.out if is_uri(args.out) else str(result.out_dir)
    print(json.dumps({"status": result.status, "iteration": result.iteration, "out": where,
                      "metrics": report.get("metrics", {}), "best": report.get("best", {}),
                      "error": result.error}, indent=2))
    return 0 if result.status == "completed" else 3


def cmd_pretrain(args: argparse.Namespace) -> int:
    from harness import zoo
    from harness.trial import run_trial

    spec = load_trial(args)
    # refuse a bad or taken name before hours of training, not after
    zoo.check_new_name(args.name, zoo.zoo_dir() if args.zoo is None else Path(args.zoo), args.force)
    spec = _prepared(args)
    out = args.out or str(Path("results") / "pretrain" / args.name)
    result = run_trial(spec, out, progress=not args.quiet)
    if result.status != "completed":
        print(json.dumps({"status": result.status, "out": str(result.out_dir), "error": result.error}, indent=2))
        return 3
    entry = zoo.export(out, args.name, zoo=args.zoo, force=args.force)
    print(json.dumps({"status": result.status, "out": str(result.out_dir), "zoo_entry": str(entry),
                      "best": (result.last_report or {}).get("best", {})}, indent=2))
    return 0


# flag -> the tracking key it sets (docs/tracking.md); they apply after --set
TRACKING_FLAGS = {"mlflow": "tracking.mlflow.uri", "mlflow_experiment": "tracking.mlflow.experiment",
                  "wandb": "tracking.wandb.mode", "wandb_project": "tracking.wandb.project",
                  "wandb_entity": "tracking.wandb.entity", "wandb_group": "tracking.wandb.group"}


def add_tracking(p: argparse.ArgumentParser) -> None:
    from harness.tracking.wandb_tracker import MODES

    g = p.add_argument_group("experiment trackers (the config's tracking: section; docs/tracking.md)")
    g.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard event files (on by default)")
    g.add_argument("--mlflow", metavar="URI", help="send to MLflow at this tracking URI (http://HOST:PORT, "
                   "sqlite:///FILE.db, a folder)")
    g.add_argument("--mlflow-experiment", metavar="NAME", help="the MLflow experiment (default ganbench)")
    g.add_argument("--wandb", choices=MODES, help="send to Weights & Biases in this mode")
    g.add_argument("--wandb-project", metavar="NAME", help="the W&B project (default ganbench)")
    g.add_argument("--wandb-entity", metavar="NAME", help="the W&B team or user")
    g.add_argument("--wandb-group", metavar="NAME", help="the W&B run group")


def tracking_sets(args: argparse.Namespace) -> List[str]:
    """The tracking flags as --set overrides (a W&B or MLflow option flag alone turns that tracker on)."""
    sets = ["tracking.tensorboard=null"] if getattr(args, "no_tensorboard", False) else []
    for flag, key in TRACKING_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            sets.append(f"{key}={json.dumps(value)}")
    return sets


def register(sub) -> None:
    p = sub.add_parser("describe", help="a trial config: the resolved config and parameter counts; a study file: "
                                        "its plans, budgets and resources")
    add_config(p)
    p.add_argument("--preset", help="a study's preset (cpu | gpu | one the study defines)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_max_trials(p)
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("trial", help="run one trial in-process; rerun on the same --out to resume")
    add_config(p)
    p.add_argument("--out", required=True, help="the trial's directory (or object storage: s3://BUCKET/PREFIX/TRIAL)")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--allow-new-data", action="store_true",
                   help="resume although the dataset changed since the trial started (recorded in env.json)")
    add_tracking(p)
    p.set_defaults(func=cmd_trial)

    p = sub.add_parser("pretrain", help="train a source model and store it in the model zoo")
    add_config(p)
    p.add_argument("--name", required=True, help="the zoo entry's name (transfer.source refers to it)")
    p.add_argument("--out", default=None, help="the trial's directory (default results/pretrain/NAME)")
    p.add_argument("--zoo", default=None, help="zoo directory (default $GANBENCH_ZOO or <cache>/zoo)")
    p.add_argument("--force", action="store_true", help="replace an existing zoo entry of that name")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pretrain)
