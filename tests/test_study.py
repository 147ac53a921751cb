"""Study files without Ray: parsing, grid expansion, effective batch, search spaces,
early errors, objective values, the summary table, and the time budget of a trial."""
import json
import math
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from tests.conftest import import_stand_ins, tiny_config
from harness.errors import ConfigError
from harness.spec import get_dotted, set_dotted
from harness.study import (choice_label, finalist_trials, load_study, objective_value, parse_study, plan,
                           search_trial, suggest)
from harness.trial import run_trial


def grid_study(**extra):
    base = tiny_config(**{"eval.metrics": ["swd"], "optimization.accumulation": {"d": 2, "g": 2}})
    data = {"name": "abl", "base": base, "grid": {"augment.policy": ["none", "diffaugment"],
                                                  "regularizers": [[], [{"name": "cr", "weight": 10}]]},
            "seeds": [0, 1]}
    data.update(extra)
    return data


def search_study(**extra):
    base = tiny_config(**{"eval.metrics": ["swd"], "optimization.iterations": 40})
    data = {"name": "srch", "base": base, "search": {
        "metric": "swd", "n_trials": 6,
        "space": {
            "optimization.lr_g": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
            "regularizers": {"type": "categorical", "choices": [[], [{"name": "cr", "weight": 1.0}]]},
            "regularizers[cr].weight": {"type": "float", "low": 0.1, "high": 10, "log": True,
                                        "when": {"regularizers": [[{"name": "cr", "weight": 1.0}]]}},
        },
        "scheduler": {"name": "asha", "grace_period": 10},
        "finalists": {"k": 2, "seeds": [7, 8]}}}
    for k, v in extra.items():
        set_dotted(data, k, v)
    return data


# ---------------------------------------------------------------------------- paths
def test_paths_select_list_items_by_name_or_index():
    data = {"regularizers": [{"name": "cr", "weight": 1.0}, {"name": "lecam", "weight": 0.3}]}
    set_dotted(data, "regularizers[lecam].weight", 0.5)
    set_dotted(data, "regularizers[0].kwargs", {"a": 1})
    assert data["regularizers"][1]["weight"] == 0.5 and data["regularizers"][0]["kwargs"] == {"a": 1}
    assert get_dotted(data, "regularizers[cr].weight") == 1.0
    assert get_dotted(data, "regularizers[r1].weight", None) is None
    with pytest.raises(ConfigError, match=r"regularizers\[r1\]\.weight: .*an item named 'r1'"):
        set_dotted(data, "regularizers[r1].weight", 1)
    with pytest.raises(ConfigError, match="dotted config path"):
        set_dotted(data, "a..b", 1)


# ----------------------------------------------------------------------------- grids
def test_grid_is_the_product_times_seeds_with_stable_ids():
    study = parse_study(grid_study())
    plans = plan(study)
    assert len(plans) == 2 * 2 * 2
    assert [p.trial_id for p in plans[:3]] == ["c000-s0", "c000-s1", "c001-s0"]
    assert len({p.trial_id for p in plans}) == len(plans)
    cell = plans[2]
    assert cell.spec.augment.policy == "none" and cell.spec.regularizers[0].name == "cr"
    assert cell.labels["regularizers"] == choice_label([{"name": "cr", "weight": 10}]) and cell.labels["seed"] == 0
    assert {p.spec.seed for p in plans} == {0, 1}
    assert all(p.spec.threads == 1 for p in plans)  # from resources.cpus


def test_variants_times_grid_and_fixed_budget():
    study = parse_study(grid_study(
        variants=[{"name": "plain", "set": {}}, {"name": "lecam", "set": {"regularizers": [{"name": "lecam"}]}}],
        grid={"augment.policy": ["none", "diffaugment"]}, seeds=[3],
        fixed_budget={"iterations": 12, "seconds": 30}))
    plans = plan(study)
    assert [(p.labels["variant"], p.labels["augment.policy"]) for p in plans] == [
        ("plain", "none"), ("plain", "diffaugment"), ("lecam", "none"), ("lecam", "diffaugment")]
    assert all(p.spec.optimization.iterations == 12 and p.spec.optimization.time_budget_s == 30 for p in plans)
    assert plans[2].spec.regularizers[0].name == "lecam"


