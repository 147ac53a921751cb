"""ganbench table | report | leaderboard — analysis of results (no torch, no variants)."""
from __future__ import annotations

import argparse
import sys

from harness.cli.common import write_or_print
from harness.store import StudyRecord


def cmd_table(args: argparse.Namespace) -> int:
    from harness import api

    table = api.table(args.dir, args.kind, api.AnalysisOptions.from_namespace(args))
    write_or_print(table.render(args.format), args.out)
    warn(table, args)
    return 0


def warn(table, args: argparse.Namespace) -> None:
    """Fairness warnings on stderr too when the rendering carries none (CSV) or goes to a file."""
    if table.warnings and (args.format == "csv" or args.out):
        for warning in table.warnings:
            print(f"ganbench: WARNING: {warning}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    from harness import api
    from harness.storage import is_uri

    out = api.report(args.dir, api.ReportOptions.from_namespace(args), out=args.out)
    if is_uri(args.dir) and not args.out:
        print(f"report: {args.dir.rstrip('/')}/{out.name} (local copy: {out})")
    else:
        print(f"report: {out}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from harness import api

    table = api.leaderboard(args.dirs, api.LeaderboardOptions.from_namespace(args))
    write_or_print(table.render(args.format), args.out)
    warn(table, args)
    return 0


def _analysis_flags(p: argparse.ArgumentParser) -> None:
    """One flag per AnalysisOptions field (tests/test_docs.py checks that none is missing)."""
    from harness.analysis.options import CIS, PHASES, TESTS
    p.add_argument("--metric", default=None,
                   help="metric key (default: the search metric, else the first measured), e.g. fid, swd")
    p.add_argument("--phase", choices=PHASES, default=None,
                   help="which trials (default: finalists if any, else the grid, else the search)")
    p.add_argument("--by", action="append", default=None, metavar="COLUMN",
                   help="group by summary columns instead of the study's cells (repeatable), e.g. augment.policy")
    p.add_argument("--baseline", default=None, help="the configuration the pairwise table compares against "
                   "(as the table prints it; default: the study's first)")
    p.add_argument("--test", choices=TESTS, default="welch", help="the significance test whose p < 0.05 is starred")
    p.add_argument("--ci", choices=CIS, default="t", help="confidence interval over seeds")
    p.add_argument("--level", type=float, default=0.95, help="confidence level")


def register(sub) -> None:
    from harness.analysis.kinds import table_kinds
    from harness.analysis.options import PHASES, PLOTLYJS

    kinds = table_kinds()
    p = sub.add_parser("table", help="a table over seeds of a study: " + ", ".join(k.name for k in kinds),
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="table kinds:\n" + "\n".join(f"  {k.name:12} {k.help}" for k in kinds))
    p.add_argument("dir", help="RESULTS/<study name> (a folder, or s3://BUCKET/PREFIX/<study name>)")
    p.add_argument("--kind", choices=[k.name for k in kinds], default="comparison")
    p.add_argument("--format", choices=["md", "latex", "html", "csv"], default="md")
    p.add_argument("--out", default=None, help="write to this file instead of stdout")
    _analysis_flags(p)
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("report", help="one self-contained HTML report of a study (works while it runs)")
    p.add_argument("dir", help="RESULTS/<study name> (a folder, or s3://BUCKET/PREFIX/<study name>)")
    p.add_argument("--out", default=None, help=f"the HTML file (default: DIR/{StudyRecord.REPORT_FILE})")
    p.add_argument("--plotlyjs", choices=PLOTLYJS, default="inline",
                   help="inline plotly.js (offline, ~5 MB more) or load it from the plotly CDN")
    p.add_argument("--no-png", dest="png", action="store_false", help="skip the static PNG export of the figures")
    _analysis_flags(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("leaderboard", help="rank configurations of one or more studies under one protocol")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="study results directories")
    p.add_argument("--metric", default=None, help="metric key (default: the first study's primary metric)")
    p.add_argument("--which", choices=["best", "final"], default="best", help="best value reached or final value")
    p.add_argument("--phase", choices=PHASES, default=None)
    p.add_argument("--level", type=float, default=0.95, help="confidence level")
    p.add_argument("--format", choices=["md", "html", "csv", "latex"], default="md")
    p.add_argument("--out", default=None, help="write to this file instead of stdout")
    p.set_defaults(func=cmd_leaderboard)
