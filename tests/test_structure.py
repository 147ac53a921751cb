"""The structure issue 17 asked for, checked so that it stays: module sizes, one owner of
the study folder's layout, analysis without torch, the Ray/Optuna adapter, the Plan."""
import ast
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from harness.store import StudyRecord
from tests.test_analysis import tiny_study  # noqa: F401 (a fixture: a tiny study run in-process)

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "harness"
MAX_LINES = 500


def _modules():
    return sorted(p for p in HARNESS.rglob("*.py"))


def test_no_harness_module_over_500_lines():
    big = {str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def _string_literals(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


STUDY_FILES = [StudyRecord.STUDY_FILE, StudyRecord.PLAN_FILE, StudyRecord.FINALISTS_FILE, StudyRecord.TRIAL_INFO_FILE,
               StudyRecord.ATTEMPTS_FILE, StudyRecord.OPTUNA_FILE, StudyRecord.SUMMARY_CSV, StudyRecord.SUMMARY_JSON,
               StudyRecord.REPORT_FILE]


def test_study_folder_file_names_are_literals_of_one_module_only():
    owners = {}
    for path in _modules():
        for literal in _string_literals(path):
            for name in STUDY_FILES:
                if name in literal and path.name != "store.py":
                    # docstrings may mention a file; code may not build its path
                    owners.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    docstrings = set()
    for path in _modules():
        tree = ast.parse(path.read_text())
        for node in [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]:
            doc = ast.get_docstring(node, clean=False)
            if doc:
                docstrings.add(doc)
    code = {name: {m for m in mods if not _only_in_docstrings(ROOT / m, name, docstrings)} for name, mods in owners.items()}
    code = {k: v for k, v in code.items() if v}
    assert not code, f"study-folder file names spelled outside harness/store.py: {code}"


def _only_in_docstrings(path: Path, name: str, docstrings) -> bool:
    return all(any(lit == d for d in docstrings) or name not in lit for lit in _string_literals(path))


def test_the_literal_check_can_fail(tmp_path):
    """The check above finds a file name built outside store.py (a fault put in on purpose)."""
    bad = tmp_path / "bad.py"
    bad.write_text('from pathlib import Path\n\ndef f(root):\n    return Path(root) / "plan.json"\n')
    assert not _only_in_docstrings(bad, "plan.json", set())
    good = tmp_path / "good.py"
    good.write_text('def f():\n    """Reads plan.json."""\n')
    docs = {ast.get_docstring(ast.parse(good.read_text()).body[0], clean=False)}
    assert _only_in_docstrings(good, "plan.json", docs)


def test_trial_loop_and_study_package_import_no_ray():
    code = ("import sys; import harness.trial, harness.study, harness.summary, harness.prepare; "
            "bad = [m for m in ('ray', 'optuna') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_table_report_summary_import_neither_torch_nor_variants(tiny_study, tmp_path):
    """`ganbench table`, `report`, `summary` and `leaderboard` in a fresh interpreter: they
    run, and afterwards neither torch nor any variant module is loaded."""
    script = f"""
import sys
from harness.cli import main
root = {str(tiny_study)!r}
for argv in (["table", root, "--kind", "pairwise"], ["table", root, "--kind", "ablation"], ["summary", root],
             ["leaderboard", root], ["report", root, "--no-png", "--plotlyjs", "cdn", "--out", {str(tmp_path / "r.html")!r}]):
    assert main(argv) == 0, argv
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "variants", "torchvision")))
print("LOADED", loaded)
sys.exit(1 if loaded else 0)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "LOADED []" in out.stdout


def test_directions_come_from_the_rows(tiny_study, tmp_path):
    """A value's direction is recorded with it; analysis reads it from the summary rows (not
    from a metric registry), and falls back to the name only for rows without one."""
    from harness.analysis import load_study
    from harness.analysis.results import metric_direction

    res = load_study(tiny_study)
    assert set(res.frame["direction.swd"].dropna()) == {"min"}
    row = json.loads((tiny_study / "trials" / "c000-s0" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["higher_is_better"] == {"swd": False}
    # the summary takes the direction from the row, not from the metric's name
    import shutil

    from harness.summary import summarize

    copy = tmp_path / "copy"
    shutil.copytree(tiny_study, copy)
    series = copy / "trials" / "c000-s0" / "metrics.jsonl"
    rows = [json.loads(line) for line in series.read_text().splitlines()]
    for r in rows:
        if "higher_is_better" in r:
            r["higher_is_better"] = {"swd": True}
    series.write_text("".join(json.dumps(r) + "\n" for r in rows))
    directions = summarize(copy).set_index("trial_id")["direction.swd"]
    assert directions["c000-s0"] == "max" and directions["c000-s1"] == "min"
    frame = res.frame.copy()
    frame["direction.swd"] = "max"  # a row that says otherwise wins over the name
    assert metric_direction("swd", frame) == "max"
    assert metric_direction("swd") == "min" and metric_direction("precision_effnet") == "max"
    frame.loc[frame.index[0], "direction.swd"] = "min"
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="agree on its direction"):
        metric_direction("swd", frame)


def test_study_record_owns_the_layout(tmp_path):
    record = StudyRecord(tmp_path / "s")
    assert not record.exists() and record.read_study() is None and record.read_plan() == []
    record.write_study({"name": "s", "seeds": [0]})
    record.write_plan([{"trial_id": "c000-s0", "phase": "grid", "labels": {"seed": 0}}])
    record.trial("c000-s0").root.mkdir(parents=True)
    record.write_trial_info("c000-s0", {"phase": "grid"})
    record.append_attempt("c000-s0", {"pid": 1})
    record.append_attempt("c000-s0", {"pid": 2})
    assert record.exists() and record.read_study() == {"name": "s", "seeds": [0]}
    assert record.read_plan()[0]["trial_id"] == "c000-s0"
    assert [r.root.name for r in record.trial_records()] == ["c000-s0"]
    assert record.trial_info("c000-s0") == {"phase": "grid"} and [a["pid"] for a in record.attempts("c000-s0")] == [1, 2]
    assert not record.phase_done("grid")
    record.mark_phase_done("grid")
    assert record.phase_done("grid") and not record.phase_done("search")
    assert record.optuna_url == f"sqlite:///{tmp_path / 's' / 'optuna.db'}"


# ------------------------------------------------------------------ the Ray adapter
def test_tune_adapter_internals_exist_on_the_installed_versions():
    from harness import tune_adapter

    tune_adapter.check_versions()  # the installed Ray/Optuna are tested ones
    missing = tune_adapter.missing_internals()
    assert not missing, f"Ray/Optuna internals harness/tune_adapter.py uses are gone: {missing}"


def test_tune_adapter_refuses_an_untested_ray_with_a_clear_message(monkeypatch):
    from harness import tune_adapter

    monkeypatch.delenv(tune_adapter.ALLOW_ENV, raising=False)
    with pytest.raises(tune_adapter.UntestedVersionError, match=r"ray 2\.99\.0 is not a version ganbench was tested "
                       r"with \(ray 2\.60\).*harness/tune_adapter\.py.*GANBENCH_ALLOW_UNTESTED_RAY=1"):
        tune_adapter.check_versions({"ray": "2.99.0"})
    with pytest.raises(tune_adapter.UntestedVersionError, match="optuna 6.0.0"):
        tune_adapter.check_versions({"optuna": "6.0.0"})
    tune_adapter.check_versions({"ray": "2.60.3", "optuna": "5.1.0"})  # patch releases pass
    monkeypatch.setenv(tune_adapter.ALLOW_ENV, "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tune_adapter.check_versions({"ray": "2.99.0"})
    assert any("not a version ganbench was tested with" in str(w.message) for w in caught)


def test_tune_adapter_names_a_missing_internal():
    from harness import tune_adapter

    class Bare:
        pass

    with pytest.raises(tune_adapter.UntestedVersionError, match="_local_tuner._run_config"):
        tune_adapter.set_restored_callbacks(Bare(), [])


def test_trainable_is_module_level():
    import pickle

    from harness.trainable import GanTrainable, RunSettings

    assert GanTrainable.__module__ == "harness.trainable" and GanTrainable.__qualname__ == "GanTrainable"
    assert pickle.loads(pickle.dumps(GanTrainable)) is GanTrainable
    assert pickle.loads(pickle.dumps(RunSettings("/r", "swd", "best", "min"))).metric == "swd"


# -------------------------------------------------------------------------- the Plan
def test_plan_is_computed_once_and_shared(monkeypatch, tmp_path):
    """validate, the runner and prepare use one Plan: planning a study runs its grid
    expansion exactly once per command."""
    from harness.cli import main
    from harness.study import planning

    calls = []
    real = planning._grid_trials
    monkeypatch.setattr(planning, "_grid_trials", lambda *a: calls.append(1) or real(*a))
    assert main(["validate", str(ROOT / "studies" / "ablation-shapes-cpu.yaml")]) == 0
    assert len(calls) == 1
    plan = planning.load_plan(ROOT / "studies" / "ablation-shapes-cpu.yaml")
    assert len(calls) == 2 and len(plan.trials) == 8
    from harness.runner import StudyRunner

    runner = StudyRunner(plan, tmp_path, out=lambda line: None)
    assert runner.plans is plan.trials and len(calls) == 2  # the runner does not plan again


# ------------------------------------------------------------ one preparation step
def test_a_single_trial_prepares_like_a_study(tmp_path, capsys):
    """`ganbench trial` builds a missing built-in dataset as `ganbench run` does (it used to
    refuse: "expected a built dataset"), and `ganbench metric` builds one it is given."""
    import yaml

    from harness.cli import main
    from harness.data.cache import dataset_path
    from tests.conftest import tiny_config

    config = tiny_config(**{"dataset": {"name": "lfw-faces", "resolution": 16, "channels": 3},
                            "eval.metrics": [], "optimization.iterations": 2, "sample_every": 0})
    file = tmp_path / "t.yaml"
    file.write_text(yaml.safe_dump(config))
    assert not dataset_path("lfw-faces", 16).exists()
    assert main(["trial", str(file), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert dataset_path("lfw-faces", 16).exists()
    assert "building dataset lfw-faces at 16 px" in capsys.readouterr().out
    assert not dataset_path("lfw-faces", 8).exists()
    assert main(["metric", "--real", "lfw-faces", "--fake", "lfw-faces", "--resolution", "8", "--metrics", "swd",
                 "--n", "64"]) == 0
    assert dataset_path("lfw-faces", 8).exists()


def test_a_new_table_kind_is_one_function(tiny_study, tmp_path, capsys):
    """Registering one function is all a new table kind needs: `ganbench table --kind`
    offers it and the report shows it."""
    import pandas as pd

    from harness.analysis.kinds import TABLES, table_kind
    from harness.analysis.render import Cell, Table
    from harness.cli import main

    @table_kind("statuscount", "trials per status", order=99)
    def status_count(results, options):
        counts = results.frame["status"].value_counts().sort_index()
        return Table(f"{results.name}: trials per status", ["status", "trials"],
                     [[Cell(k), Cell(str(v))] for k, v in counts.items()], pd.DataFrame(counts), name="statuscount")

    try:
        assert main(["table", str(tiny_study), "--kind", "statuscount"]) == 0
        out = capsys.readouterr().out
        assert "trials per status" in out and "| completed | 3 |" in out and "| pending | 1 |" in out
        assert main(["report", str(tiny_study), "--no-png", "--plotlyjs", "cdn", "--out", str(tmp_path / "r.html")]) == 0
        assert "trials per status" in (tmp_path / "r.html").read_text()
    finally:
        TABLES.pop("statuscount")
    assert main(["table", str(tiny_study), "--kind", "pairwise"]) == 0
    with pytest.raises(SystemExit):
        main(["table", str(tiny_study), "--kind", "statuscount"])  # gone again: argparse refuses it


def test_ganbench_run_refuses_an_untested_ray_before_writing_anything(monkeypatch, tmp_path, capsys):
    from harness import tune_adapter
    from harness.cli import main

    monkeypatch.delenv(tune_adapter.ALLOW_ENV, raising=False)
    monkeypatch.setitem(tune_adapter.TESTED, "ray", ("0.1",))
    results = tmp_path / "results"
    assert main(["run", str(ROOT / "studies" / "ablation-shapes-cpu.yaml"), "--results", str(results)]) == 2
    assert "is not a version ganbench was tested with" in capsys.readouterr().err
    assert not results.exists()