def test_hold_effective_batch_sets_accumulation():
    study = parse_study(grid_study(grid={"optimization.batch_size": [2, 4, 8]}, seeds=[0],
                                   hold_effective_batch=True))
    got = [(p.spec.optimization.batch_size, p.spec.optimization.accumulation.d, p.spec.optimization.accumulation.g)
           for p in plan(study)]
    assert got == [(2, 8, 8), (4, 4, 4), (8, 2, 2)]  # base 8 x 2 = 16 everywhere
    with pytest.raises(ConfigError, match=r"optimization.batch_size: got 3; expected a divisor of the held "
                                          r"effective batch 16"):
        parse_study(grid_study(grid={"optimization.batch_size": [3]}, hold_effective_batch=True))
    with pytest.raises(ConfigError, match=r"accumulation.d: got 1; expected batch_size x workers x accumulation.d = 16"):
        parse_study(grid_study(variants=[{"name": "v", "set": {"optimization.accumulation.d": 1}}],
                               hold_effective_batch=True))


def test_hold_effective_batch_counts_the_studys_workers():
    """The held batch is the base's batch x the study's workers x the base's accumulation:
    a base that leaves workers to resources.workers is held at what its trials run with."""
    study = parse_study(grid_study(grid={"optimization.batch_size": [2, 4, 16]}, seeds=[0],
                                   hold_effective_batch=True, resources={"workers": 2}))
    got = [(p.spec.optimization.batch_size, p.spec.optimization.workers, p.spec.optimization.accumulation.d,
            p.spec.optimization.effective_batch_d, p.spec.optimization.effective_batch_g) for p in plan(study)]
    assert got == [(2, 2, 8, 32, 32), (4, 2, 4, 32, 32), (16, 2, 1, 32, 32)]  # base 8 x 2 workers x 2
    with pytest.raises(ConfigError, match=r"optimization.batch_size: got 32; expected a divisor of the held "
                                          r"effective batch 32 \(hold_effective_batch; batch_size x 2 worker"):
        parse_study(grid_study(grid={"optimization.batch_size": [32]}, hold_effective_batch=True,
                               resources={"workers": 2}))


def test_seed_a_gpu_256_preset_is_the_gpu_preset_at_biggans_batch():
    """Seed A's comparison the author could not afford is one flag away: --preset gpu-256
    holds BigGAN's batch of 256 as 32 per GPU x 4 workers x accumulation 2, everything
    else as the gpu preset; and on one GPU as 32 x accumulation 8."""
    file = Path(__file__).resolve().parents[1] / "studies" / "transfer_ablation.yaml"
    gpu, wide = plan(load_study(file, "gpu")), plan(load_study(file, "gpu-256"))
    assert [p.trial_id for p in wide] == [p.trial_id for p in gpu] and len(wide) == 18
    assert load_study(file, "gpu-256").resources.workers == 4
    scale = ("optimization.batch_size", "optimization.accumulation", "optimization.workers")
    for g, w in zip(gpu, wide):
        o = w.spec.optimization
        assert (o.batch_size, o.workers, o.accumulation.d, o.accumulation.g) == (32, 4, 2, 2)
        assert o.effective_batch_d == o.effective_batch_g == 256 == o.samples_per_iteration
        assert g.spec.optimization.effective_batch_d == 192  # the author's 24 x 8
        same = w.spec.to_dict()
        for key in scale:  # all else is the gpu preset's
            set_dotted(same, key, get_dotted(g.spec.to_dict(), key))
        assert same == g.spec.to_dict()
    from harness.study.planning import load_plan

    planned = load_plan(file, "gpu-256")
    told = planned.overview()  # what ganbench describe prints
    assert "batch 32 x 4 workers x accumulation 2/2" in told["base"] and told["effective batch"].startswith("held at 256")
    assert told["resources (per trial)"].startswith("4 workers of 4 CPU(s), 1 GPU(s)")
    assert "(batch 32 x 4 workers x acc 2/2, " in planned.describe()
    one = plan(load_study(file, "gpu-256", {"resources.workers": 1, "base.optimization.accumulation": {"d": 8, "g": 8}}))
    assert {(p.spec.optimization.workers, p.spec.optimization.effective_batch_d) for p in one} == {(1, 256)}


