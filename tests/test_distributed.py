"""Data-parallel trials (harness.distributed) without Ray: two gloo processes on this CPU.

The processes are started here with torch.multiprocessing (in a study Ray Train's
TorchTrainer starts them); each writes what it computed to a file the test compares.
"""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from harness.distributed import SOLO, Workers, attach, batch_norm_layers
from harness.errors import ConfigError
from harness.spec import parse_trial
from harness.steps import discriminator_step, generator_step
from harness.store import TrialRecord
from harness.trial import Trial, run_trial
from tests.conftest import tiny_config

NO_BN = {"architecture.kwargs": {"width": 8, "z_dim": 16, "norm": "none"}}


def _worker(rank, world, init_file, job, args, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        workers = Workers.from_process_group()
        result = JOBS[job](workers, *args)
        torch.save(result, os.path.join(out, f"rank{rank}.pt"))
        dist.barrier()  # gloo aborts a process that tears its group down while a peer still talks
    finally:
        dist.destroy_process_group()


def spawn(tmp_path, job, *args, world=2):
    """Run JOBS[job](workers, *args) in ``world`` gloo processes; their results by rank."""
    out = tmp_path / f"out-{job}-{len(list(tmp_path.glob('out-*')))}"
    out.mkdir()
    init = out / "init"
    mp.spawn(_worker, args=(world, str(init), job, args, str(out)), nprocs=world, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(world)]


def _grads(module):
    return [p.grad.clone() for p in module.parameters()]


def _one_step(workers, cfg, folder):
    """One D and one G step of a freshly built trial: the gradients and losses."""
    trial = Trial(parse_trial(cfg), folder, workers=workers)
    trial.build()
    m = trial.models
    d = discriminator_step(m, trial.data, trial.sampler, trial.spec.optimization.batch_size, 2, 0, trial.device)
    g = generator_step(m, trial.sampler, trial.spec.optimization.batch_size, 2, 0, trial.device)
    return {"D": _grads(m.D), "G": _grads(m.G), "d_loss": d["d_loss"], "g_loss": g["g_loss"]}


def _train(workers, cfg, folder, until=None):
    """Train (or resume) a trial to ``until`` (None: the end); its final weights."""
    trial = Trial(parse_trial(cfg), folder, workers=workers)
    try:
        finished = trial.start()
        if finished is None:
            trial.advance(until)
    finally:
        trial.close()
    return {"G": trial.models.G.state_dict(), "G_ema": trial.models.G_ema.state_dict(),
            "iteration": trial.iteration}


def _batch_statistics(workers, folder):
    """ADA's sign statistic and LeCam's anchors after each worker saw different logits."""
    cfg = tiny_config(**{"augment.policy": "ada", "augment.kwargs": {"interval": 1},
                         "regularizers": [{"name": "lecam", "weight": 0.1}], "optimization.workers": workers.world})
    trial = Trial(parse_trial(cfg), folder, workers=workers)
    trial.build()
    m = trial.models
    sign = 1.0 if workers.rank == 0 else -1.0
    m.augment.observe(torch.full((8, 1), sign))  # rank 0's reals all "real", rank 1's all "fake"
    from harness.interfaces import DStepContext

    logits = torch.full((8, 1), 2.0 + 4.0 * workers.rank)
    ctx = DStepContext(m.D, m.augment, None, None, None, None, logits, -logits, 0)
    m.regularizers[0].d_term(ctx)
    return {"rt": m.augment.rt.clone(), "p": m.augment.p.clone(),
            "lecam": torch.stack([m.regularizers[0].anchor_real, m.regularizers[0].anchor_fake])}


JOBS = {"one_step": _one_step, "train": _train, "batch_statistics": _batch_statistics}


def test_two_workers_give_the_gradients_of_one_process_with_the_whole_batch(tmp_path):
    """2 workers x batch 8 x accumulation 2 == 1 process x batch 16 x accumulation 2,
    for D's and G's gradients and the losses, on every rank (no batch norm)."""
    single = _one_step(SOLO, tiny_config(**NO_BN, **{"optimization.batch_size": 16}), tmp_path / "one")
    ranks = spawn(tmp_path, "one_step", tiny_config(**NO_BN, **{"optimization.batch_size": 8,
                                                                "optimization.workers": 2}), str(tmp_path / "two"))
    for rank in ranks:
        for net in ("D", "G"):
            assert len(rank[net]) == len(single[net])
            for a, b in zip(rank[net], single[net]):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        for key in ("d_loss", "g_loss"):
            torch.testing.assert_close(rank[key], single[key], rtol=1e-5, atol=1e-6)


def test_a_two_worker_trial_trains_as_one_process_with_the_whole_batch(tmp_path):
    """Ten iterations (steps, EMA, reports, checkpoints): the same weights, and rank 0's
    record reports the effective batch over both workers."""
    common = {**NO_BN, "optimization.iterations": 10, "sample_every": 0, "eval.every": 0}
    single = _train(SOLO, tiny_config(**common, **{"optimization.batch_size": 16}), tmp_path / "one")
    ranks = spawn(tmp_path, "train", tiny_config(**common, **{"optimization.batch_size": 8, "optimization.workers": 2}),
                  str(tmp_path / "two"))
    for rank in ranks:
        for key, value in single["G_ema"].items():
            torch.testing.assert_close(rank["G_ema"][key], value, rtol=1e-4, atol=1e-5)
    # the workers' weights are identical to each other, bit for bit
    assert all(torch.equal(ranks[0]["G"][k], ranks[1]["G"][k]) for k in ranks[0]["G"])
    rows = TrialRecord(tmp_path / "two").reports()
    assert [r["iteration"] for r in rows] == [5, 10]  # written once (rank 0), not once per worker
    assert rows[-1]["effective_batch"] == 16 and rows[-1]["samples_seen"] == 160
    assert rows[-1]["performance"]["workers"] == 2
    assert TrialRecord(tmp_path / "two").status()["status"] == "completed"


def test_a_resumed_two_worker_trial_draws_what_an_uninterrupted_one_does(tmp_path):
    """Every rank resumes from rank 0's checkpoint, and each rank's own random streams
    (DiffAugment here) continue as if never interrupted: bit-identical weights."""
    # (no batch norm: without sync_batchnorm each worker's running statistics are its own,
    # used by nobody but rank 0, whose are checkpointed)
    cfg = tiny_config(**NO_BN, **{"optimization.workers": 2, "optimization.iterations": 20,
                                  "augment.policy": "diffaugment", "sample_every": 0, "eval.every": 0})
    straight = spawn(tmp_path, "train", cfg, str(tmp_path / "straight"))
    spawn(tmp_path, "train", cfg, str(tmp_path / "resumed"), 10)  # stops after the checkpoint at 10 (a kill)
    resumed = spawn(tmp_path, "train", cfg, str(tmp_path / "resumed"))
    assert resumed[0]["iteration"] == resumed[1]["iteration"] == 20
    for a, b in zip(straight, resumed):
        assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"])
    rows = TrialRecord(tmp_path / "resumed").reports()
    assert [r["iteration"] for r in rows] == [5, 10, 15, 20]


def test_batch_statistics_agree_across_workers(tmp_path):
    """ADA's r_t and p, and LeCam's anchors, come from every worker's batch."""
    ranks = spawn(tmp_path, "batch_statistics", str(tmp_path / "stats"))
    for rank in ranks:
        assert float(rank["rt"]) == 0.0  # +1 on rank 0 and -1 on rank 1: alone each would read +-1
        # anchors: (1 - decay) x the mean over both ranks' logits (2 and 6)
        torch.testing.assert_close(rank["lecam"], torch.tensor([0.04, -0.04]), rtol=1e-5, atol=1e-6)
    assert torch.equal(ranks[0]["p"], ranks[1]["p"])


def test_a_trial_refuses_a_worker_count_other_than_its_processes(tmp_path):
    with pytest.raises(ConfigError) as err:
        run_trial(tiny_config(**{"optimization.workers": 2}), tmp_path / "t")
    assert err.value.path == "optimization.workers" and "resources.workers" in str(err.value)


def test_workers_scale_the_effective_batch_and_the_samples_budget():
    spec = parse_trial(tiny_config(**{"optimization.workers": 4, "optimization.accumulation": {"d": 2, "g": 1},
                                      "optimization.samples": 640}))
    o = spec.optimization
    assert (o.effective_batch_d, o.effective_batch_g, o.samples_per_iteration) == (64, 32, 64)
    assert o.iteration_limit == 10


def test_sync_batchnorm_validation():
    with pytest.raises(ConfigError) as err:
        parse_trial(tiny_config(**{"performance.sync_batchnorm": True}))
    assert err.value.path == "performance.sync_batchnorm" and "CUDA" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_trial(tiny_config(**NO_BN, **{"performance.sync_batchnorm": True, "device": "cuda"}))
    assert err.value.path == "performance.sync_batchnorm" and "no batch norm" in str(err.value)
    parse_trial(tiny_config(**{"performance.sync_batchnorm": True, "device": "cuda"}))  # validates without a GPU


def test_sync_batchnorm_converts_g_and_d_keeping_their_parameters(tmp_path):
    trial = Trial(parse_trial(tiny_config()), tmp_path / "t")
    trial.build()
    m = trial.models
    before = {id(p) for p in m.G.parameters()} | {id(p) for p in m.D.parameters()}
    assert batch_norm_layers(m.G) and batch_norm_layers(m.D)
    attach(m, Workers(0, 2), sync_batchnorm=True)
    for net in (m.G, m.D):
        layers = [x for x in net.modules() if isinstance(x, torch.nn.modules.batchnorm._BatchNorm)]
        assert layers and all(isinstance(x, torch.nn.SyncBatchNorm) for x in layers)
    # the optimizers still hold every parameter
    held = {id(p) for group in (*m.opt_g.param_groups, *m.opt_d.param_groups) for p in group["params"]}
    assert before == held == {id(p) for p in m.G.parameters()} | {id(p) for p in m.D.parameters()}
    assert m.augment.workers.world == 2 and m.workers.world == 2
