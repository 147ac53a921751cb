"""The ``ganbench`` command line; each command group is its own module.

    studies.py   validate FILE · run STUDY [--resume] · summary DIR
    trials.py    describe FILE · trial FILE --out DIR · pretrain FILE --name N
    analysis.py  table DIR [--kind K] · report DIR · leaderboard DIR...   (no torch imported)
    assets.py    zoo list|show|export · data list|build|show|import · list · metric --real --fake

Every command reports a bad input as ``ganbench: error: <path>: got <value>; expected
<allowed>`` and exits 2, before anything is scheduled or written (docs/cli.md); a file
or permission problem (an OSError: read-only results folder, full disk) is one line and
exit 2 as well, never a traceback.
"""
from __future__ import annotations

import argparse
import errno
import sys
from typing import List, Optional

from harness.cli import analysis, assets, studies, trials
from harness.errors import CheckpointError, ConfigError, DataSourceError, UntestedVersionError, WeightsError

GROUPS = (studies, trials, analysis, assets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganbench", description="Benchmark data-efficient GAN training.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CheckpointError, DataSourceError, UntestedVersionError, WeightsError) as err:
        print(f"ganbench: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"ganbench: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganbench: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130


def describe_os_error(err: OSError) -> str:
    """``<file>: <reason>`` of a file or permission problem, on one line."""
    where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
    reason = err.strerror or str(err) or type(err).__name__
    hint = ""
    if isinstance(err, PermissionError):
        hint = " (this user may not write or read there: choose another folder or fix its permissions)"
    elif err.errno == errno.ENOSPC:
        hint = " (the disk is full: free space and rerun; finished files are intact)"
    return f"{where}: {reason}{hint}" if where else f"{reason}{hint}"


if __name__ == "__main__":
    sys.exit(main())