@pytest.mark.parametrize("change, message", [
    ({"grid": {"augment.policy": ["none", "sparkle"]}},
     r"grid \[augment.policy=sparkle\], seed 0: augment.policy: got 'sparkle'; expected one of"),
    ({"grid": {"optimization.batch_size": [8, -1]}}, r"optimization.batch_size: got -1; expected a value >= 1"),
    ({"grid": {"augment.policy": []}}, r"grid.augment.policy: got \[\]; expected a non-empty list"),
    ({"grid": {"seed": [1, 2]}}, r"grid.seed: .*use seeds:"),
    ({"seeds": []}, r"seeds: got \[\]; expected a non-empty list"),
    ({"seeds": [1, 1]}, r"seeds: .*distinct seeds"),
    ({"name": "a b"}, r"name: got 'a b'"),
    ({"gird": {}}, r"gird: .*no such key; allowed keys: name, base"),
    ({"base": tiny_config(**{"optimization.lr_g": -1})}, r"base.optimization.lr_g: got -1"),
    ({"variants": [{"name": "x", "set": {"augment.policy": "none"}}]},
     r"variants\[0\].set.augment.policy: .*grid varies it"),
    ({"variants": [{"name": "x"}, {"name": "x"}]}, r"variants: .*distinct variant names"),
    ({"resources": {"gpus": 1}}, r"resources.gpus: got 1.0; expected 0 unless base.device is cuda"),
    ({"resources": {"cpus": 0}}, r"resources.cpus: got 0.0; expected a value > 0"),
    ({"fixed_budget": {}}, r"fixed_budget: got \{\}; expected iterations, samples and/or seconds"),
    ({"fixed_budget": {"seconds": 5, "clock": "cpu"}}, r"fixed_budget.clock: got .cpu.; expected one of compute, wall"),
    ({"fixed_budget": {"kimg": 5}}, r"fixed_budget.kimg"),
    ({"fixed_budget": {"samples": 8}}, r"optimization.samples: got 8; expected at least one iteration.s real images"),
])
def test_grid_errors_name_the_field(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_study(grid_study(**change))


def test_base_may_be_a_file_next_to_the_study(tmp_path):
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump(tiny_config()))
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({"name": "s", "base": "trial.yaml",
                                                         "grid": {"loss.name": ["hinge", "least_squares"]}}))
    study = load_study(tmp_path / "study.yaml")
    assert isinstance(study.base, dict) and len(plan(study)) == 2
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"name": "s", "base": "missing.yaml"}))
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_study(tmp_path / "bad.yaml")


# ---------------------------------------------------------------------------- search
def test_search_space_is_conditional():
    study = parse_study(search_study())
    assert plan(study) == []  # search trials come from the sampler
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ostudy = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {True: 0, False: 0}
    for _ in range(20):
        trial = ostudy.ask()
        overrides = suggest(study, trial)
        has_cr = overrides["regularizers"] != []
        seen[has_cr] += 1
        # the weight is sampled exactly when cr is chosen
        assert ("regularizers[cr].weight" in trial.params) == has_cr
        spec = search_trial(study, trial.number, overrides).spec
        if has_cr:
            assert spec.regularizers[0].weight == pytest.approx(trial.params["regularizers[cr].weight"])
            assert 0.1 <= spec.regularizers[0].weight <= 10
        assert 1e-5 <= spec.optimization.lr_g <= 1e-2
        ostudy.tell(trial, 1.0)
    assert seen[True] and seen[False]


def test_finalists_rerun_configs_with_fresh_seeds():
    study = parse_study(search_study())
    ranked = [("search-0003", {"optimization.lr_g": 1e-3}), ("search-0001", {"optimization.lr_g": 2e-4}),
              ("search-0002", {"optimization.lr_g": 5e-4})]
    plans = finalist_trials(study, ranked)
    assert [p.trial_id for p in plans] == ["final-0-s7", "final-0-s8", "final-1-s7", "final-1-s8"]
    assert plans[0].spec.optimization.lr_g == 1e-3 and plans[3].spec.seed == 8
    assert plans[2].labels["from"] == "search-0001"
    with_base = finalist_trials(parse_study(search_study(**{"search.finalists.baseline": True})), ranked)
    assert [p.trial_id for p in with_base][4:] == ["final-base-s7", "final-base-s8"]
    assert with_base[4].overrides == {} and with_base[4].spec.optimization.lr_g == study.base["optimization"].get(
        "lr_g", 2e-4) and with_base[5].spec.seed == 8
    from harness.analysis.results import cell_of
    assert cell_of(with_base[4].labels, "finalist") == "base (unsearched)"
    assert cell_of(with_base[0].labels, "finalist").startswith("#0 optimization.lr_g=")


