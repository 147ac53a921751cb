"""Evaluation backends (ONNX Runtime on the CPU, torch eager elsewhere) and the training
switches (channels-last, torch.compile): speed without changing what is measured."""
import json
import os
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError
from harness.interfaces import EvalContext
from harness.metrics import evaluate
from harness.precision import full_precision
from harness.metrics import extractors as ex
from harness.metrics import feature_metrics as fm
from harness.metrics import onnx_backend as ob
from harness.files import sha256_file
from tests.conftest import tiny_config


# ------------------------------------------------------------------ the real extractor
def _faces():
    from harness.data.catalog import build_dataset

    return torch.from_numpy(build_dataset("lfw-faces", 32)[1].images.copy()).float().div(127.5).sub(1)


def _context(real, fake, backend):
    def generate(n):
        for i in range(0, n, 40):
            yield fake[i:i + 40]

    return EvalContext(real=real, generate=generate, n_fake=len(fake), device=torch.device("cpu"), seed=0,
                       dataset_fingerprint="", cache={}, feature_backend=backend)


def test_fd_and_kid_of_a_real_set_agree_between_backends():
    faces = _faces()
    real, other = faces[:40], faces[40:80]
    blurred = F.avg_pool2d(other, 3, stride=1, padding=1, count_include_pad=False)
    out = {}
    for backend in ("torch", "onnxruntime"):
        out[backend] = {name: evaluate(["fd_effnet", "kid_effnet"], _context(real, fake, backend))
                        for name, fake in (("other half", other), ("blurred", blurred))}
    for name in ("other half", "blurred"):
        eager, onnx = out["torch"][name], out["onnxruntime"][name]
        for key in ("fd_effnet", "kid_effnet"):
            assert onnx["values"][key] == pytest.approx(eager["values"][key], rel=1e-3), (name, key)
        # one protocol: the backend is environment, recorded beside it
        assert onnx["protocol"] == eager["protocol"]
        assert eager["environment"]["efficientnet-lite0"]["backend"] == "torch"
        env = onnx["environment"]["efficientnet-lite0"]
        assert env["backend"] == "onnxruntime" and env["threads"] == torch.get_num_threads()
    # the metric still separates the sets on either backend
    assert out["onnxruntime"]["other half"]["values"]["fd_effnet"] < out["onnxruntime"]["blurred"]["values"]["fd_effnet"]


def test_onnx_extractor_sees_the_preprocessed_tensor_of_eager():
    """Same preprocessed input, same features: the exported graph holds the network only."""
    eager = fm.extractor("efficientnet-lite0", "bilinear224", torch.device("cpu"), "torch")
    onnx = fm.extractor("efficientnet-lite0", "bilinear224", torch.device("cpu"), "onnxruntime")
    assert onnx.backend == "onnxruntime" and eager.backend == "torch"
    images = ex.to_uint8(_faces()[:12])
    x = onnx.preprocess(images)
    assert torch.equal(x, eager.preprocess(images))
    assert x.shape == (12, 3, 224, 224) and -127 / 128 <= float(x.min()) and float(x.max()) <= 1.0  # (x - 127) / 128
    a, b = onnx.forward_uint8(images), eager.forward_uint8(images)
    assert float((a - b).abs().max()) < 1e-4 < float(b.abs().max())
    # the ONNX extractor never built the torch network (no double model per load)
    assert onnx._torch_network is None
    record = json.loads(next(ob.extractors_dir().glob("efficientnet-lite0-*.json")).read_text())
    assert record["usable"] and record["max_abs_diff"] <= ob.TOLERANCE
    assert record["weights_sha256"] == ex.EFFNET_SHA256


# ------------------------------------------------- the cache, on a small stand-in network
class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.proj = nn.Linear(8, 6)

    def forward(self, x):
        return self.proj(F.relu(self.conv(x)).mean(dim=(2, 3)))


class _Tiny(ex.FeatureExtractor):
    """A registered-extractor look-alike: verified weights, 16 px input, 6-d features."""
    name = "tiny-test"
    dim = 6
    pipelines = ("bilinear16",)
    input_size = 16
    path: Path = Path()

    def weights_file(self):
        return self.path

    def expected_weights(self):
        return sha256_file(self.path), None

    def build_network(self, state):
        net = _TinyNet()
        net.load_state_dict(state)
        return net

    def preprocess(self, images):
        return F.interpolate(images.float(), size=(16, 16), mode="bilinear", align_corners=False) / 127.5 - 1


@pytest.fixture
def tiny_extractor(tmp_path, isolated_cache):
    # a private extractors dir: these tests corrupt it
    link = isolated_cache / "extractors"
    link.unlink()
    link.mkdir()
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.save(_TinyNet().state_dict(), path)
    _Tiny.path = path
    ob._SAID.clear()
    return _Tiny


