"""The benchmark-suite leaderboard (``--kind suite``): configurations ranked within each
dataset, ordered by mean rank; values with CIs per dataset, one protocol per dataset, the
real-vs-real floor beside them; and the low-shot study's presets."""
import json
import math
from pathlib import Path

import pytest

from harness.analysis import build_table, load_study
from harness.analysis.options import AnalysisOptions
from harness.analysis.suite import is_suite, ranks, suite_table
from harness.errors import ConfigError
from tests.conftest import run_study_inline, tiny_config

ROOT = Path(__file__).resolve().parents[1]


def suite_study():
    base = tiny_config(**{"eval.metrics": ["swd"], "eval.every": 0, "optimization.iterations": 12,
                          "sample_every": 0, "log_every": 6, "checkpoint_every": 100})
    return {"name": "suite", "base": base, "seeds": [0, 1],
            "variants": [{"name": "plain", "set": {}}, {"name": "wide", "set": {"architecture.kwargs.width": 16}},
                         {"name": "diffaug", "set": {"augment.policy": "diffaugment"}}],
            "grid": {"dataset": [{"name": "shapes", "resolution": 16, "channels": 3, "kwargs": {"count": 64}},
                                 {"name": "shapes", "resolution": 16, "channels": 3, "kwargs": {"count": 48}}]},
            "floor_splits": 2}


@pytest.fixture(scope="module")
def suite_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANBENCH_CACHE", str(root / "cache"))
        return load_study(run_study_inline(suite_study(), root / "results"))


def test_ranks_share_ties_and_follow_the_direction():
    assert ranks([3.0, 1.0, 2.0], higher_is_better=False) == [3.0, 1.0, 2.0]
    assert ranks([3.0, 1.0, 2.0], higher_is_better=True) == [1.0, 3.0, 2.0]
    assert ranks([1.0, 1.0, 0.5, 2.0], higher_is_better=False) == [2.5, 2.5, 1.0, 4.0]


def test_the_suite_ranks_within_each_dataset_and_orders_by_mean_rank(suite_results):
    assert is_suite(suite_results)
    table = suite_table(suite_results, metric="swd")
    frame = suite_results.rows()
    # the same numbers, computed here from the summary rows: mean swd per (dataset, variant)
    labels = [json.loads(v) for v in frame["labels"]]
    key = [(f"shapes(count={json.loads(lab['dataset'])['kwargs']['count']})", lab["variant"]) for lab in labels]
    means = {}
    for (ds, variant), value in zip(key, frame["best.swd"]):
        means.setdefault(ds, {}).setdefault(variant, []).append(float(value))
    mean_rank = {}
    for ds, by_variant in means.items():
        ordered = sorted(by_variant, key=lambda v: sum(by_variant[v]) / len(by_variant[v]))  # lower swd is better
        for place, variant in enumerate(ordered, start=1):
            mean_rank.setdefault(variant, []).append(place)
    want = sorted(["plain", "wide", "diffaug"], key=lambda v: sum(mean_rank[v]) / 2)  # ties: the study's order
    got = list(dict.fromkeys(table.data["configuration"]))
    assert got == want, (got, mean_rank)
    for _, row in table.data.iterrows():
        values = [v for (ds, variant), v in zip(key, frame["best.swd"])
                  if variant == row["configuration"] and ds == row["dataset"]]
        assert row["n"] == 2 and math.isclose(row["mean"], sum(values) / 2, rel_tol=1e-9)
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
        assert row["mean_rank"] == sum(mean_rank[row["configuration"]]) / 2
    assert set(table.data["dataset"]) == {"shapes(count=64)", "shapes(count=48)"}
    text = table.render("md")
    assert "real vs real (floor)" in text and "Values are never averaged across datasets" in text
    shown = [line for line in text.splitlines() if line.startswith("| ")][1:]  # past the header
    assert [line.split("|")[2].strip() for line in shown[:3]] == want and len(shown) == 4  # + the floor
    first = shown[0].split("|")
    assert first[1].strip() == "1" and float(first[3].strip(" *")) == sum(mean_rank[want[0]]) / 2
    assert build_table("suite", suite_results, AnalysisOptions(metric="swd")).render("md") == text


def test_a_study_on_one_dataset_is_not_a_suite(tmp_path):
    study = suite_study()
    study["grid"] = {"augment.policy": ["none", "diffaugment"]}
    study["variants"] = []
    results = load_study(run_study_inline(study, tmp_path / "results"))
    assert not is_suite(results)
    with pytest.raises(ConfigError, match="vary the dataset"):
        suite_table(results, metric="swd")


# ------------------------------------------------------------------ the study file
STUDY = ROOT / "studies" / "lowshot_benchmark.yaml"
PAPER_SETS = ("obama-100", "grumpy-cat-100", "panda-100")


def test_the_lowshot_cpu_preset_is_stylegan2_times_three_augmentations_times_three_seeds():
    from harness.study import load_study as load

    from harness.study.planning import plan

    trials = plan(load(STUDY, "cpu"))
    assert len(trials) == 3 * 3 * 3
    assert {t.spec.architecture.name for t in trials} == {"stylegan2"}
    assert {t.spec.augment.policy for t in trials} == {"none", "diffaugment", "ada"}
    assert {t.spec.dataset.name for t in trials} == {"emoji-faces", "lfw-faces", "unown"}
    assert {t.spec.optimization.samples for t in trials} == {12800} and {t.spec.seed for t in trials} == {0, 1, 2}
    full = plan(load(STUDY, "cpu-all"))
    assert {t.spec.dataset.name for t in full} == {"emoji-faces", "lfw-faces", "unown", "portraits"}
    assert all(t.spec.dataset.limit == 100 for t in full if t.spec.dataset.name == "portraits")
    assert [t.spec.to_dict() for t in full if t.spec.dataset.name != "portraits"] == [t.spec.to_dict() for t in trials]


def test_the_gpu_preset_validates_against_stand_ins_imported_under_the_papers_names(tmp_path, capsys):
    """The README's import commands, run on small stand-in folders: the gpu preset then
    plans the DiffAugment protocol (256 px, batch 16, 300 kimg, fid of 5,000 vs the
    training set) on them; without them it is refused naming the dataset."""
    from PIL import Image

    from harness.cli import main
    from harness.study import load_study as load
    from harness.study.planning import plan

    with pytest.raises(ConfigError) as err:
        load(STUDY, "gpu")
    assert "dataset.name" in err.value.path and "obama-100" in str(err.value)
    for i, name in enumerate(PAPER_SETS):
        folder = tmp_path / name
        folder.mkdir()
        for k in range(3):
            Image.new("RGB", (300, 300), (40 * i, 10 * k, 200)).save(folder / f"{k}.png")
        assert main(["data", "import", str(folder), "--name", name, "--resolution", "256"]) == 0
    trials = plan(load(STUDY, "gpu"))
    assert len(trials) == 27 and {t.spec.dataset.name for t in trials} == set(PAPER_SETS)
    spec = trials[0].spec
    assert (spec.dataset.resolution, spec.optimization.batch_size, spec.optimization.samples) == (256, 16, 300000)
    assert spec.eval.metrics == ["fid"] and spec.eval.n_samples == 5000 and spec.device == "cuda"
    assert [r.name for r in spec.regularizers] == ["r1", "pl"] and spec.ema.half_life_images == 10000
    readme = (ROOT / "README.md").read_text()
    for name in PAPER_SETS:
        assert f"--name {name} --resolution 256" in readme