@pytest.mark.parametrize("change, message", [
    ({"search.metric": "fid"}, r"search.metric: got 'fid'; expected a value key reported by the base's eval.metrics \(swd\)"),
    ({"search.space": {}}, r"search.space: got \{\}; expected at least one parameter"),
    ({"search.scheduler.grace_period": 40}, r"search.scheduler.grace_period: got 40.0; expected a value < the "
                                            r"budget \(40.0 iteration\)"),
    ({"search.mode": "up"}, r"search.mode: got 'up'; expected one of min, max"),
    ({"search.objective": "mean"}, r"search.objective: got 'mean'; expected one of best, last"),
    ({"search.sampler.name": "cmaes"}, r"search.sampler.name: got 'cmaes'; expected one of tpe, random"),
    ({"grid": {"loss.name": ["hinge"]}}, r"search: .*either a search or a grid/variants"),
    ({"base.eval.every": 0}, r"base.eval.every: got 0; expected an evaluation interval > 0"),
    ({"search.finalists.seeds": []}, r"search.finalists.seeds: got \[\]; expected a non-empty list"),
])
def test_search_errors_name_the_field(change, message):
    data = search_study()
    for k, v in change.items():
        if k == "grid":
            data["grid"] = v
        else:
            set_dotted(data, k, v)
    with pytest.raises(ConfigError, match=message):
        parse_study(data)


@pytest.mark.parametrize("param, message", [
    ({"type": "float", "low": 1.0, "high": 0.5}, r"search.space.p.high: got 0.5; expected a value > low"),
    ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, r"search.space.p.low: got 0.0; expected a value > 0"),
    ({"type": "float", "low": 0.1, "high": 1.0, "log": True, "step": 0.1}, r"search.space.p.step: .*no step"),
    ({"type": "int", "low": 1.5, "high": 4}, r"search.space.p.low: got 1.5; expected an integer"),
    ({"type": "categorical"}, r"search.space.p.choices: got None; expected a non-empty list"),
    ({"type": "categorical", "choices": [1], "low": 0}, r"search.space.p.low: got 0.0; expected nothing"),
    ({"type": "float", "choices": [1]}, r"search.space.p.choices: .*use low/high"),
    ({"type": "uniform", "low": 0, "high": 1}, r"search.space.p.type: got 'uniform'; expected one of float"),
])
def test_search_parameter_errors(param, message):
    data = search_study()
    data["search"]["space"] = {"p": param}
    with pytest.raises(ConfigError, match=message):
        parse_study(data)


def test_search_values_are_validated_against_the_trial_schema():
    data = search_study()
    data["search"]["space"]["optimization.batch_size"] = {"type": "int", "low": 0, "high": 8}
    with pytest.raises(ConfigError, match=r"search.space.optimization.batch_size=0: optimization.batch_size: "
                                          r"got 0; expected a value >= 1"):
        parse_study(data)
    data = search_study()
    data["search"]["space"]["augment.policy"] = {"type": "categorical", "choices": ["none", "sparkle"]}
    with pytest.raises(ConfigError, match=r"augment.policy=sparkle: augment.policy: got 'sparkle'"):
        parse_study(data)
    data = search_study()
    data["search"]["space"]["regularizers[cr].weight"]["when"] = {"regularizers": [[{"name": "lecam"}]]}
    with pytest.raises(ConfigError, match=r"when.regularizers: .*expected one of that parameter's choices"):
        parse_study(data)
    data = search_study()
    space = data["search"]["space"]
    data["search"]["space"] = {"regularizers[cr].weight": space["regularizers[cr].weight"],
                               "regularizers": space["regularizers"]}
    with pytest.raises(ConfigError, match=r"when.regularizers: .*a parameter listed before this one"):
        parse_study(data)


def test_objective_value_best_last_and_worst():
    row = {"metrics": {"swd": 30.0}, "best": {"swd": 20.0}}
    assert objective_value(row, "swd", "best", "min") == 20.0
    assert objective_value(row, "swd", "last", "min") == 30.0
    assert objective_value(None, "swd", "best", "min") == math.inf
    assert objective_value({"metrics": {"swd": float("nan")}}, "swd", "last", "max") == -math.inf


# --------------------------------------------------------------- runner without Ray
def test_existing_results_are_never_overwritten(tmp_path):
    from harness.runner import StudyRunner

    study = parse_study(grid_study())
    runner = StudyRunner(study, tmp_path)
    runner.prepare()
    assert (tmp_path / "abl" / "study.yaml").exists()
    with pytest.raises(ConfigError, match=r"--resume: got False; expected --resume to continue"):
        StudyRunner(study, tmp_path).prepare()
    other = parse_study(grid_study(seeds=[5]))
    with pytest.raises(ConfigError, match=r"study: .*its study.yaml differs"):
        StudyRunner(other, tmp_path, resume=True).prepare()
    StudyRunner(study, tmp_path, resume=True).prepare()  # same study + --resume: fine