def _images(n=5):
    return torch.randint(0, 256, (n, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def _entry_files():
    onnx = list(ob.extractors_dir().glob("tiny-test-*.onnx"))
    meta = list(ob.extractors_dir().glob("tiny-test-*.json"))
    assert len(onnx) == 1 and len(meta) == 1
    return onnx[0], meta[0]


def test_cache_entry_is_made_once_and_checked_once(tiny_extractor):
    first = tiny_extractor("cpu")
    assert first.backend == "onnxruntime"
    onnx, meta = _entry_files()
    record = json.loads(meta.read_text())
    assert record["onnx_sha256"] == sha256_file(onnx) and record["usable"]
    assert record["input_shape"] == ["batch", 3, 16, 16] and record["dim"] == 6
    assert set(ob.entry_stem("tiny-test", record["weights_sha256"], 16).split("-")) >= {
        f"export{ob.EXPORT_VERSION}", f"ort{ob.onnxruntime_version()}"}
    stamp = (onnx.stat().st_mtime_ns, meta.stat().st_mtime_ns)
    second = tiny_extractor("cpu")
    assert (onnx.stat().st_mtime_ns, meta.stat().st_mtime_ns) == stamp  # not exported again
    assert second._torch_network is None  # nor compared again with an eager model
    images = _images()
    eager = tiny_extractor("cpu", backend="torch").forward_uint8(images)
    assert torch.allclose(second.forward_uint8(images), eager, atol=1e-5)
    # a batch size other than the exported example's (dynamic batch axis)
    assert second.forward_uint8(_images(1)).shape == (1, 6)


def test_corrupt_onnx_file_is_rebuilt_not_trusted(tiny_extractor):
    tiny_extractor("cpu")
    onnx, meta = _entry_files()
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    ext = tiny_extractor("cpu")
    assert ext.backend == "onnxruntime"
    assert sha256_file(onnx) == json.loads(meta.read_text())["onnx_sha256"]  # rebuilt
    eager = tiny_extractor("cpu", backend="torch").forward_uint8(_images())
    assert torch.allclose(ext.forward_uint8(_images()), eager, atol=1e-5)


def test_foreign_onnx_file_with_a_forged_record_is_rebuilt(tiny_extractor):
    tiny_extractor("cpu")
    onnx, meta = _entry_files()
    # another model (32 px input) swapped in, and its hash written into the record
    foreign = _TinyNet().eval()
    ob._export(foreign, onnx, 32)
    record = json.loads(meta.read_text())
    record["onnx_sha256"] = sha256_file(onnx)
    meta.write_text(json.dumps(record))
    ext = tiny_extractor("cpu")
    assert ext.backend == "onnxruntime"
    assert ext._onnx.shapes()[0][1:] == [3, 16, 16]
    assert json.loads(meta.read_text())["onnx_sha256"] != record["onnx_sha256"]


def test_entry_failing_the_check_is_remembered_and_eager_is_used(tiny_extractor, monkeypatch):
    monkeypatch.setattr(ob, "TOLERANCE", -1.0)  # no export can pass
    with pytest.warns(RuntimeWarning, match="ONNX Runtime is not used .*differ from torch eager"):
        first = tiny_extractor("cpu")
    assert first.backend == "torch"
    info = first.backend_info()
    assert info["backend"] == "torch" and "differ from torch eager" in info["onnxruntime_unused"]
    _, meta = _entry_files()
    record = json.loads(meta.read_text())
    assert record["usable"] is False and record["max_abs_diff"] >= 0
    stamp = meta.stat().st_mtime_ns
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per process, not at every load
        second = tiny_extractor("cpu")
    assert second.backend == "torch" and meta.stat().st_mtime_ns == stamp  # not retried
    assert torch.allclose(second.forward_uint8(_images()), first.forward_uint8(_images()))


def test_failing_export_falls_back_with_the_reason(tiny_extractor, monkeypatch):
    def broken(module, path, size):
        raise RuntimeError("exporter says no")

    monkeypatch.setattr(ob, "_export", broken)
    with pytest.warns(RuntimeWarning, match="exporter says no"):
        ext = tiny_extractor("cpu")
    assert ext.backend == "torch" and ext.forward_uint8(_images()).shape == (5, 6)


def test_backend_names_are_checked(tiny_extractor, monkeypatch):
    monkeypatch.setenv(ob.ENV_VAR, "tensorrt")
    with pytest.raises(ConfigError, match="GANBENCH_EVAL_BACKEND.*auto, torch, onnxruntime"):
        tiny_extractor("cpu")
    monkeypatch.setenv(ob.ENV_VAR, "torch")
    assert tiny_extractor("cpu").backend == "torch"
    with pytest.raises(ConfigError, match="--backend"):
        tiny_extractor("cuda", backend="onnxruntime")
    assert not list(ob.extractors_dir().glob("*.onnx"))  # nothing was exported


def test_cli_metric_threads_and_backend(tmp_path, capsys):
    from harness.cli import main

    assert main(["data", "build", "lfw-faces", "--resolution", "16"]) == 0
    capsys.readouterr()
    assert main(["metric", "--real", "lfw-faces", "--fake", "lfw-faces", "--metrics", "kid_effnet", "--n", "20",
                 "--threads", "1", "--backend", "torch", "--json"]) == 0
    eager = json.loads(capsys.readouterr().out)
    assert eager["environment"]["efficientnet-lite0"] == {
        "backend": "torch", "version": torch.__version__, "device": "cpu", "threads": 1}
    assert main(["metric", "--real", "lfw-faces", "--fake", "lfw-faces", "--metrics", "kid_effnet", "--n", "20",
                 "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "computed by: backend=onnxruntime" in text and "threads=1" in text
    before = torch.get_num_threads()
    assert main(["metric", "--real", "lfw-faces", "--fake", "lfw-faces", "--metrics", "kid_effnet", "--n", "20",
                 "--json"]) == 0
    every_core = json.loads(capsys.readouterr().out)["environment"]["efficientnet-lite0"]["threads"]
    assert every_core == (os.cpu_count() or 1)  # default: every core ...
    assert torch.get_num_threads() == before  # ... for that call only
    assert main(["metric", "--real", "lfw-faces", "--fake", "lfw-faces", "--metrics", "swd", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_full_precision_turns_tf32_off_and_restores_it():
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32)
    try:
        matmul.allow_tf32, cudnn.allow_tf32 = True, True
        with full_precision(torch.device("cuda")):  # flags only: no GPU needed
            assert (matmul.allow_tf32, cudnn.allow_tf32) == (False, False)
            assert not torch.is_autocast_enabled("cuda")
        assert (matmul.allow_tf32, cudnn.allow_tf32) == (True, True)
        with full_precision(torch.device("cpu")):
            assert matmul.allow_tf32  # CPU evaluation leaves CUDA settings alone
        torch.export.export(torch.nn.Conv2d(3, 4, 3), (torch.randn(1, 3, 8, 8),))  # torch's own readers still work
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


# --------------------------------------------------------------- the training switches
def _run(tmp_path, name, **overrides):
    from harness.store import TrialRecord
    from harness.trial import Trial
    from harness.spec import parse_trial

    cfg = tiny_config(**{"optimization.iterations": 10, "eval.every": 0, "sample_every": 0, "log_every": 5,
                         **overrides})
    trial = Trial(parse_trial(cfg), tmp_path / name)
    result = trial.run()
    assert result.status == "completed"
    return trial, TrialRecord(tmp_path / name).reports()


def test_channels_last_is_applied_recorded_and_changes_only_rounding(tmp_path):
    trial, rows = _run(tmp_path, "cl")
    assert all(r["performance"] == {"channels_last": True, "compile": False, "precision": "fp32", "allow_tf32": False,
                                    "cudnn_benchmark": False, "deterministic": False} for r in rows)
    convs = [m for m in trial.models.D.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    _, eager_rows = _run(tmp_path, "nchw", **{"performance.channels_last": False})
    assert eager_rows[0]["performance"]["channels_last"] is False
    for a, b in zip(rows, eager_rows):
        for key in ("d_loss", "g_loss"):
            assert a["losses"][key] == pytest.approx(b["losses"][key], abs=1e-3)


def test_compile_runs_and_keeps_checkpoints_compatible(tmp_path, monkeypatch):
    from harness import performance
    from harness import checkpoint as ckpt

    # dynamo with its eager backend: the compile path without minutes of C++ compilation
    monkeypatch.setattr(performance, "_compile_in_place",
                        lambda m: (m.G.compile(backend="eager"), m.D.compile(backend="eager")))
    trial, rows = _run(tmp_path, "compiled", **{"performance.compile": True})
    assert rows[-1]["performance"]["compile"] is True and rows[-1]["performance"]["compile_s"] > 0
    _, plain = _run(tmp_path, "plain")
    assert [r["losses"] for r in rows] == [r["losses"] for r in plain]  # the probe moved no RNG stream
    state = ckpt.load_latest(tmp_path / "compiled" / "checkpoints")
    assert not any("_orig_mod" in k for k in state["G"])  # same keys as eager


def test_compile_failure_falls_back_with_one_warning(tmp_path, monkeypatch):
    from harness import performance

    def failing_backend(gm, example_inputs):
        raise RuntimeError("no working C++ compiler")

    monkeypatch.setattr(performance, "_compile_in_place",
                        lambda m: (m.G.compile(backend=failing_backend), m.D.compile(backend=failing_backend)))
    with pytest.warns(RuntimeWarning, match="performance.compile.*no working C\\+\\+ compiler") as caught:
        trial, rows = _run(tmp_path, "fallback", **{"performance.compile": True})
    assert len([w for w in caught if "performance.compile" in str(w.message)]) == 1
    assert rows[-1]["performance"]["compile"] is False
    assert "no working C++ compiler" in rows[-1]["performance"]["compile_fallback"]
    assert not hasattr(trial.models.G, "_compiled_call_impl") or trial.models.G._compiled_call_impl is None
    _, plain = _run(tmp_path, "plain")
    assert [r["losses"] for r in rows] == [r["losses"] for r in plain]


def test_compile_that_cannot_double_backward_falls_back(tmp_path, monkeypatch):
    """R1 differentiates D's gradient: AOT autograd refuses that at the first backward."""
    from harness import performance

    monkeypatch.setattr(performance, "_compile_in_place",
                        lambda m: (m.G.compile(backend="aot_eager"), m.D.compile(backend="aot_eager")))
    with pytest.warns(RuntimeWarning, match="performance.compile"):
        _, rows = _run(tmp_path, "r1", **{"performance.compile": True,
                                          "regularizers": [{"name": "r1", "weight": 1.0}]})
    assert rows[-1]["performance"]["compile"] is False and rows[-1]["performance"]["compile_fallback"]


def test_config_written_before_the_performance_section_still_resumes(tmp_path):
    import yaml

    from harness.trial import run_trial

    cfg = tiny_config(**{"optimization.iterations": 10, "eval.every": 0, "sample_every": 0})
    run_trial(cfg, tmp_path / "t")
    config = yaml.safe_load((tmp_path / "t" / "config.yaml").read_text())
    config.pop("performance")  # as an older ganbench wrote it
    (tmp_path / "t" / "config.yaml").write_text(yaml.safe_dump(config))
    assert run_trial(cfg, tmp_path / "t").iteration == 10  # recognised as this trial
    with pytest.raises(ConfigError, match="out"):  # a different trial is still refused
        run_trial({**cfg, "seed": 7}, tmp_path / "t")


def test_bad_performance_values_name_the_field():
    from harness.spec import parse_trial

    with pytest.raises(ConfigError, match="performance.channels_last"):
        parse_trial(tiny_config(**{"performance.channels_last": "yes"}))
    with pytest.raises(ConfigError, match="performance.jit"):
        parse_trial(tiny_config(**{"performance.jit": True}))


# ------------------------------------------------------------ evaluation sample generation
class _SmallMemoryG(nn.Module):
    """A generator that runs out of memory above ``limit`` samples at once."""

    def __init__(self, limit):
        super().__init__()
        self.limit, self.calls = limit, []
        self.net = nn.Linear(4, 3 * 4 * 4)

    def sample_latent(self, n, generator=None, truncation=None):
        return torch.randn(n, 4, generator=generator)

    def forward(self, z):
        self.calls.append(z.shape[0])
        if z.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return torch.tanh(self.net(z)).view(-1, 3, 4, 4)


def test_evaluation_samples_fit_memory_without_changing_them():
    from harness.metrics.generation import FittingGenerator

    torch.manual_seed(0)
    roomy = _SmallMemoryG(limit=1000)
    tight = _SmallMemoryG(limit=7)
    tight.load_state_dict(roomy.state_dict())
    expected = torch.cat(list(FittingGenerator(roomy, 25, seed=3, device=torch.device("cpu"))(60)))
    with pytest.warns(RuntimeWarning, match="eval.batch_size 25 does not fit.*7 at a time") as caught:
        pieces = list(FittingGenerator(tight, 25, seed=3, device=torch.device("cpu"))(60))
    # same latents, same order; the samples equal up to float rounding (BLAS kernels differ by batch)
    assert torch.allclose(torch.cat(pieces), expected, rtol=0, atol=1e-6)
    assert max(p.shape[0] for p in pieces) == 7
    assert len([w for w in caught if "does not fit" in str(w.message)]) == 1  # 25 -> 13 -> 7, remembered
    # after the first chunk the remembered piece size is tried first: no OOM per chunk
    assert tight.calls.count(25) == 1
    with pytest.raises(torch.OutOfMemoryError):
        list(FittingGenerator(_SmallMemoryG(limit=0), 4, seed=0, device=torch.device("cpu"))(4))
