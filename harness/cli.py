"""The ``ganbench`` command line.

    ganbench validate FILE.yaml             check a trial config without running it
    ganbench describe FILE.yaml             resolved config + parameter counts of G and D
    ganbench trial FILE.yaml --out DIR      run one trial in-process (resumes on rerun)
    ganbench list                           registered variants of every kind
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

import yaml

from harness.errors import CheckpointError, ConfigError


def _overrides(pairs: List[str]) -> Dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError("--set", pair, "KEY=VALUE with a dotted KEY, e.g. optimization.iterations=100")
        key, value = pair.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def _load(args: argparse.Namespace):
    from harness.spec import load_yaml, parse_trial, set_dotted

    data = load_yaml(args.config)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("file", args.config, "a YAML mapping of trial settings")
    for key, value in _overrides(getattr(args, "set", None) or []).items():
        set_dotted(data, key, value)
    return parse_trial(data)


def cmd_validate(args: argparse.Namespace) -> int:
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


def cmd_list(args: argparse.Namespace) -> int:
    from harness import registry

    for reg in (registry.ARCHITECTURES, registry.LOSSES, registry.AUGMENTS, registry.REGULARIZERS,
                registry.TRANSFERS, registry.METRICS, registry.DATASETS):
        print(f"{reg.kind}: {', '.join(reg.names()) or '(none yet)'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganbench", description="Benchmark data-efficient GAN training.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="trial config YAML")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a dotted config key (repeatable), e.g. optimization.iterations=100")

    p = sub.add_parser("validate", help="check a trial config without running it")
    with_config(p)
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

    p = sub.add_parser("list", help="registered variants of every kind")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CheckpointError) as err:
        print(f"ganbench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganbench: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