def test_cli_validate_study_and_run_refusal(tmp_path, capsys):
    from harness.cli import main

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(grid_study()))
    assert main(["validate", str(f)]) == 0
    out = capsys.readouterr().out
    assert "valid study 'abl': 8 trials" in out and "c001-s1" in out
    f.write_text(yaml.safe_dump(search_study()))
    assert main(["validate", str(f)]) == 0
    assert "valid search study 'srch': 6 trials over 3 parameters" in capsys.readouterr().out
    f.write_text(yaml.safe_dump(grid_study(grid={"loss.name": ["hinge", "nope"]})))
    assert main(["run", str(f), "--results", str(tmp_path / "r")]) == 2
    assert "loss.name: got 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything was written or scheduled


# ---------------------------------------------------------------------------- summary
def test_summary_reads_records(tmp_path, capsys):
    from harness.runner import StudyRunner
    from harness.summary import write_summary

    study = parse_study(grid_study(seeds=[0]))
    runner = StudyRunner(study, tmp_path)
    runner.prepare()
    root = tmp_path / "abl"
    first = runner.plans[0]
    rec = root / "trials" / first.trial_id
    run_trial(first.spec, rec)
    (rec / "study_trial.json").write_text(json.dumps({"trial_id": first.trial_id, "phase": "grid",
                                                      "labels": first.labels}))
    frame = write_summary(root)
    assert len(frame) == 4
    done = frame.set_index("trial_id").loc[first.trial_id]
    assert done["status"] == "completed" and done["iterations"] == 20 and done["phase"] == "grid"
    assert math.isfinite(done["best.swd"]) and math.isfinite(done["final.swd"])
    assert json.loads(done["protocol.swd"])["n_fake"] == 32
    assert done["config.optimization.batch_size"] == 8 and done["effective_batch"] == 16
    assert done["wall_s"] > 0 and done["train_s"] > 0 and done["peak_rss_mb"] > 0
    assert (frame["status"] == "pending").sum() == 3
    csv = pd.read_csv(root / "summary.csv")
    assert list(csv["trial_id"]) == list(frame["trial_id"])
    js = pd.read_json(root / "summary.json")
    assert len(js) == 4
    from harness.cli import main

    capsys.readouterr()  # the study's own output (datasets, floors)
    assert main(["summary", str(root), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("trial_id,phase,status")
    assert main(["summary", str(tmp_path)]) == 2  # not a study directory


# ------------------------------------------------------------------------ time budget
def test_time_budget_ends_the_trial_with_a_final_evaluation(tmp_path):
    cfg = tiny_config(**{"optimization.iterations": 100000, "optimization.time_budget_s": 0.5,
                         "eval.metrics": ["swd"], "eval.every": 0})
    result = run_trial(cfg, tmp_path / "t")
    assert result.status == "completed" and 0 < result.iteration < 100000
    rows = [json.loads(l) for l in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iteration"] == result.iteration and "metrics" in rows[-1]
    assert rows[-1]["train_s"] >= 0.5
    status = json.loads((tmp_path / "t" / "status.json").read_text())
    assert status["budget"] == "seconds"
    assert list((tmp_path / "t" / "checkpoints").glob(f"ckpt-{result.iteration:08d}.pt"))


def test_asha_measures_iterations_or_training_seconds():
    from harness.study import base_spec, make_trial, scheduler_horizon

    study = parse_study(search_study())
    spec = make_trial(study, base_spec(study), {}, 0, "t")
    assert scheduler_horizon(study, spec) == ("iteration", 40.0)
    timed = parse_study(search_study(**{"fixed_budget": {"seconds": 30.0}, "search.scheduler.grace_period": 5}))
    spec = make_trial(timed, base_spec(timed), {}, 0, "t")
    assert spec.optimization.time_budget_s == 30.0
    assert scheduler_horizon(timed, spec) == ("compute_s", 30.0)
    wall = parse_study(search_study(**{"fixed_budget": {"seconds": 30.0, "clock": "wall"}}))
    assert scheduler_horizon(wall, make_trial(wall, base_spec(wall), {}, 0, "t")) == ("train_s", 30.0)
    with pytest.raises(ConfigError, match=r"grace_period: got 30.0; expected a value < the budget \(30.0 compute_s\)"):
        parse_study(search_study(**{"fixed_budget": {"seconds": 30.0}, "search.scheduler.grace_period": 30}))


# ---------------------------------------------------------------------------- presets
def preset_study():
    return {**grid_study(seeds=[0]), "presets": {
        "gpu": {"base.dataset.resolution": 32, "base.optimization.batch_size": 16, "seeds": [0, 1, 2],
                "base.device": "cuda",
                "fixed_budget": {"iterations": 8000}, "resources.gpus": 1},
        "cpu": {"base.optimization.iterations": 12, "fixed_budget.iterations": 10}}}


def test_a_preset_resolves_the_study_and_names_its_results():
    from harness.study import plan

    gpu = parse_study(preset_study(), preset="gpu")
    assert gpu.name == "abl-gpu" and gpu.preset == "gpu" and gpu.seeds == [0, 1, 2]
    assert gpu.base["dataset"]["resolution"] == 32 and gpu.resources.gpus == 1
    plans = plan(gpu)
    assert len(plans) == 12 and {p.spec.optimization.iterations for p in plans} == {8000}
    assert {p.spec.dataset.resolution for p in plans} == {32}
    cpu = parse_study(preset_study(), preset="cpu")
    assert cpu.name == "abl-cpu" and {p.spec.optimization.iterations for p in plan(cpu)} == {10}
    # the study as run (what study.yaml records) parses again as it is, with no --preset
    again = parse_study(cpu.to_dict())
    assert again.to_dict() == cpu.to_dict() and again.preset == "cpu"
    # a preset may name the study itself
    named = parse_study({**preset_study(), "presets": {"x": {"name": "custom"}}}, preset="x")
    assert named.name == "custom"


def test_a_preset_or_cli_set_entry_changes_one_base_key():
    # `set.a.b: v` adds the dotted entry a.b to the study's `set`: the base keeps the rest of `a`.
    study = {**preset_study(), "set": {"eval.every": 4},
             "presets": {"cpu": {"set.optimization.lr_d": 0.001, "set.architecture.kwargs.width": 8}}}
    cpu = parse_study(study, preset="cpu", overrides={"set.optimization.batch_size": 4})
    base = grid_study()["base"]
    assert cpu.base["architecture"] == {**base["architecture"], "kwargs": {**base["architecture"]["kwargs"],
                                                                          "width": 8}}
    assert cpu.base["optimization"] == {**base["optimization"], "lr_d": 0.001, "batch_size": 4}
    assert cpu.base["eval"]["every"] == 4 and cpu.base["eval"]["metrics"] == base["eval"]["metrics"]
    # a whole mapping under set still replaces that part of the base, as documented
    whole = parse_study({**study, "presets": {"cpu": {"set.eval": {"every": 0}}}}, preset="cpu")
    assert whole.base["eval"]["every"] == 0 and "metrics" not in whole.base["eval"]
    with pytest.raises(ConfigError, match="set: got 3"):
        parse_study({**study, "set": 3}, preset="cpu")


def test_preset_errors_are_early_and_name_the_choices():
    with pytest.raises(ConfigError, match=r"--preset: got None; expected one of gpu, cpu \(this study file defines"):
        parse_study(preset_study())
    with pytest.raises(ConfigError, match="--preset: got 'tpu'; expected one of gpu, cpu"):
        parse_study(preset_study(), preset="tpu")
    with pytest.raises(ConfigError, match="--preset: got 'cpu'; expected a study file that defines presets"):
        parse_study(grid_study(), preset="cpu")
    with pytest.raises(ConfigError, match="presets: got"):
        parse_study({**grid_study(), "presets": {"cpu": 3}}, preset="cpu")
    bad = {**grid_study(), "presets": {"cpu": {"base.optimization.itrations": 5}}}
    with pytest.raises(ConfigError, match="itrations"):
        parse_study(bad, preset="cpu")
    with pytest.raises(ConfigError, match="presets.cpu.regularizers\\[r1\\].weight"):
        parse_study({**grid_study(), "presets": {"cpu": {"regularizers[r1].weight": 1}}}, preset="cpu")


def test_cli_presets_and_set_on_a_base_file(tmp_path, capsys):
    from harness.cli import main

    base_file = tmp_path / "base.yaml"
    base_file.write_text(yaml.safe_dump(tiny_config(**{"eval.metrics": ["swd"]})))
    study = {**preset_study(), "base": "base.yaml"}
    f = tmp_path / "study.yaml"
    f.write_text(yaml.safe_dump(study))
    assert main(["validate", str(f), "--preset", "cpu", "--set", "base.optimization.lr_g=0.005"]) == 0
    assert "valid study 'abl-cpu': 4 trials" in capsys.readouterr().out
    loaded = parse_study(yaml.safe_load(f.read_text()), tmp_path, "cpu", {"base.optimization.lr_g": 0.005})
    assert loaded.base["optimization"]["lr_g"] == 0.005 and loaded.base["dataset"]["name"] == "shapes"
    assert main(["validate", str(f)]) == 2
    assert "--preset: got None; expected one of cpu, gpu" in capsys.readouterr().err  # yaml.safe_dump sorts keys
    assert main(["run", str(f), "--preset", "tpu", "--results", str(tmp_path / "r")]) == 2
    assert "--preset: got 'tpu'" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(["validate", str(base_file), "--preset", "cpu"]) == 2
    assert "presets belong to studies" in capsys.readouterr().err


# ----------------------------------------------------------------------- prerequisites
def source_config(**overrides):
    return tiny_config(**{"name": "src", "optimization.iterations": 10, "eval.every": 0, "eval.metrics": [],
                          "sample_every": 0, "checkpoint_every": 10, **overrides})


def transfer_study(**extra):
    base = tiny_config(**{"eval.metrics": ["swd"], "optimization.iterations": 10, "eval.every": 10,
                          "transfer": {"method": "finetune", "source": "src16"}})
    data = {"name": "tr", "base": base, "grid": {"transfer.method": ["finetune", "freezed"]},
            "sources": {"src16": source_config()}}
    data.update(extra)
    return data


def test_a_study_pretrains_its_missing_source_before_its_trials(tmp_path):
    from harness import zoo
    from harness.runner import StudyRunner

    assert zoo.list_models() == []
    study = parse_study(transfer_study())  # trials validate against the planned source
    lines = []
    runner = StudyRunner(study, tmp_path, out=lines.append)
    runner.prepare()
    assert zoo.list_models() == ["src16"]
    card = zoo.read_card(zoo.zoo_dir() / "src16")
    assert card["iterations"] == 10 and card["resolution"] == 16
    assert (tmp_path / "tr" / "sources" / "src16" / "status.json").exists()
    assert any("pretraining source model src16" in line for line in lines)
    result = run_trial(runner.plans[1].spec, tmp_path / "t")  # freezed, from the real entry now
    assert result.status == "completed"
    # a second study with the same source finds it and pretrains nothing
    lines.clear()
    StudyRunner(parse_study(transfer_study(name="tr2")), tmp_path, out=lines.append).prepare()
    assert not any("pretraining" in line for line in lines)


def test_source_errors_are_early(tmp_path):
    from harness import zoo
    from harness.runner import StudyRunner

    # a trial that does not fit the source's shapes is refused before anything is trained
    with pytest.raises(ConfigError, match=r"dataset.resolution: got 16; expected 8 \(the resolution of source model src16"):
        parse_study(transfer_study(sources={"src16": source_config(**{"dataset.resolution": 8})}))
    with pytest.raises(ConfigError, match="sources.src16.optimization.itrations"):
        parse_study(transfer_study(sources={"src16": source_config(**{"optimization.itrations": 3})}))
    with pytest.raises(ConfigError, match="sources.bad name"):
        parse_study(transfer_study(sources={"bad name": source_config()}))
    # without sources: the zoo must already hold it
    with pytest.raises(ConfigError, match="transfer.source: got 'src16'; expected a model in the zoo"):
        parse_study(transfer_study(sources={}))
    # the zoo holds src16 from another config: refused, not silently reused
    StudyRunner(parse_study(transfer_study()), tmp_path, out=lambda line: None).prepare()
    other = transfer_study(name="tr3", sources={"src16": source_config(**{"optimization.lr_g": 0.01})})
    with pytest.raises(ConfigError, match="sources.src16: .*pretrained with different optimization"):
        parse_study(other)
    assert zoo.list_models() == ["src16"]


def test_a_study_builds_the_datasets_it_uses(tmp_path):
    from harness.data.cache import dataset_path
    from harness.prepare import missing_datasets
    from harness.runner import StudyRunner

    base = tiny_config(**{"dataset": {"name": "lfw-faces", "resolution": 16, "channels": 3}, "eval.metrics": []})
    study = parse_study({"name": "lfw", "base": base, "seeds": [0, 1]})
    from harness.study import plan

    assert missing_datasets(p.spec for p in plan(study)) == [("lfw-faces", 16)]
    lines = []
    StudyRunner(study, tmp_path, out=lines.append).prepare()
    assert dataset_path("lfw-faces", 16).exists()
    assert [line for line in lines if "building dataset" in line] == [
        "[lfw] building dataset lfw-faces at 16 px (once; cached for every later trial)"]
    assert missing_datasets(p.spec for p in plan(study)) == []


def test_study_set_changes_the_base_of_every_trial(tmp_path):
    from harness.study import plan

    base_file = tmp_path / "base.yaml"
    base_file.write_text(yaml.safe_dump(tiny_config(**{"eval.metrics": ["swd"]})))
    data = {**grid_study(seeds=[0]), "base": "base.yaml", "set": {"eval.every": 5, "optimization.lr_g": 0.001},
            "presets": {"slow": {"set.eval.every": 7}}}
    study = parse_study(data, tmp_path, preset="slow")
    assert study.base["eval"]["every"] == 7 and study.base["optimization"]["lr_g"] == 0.001
    assert {p.spec.eval.every for p in plan(study)} == {7}
    assert "set" not in study.to_dict()  # folded into the base the study records
    with pytest.raises(ConfigError, match="set: got 3; expected a mapping of dotted base paths"):
        parse_study({**grid_study(), "set": 3})
    with pytest.raises(ConfigError, match="base.eval.evry"):
        parse_study({**grid_study(), "set": {"eval.evry": 3}})


def test_a_preset_can_swap_the_base_and_source_files(tmp_path):
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(tiny_config(**{"eval.metrics": ["swd"]})))
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(tiny_config(**{"eval.metrics": ["swd"],
                                                                       "dataset.resolution": 32})))
    (tmp_path / "src.yaml").write_text(yaml.safe_dump(source_config()))
    data = {"name": "swap", "base": "small.yaml", "sources": {"s16": "src.yaml"},
            "presets": {"big": {"base": "big.yaml", "base.optimization.lr_g": 0.003,
                                "sources": {"s32": "src.yaml"}, "sources.s32.dataset.resolution": 32}}}
    big = parse_study({**data, "presets": {**data["presets"], "small": {}}}, tmp_path, preset="big")
    assert big.base["dataset"]["resolution"] == 32 and big.base["optimization"]["lr_g"] == 0.003
    assert list(big.sources) == ["s32"] and big.sources["s32"]["dataset"]["resolution"] == 32
    small = parse_study({**data, "presets": {**data["presets"], "small": {}}}, tmp_path, preset="small")
    assert small.base["dataset"]["resolution"] == 16 and list(small.sources) == ["s16"]


# ------------------------------------------------------------------ shipped study files
STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))


