"""The docs: a short README, the docs/ pages, and the generated references in step with
the specs and the CLI (a test fails when they disagree)."""
import re
from dataclasses import fields
from pathlib import Path

import pytest

from harness import reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# the developers' notes beside the repository, which users never see (spelled in parts so
# this file does not itself refer to them)
OUTSIDE = ["/".join(["..", "shared"]), "FINDINGS" + ".md", "SEEDS" + ".md", "DESIGN" + ".md"]


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps help at the terminal width


@pytest.mark.parametrize("page", [reference.CONFIG_PAGE, reference.CLI_PAGE])
def test_generated_reference_is_current(page, wide):
    committed = (DOCS / page).read_text()
    assert committed == reference.pages()[page], (
        f"docs/{page} is stale: run `python -m harness.reference` and commit the result")


def test_config_reference_lists_every_field_and_its_constraints(wide):
    from harness.spec import TrialSpec
    from harness.study.schema import StudySpec

    text = reference.config_reference()
    for path, *_ in list(reference.rows(TrialSpec)) + list(reference.rows(StudySpec)):
        assert f"| `{path}` |" in text
    # constraints come from the validator's metadata: a changed bound shows up here
    assert "| `dataset.resolution` | int | `32` | ≥ 4; ≤ 1024 |" in text
    assert "| `optimization.accumulation.d` | int | `1` | ≥ 1; ≤ 4096 |" in text
    assert "`search.sampler.name` | string | `tpe` | one of `tpe`, `random` |" in text


def test_reference_rows_follow_the_dataclass(wide):
    """A fault put in on purpose: a spec with another default or bound gives another row."""
    from dataclasses import dataclass, field

    @dataclass
    class Tiny:
        # How many.
        n: int = field(default=3, metadata={"min": 1})

    assert list(reference.rows(Tiny)) == [("n", "int", "`3`", "≥ 1", "How many.")]

    @dataclass
    class Tiny2:
        n: int = field(default=4, metadata={"min": 2})

    assert list(reference.rows(Tiny2)) != list(reference.rows(Tiny))


def test_readme_is_short_and_points_at_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert len(pages) >= 3
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).is_file(), target
    assert "make demo" in readme and "make test" in readme


def test_docs_links_resolve_and_nothing_refers_outside_the_repository():
    for page in [ROOT / "README.md"] + sorted(DOCS.glob("*.md")):
        text = page.read_text()
        for outside in OUTSIDE:
            assert outside not in text, f"{page.name} refers to {outside}, which is not in the repository"
        for target in re.findall(r"\]\(([^)#:]+\.md)", text):
            base = ROOT if page.name == "README.md" else DOCS
            assert (base / target).is_file(), f"{page.name} links to missing {target}"


def test_every_analysis_option_has_a_cli_flag():
    from harness.analysis.options import AnalysisOptions, ReportOptions
    from harness.cli import build_parser

    parser = build_parser()
    for command, options in (("table", AnalysisOptions), ("report", ReportOptions)):
        args = parser.parse_args([command, "DIR"])
        missing = [f.name for f in fields(options) if not hasattr(args, f.name)]
        assert not missing, f"ganbench {command} lacks flags for {missing}"
        assert options.from_namespace(args) == options()  # the CLI's defaults are the API's


def test_every_api_option_has_a_cli_flag_with_the_same_default():
    from harness import api
    from harness.cli import build_parser

    parser = build_parser()
    for argv, options in ((["validate", "F"], api.StudyOptions), (["run", "F"], api.RunOptions),
                          (["leaderboard", "DIR"], api.LeaderboardOptions),
                          (["trial", "F", "--out", "O"], api.TrialOptions)):
        args = parser.parse_args(argv)
        missing = [f.name for f in fields(options) if not hasattr(args, f.name)]
        assert not missing, f"ganbench {argv[0]} lacks flags for {missing}"
        assert options.from_namespace(args) == options(), argv[0]