@pytest.mark.parametrize("file", STUDIES, ids=[f.stem for f in STUDIES])
def test_every_shipped_study_validates_under_each_preset(file, tmp_path):
    """Every study file in studies/ (and each of its presets) plans without error — with an
    empty zoo, so transfer sources are validated as planned, before any pretraining."""
    from harness.study import load_study, plan

    data = yaml.safe_load(file.read_text())
    presets = list(data.get("presets") or {}) or [None]
    import_stand_ins(tmp_path)  # the datasets a gpu preset names and the README has the user import
    for preset in presets:
        study = load_study(file, preset)
        assert study.name == (data["name"] if preset is None else f"{data['name']}-{preset}")
        assert plan(study) or study.search is not None


def test_an_abandoned_search_trial_is_ended_not_left_running(tmp_path):
    """A driver killed just after Tune started a search trial but before its experiment
    snapshot: the resumed search never owns that trial. Its Optuna trial is told FAIL and
    its record, which says running, is ended as stopped with the reason."""
    from harness.runner import StudyRunner
    from harness.store import TrialRecord

    study = parse_study(search_study())
    runner = StudyRunner(study, tmp_path, out=lambda line: None)
    runner.prepare()
    ostudy = optuna.create_study(study_name="srch", storage=f"sqlite:///{runner.root / 'optuna.db'}")
    number = ostudy.ask().number
    record = TrialRecord(runner.root / "trials" / f"search-{number:04d}")
    record.create()
    record.set_status("running", iteration=0)
    runner._fail_orphaned_optuna_trials()
    assert ostudy.trials[number].state == optuna.trial.TrialState.FAIL
    status = record.status()
    assert status["status"] == "stopped" and status["error"].startswith("abandoned: the driver was killed")


def test_describe_a_study_file_says_its_plans_budgets_and_resources(tmp_path, capsys):
    import yaml

    from harness.cli import main

    path = tmp_path / "abl.yaml"
    path.write_text(yaml.safe_dump(grid_study(fixed_budget={"samples": 640}, hold_effective_batch=True,
                                              resources={"cpus": 2})))
    assert main(["describe", str(path)]) == 0
    out = capsys.readouterr().out
    assert "study: abl\nkind: grid\n" in out
    assert "budget (every trial): 640 samples" in out
    assert "effective batch: held at 16 (hold_effective_batch)" in out
    assert "resources (per trial): 2 CPU(s), 0 GPU(s), 2 thread(s)" in out
    assert "seeds: [0, 1]" in out and "trials: 8" in out
    assert "c000-s0: augment.policy=none, regularizers=[], seed=0 (batch 8 x acc 2/2, 640 samples = 40 it)" in out
    assert main(["describe", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["planned"]) == 8 and info["planned"][0]["config"]["optimization"]["samples"] == 640
    # a samples budget alone sets each trial's iterations (schedules read them)
    assert info["planned"][0]["config"]["optimization"]["iterations"] == 40
