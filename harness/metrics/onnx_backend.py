"""Feature networks run by ONNX Runtime on CPU: the same verified weights, exported once.

On this kind of machine (2 CPU cores, one thread per trial) ONNX Runtime's CPU provider
runs EfficientNet-Lite0 several times faster than torch eager, with features equal to
~1e-5. The network alone is exported -- resize and normalisation stay in torch, in the
extractor's ``preprocess`` -- so both backends see the very same preprocessed tensor.

A cache entry lives under ``$GANBENCH_CACHE/extractors`` and is keyed by the weights'
SHA-256, :data:`EXPORT_VERSION` (bump it when the export code changes), and the torch and
onnxruntime versions. It is made once, under a file lock (two workers starting together
export once), and checked once, when it is made: eager torch and ONNX Runtime run a
fixed probe batch, and the entry is usable only if their features differ by at most
:data:`TOLERANCE`. An unusable entry is remembered (with its reason) so later loads fall
back to eager without exporting or comparing again. On every load the ONNX file's own
SHA-256 and its input/output shapes are checked against the entry's record; a corrupt,
truncated or foreign file is rebuilt, never trusted.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from harness.data.cache import cache_dir
from harness.errors import ConfigError
from harness.locks import hold
from harness.files import atomic_target, atomic_write_json, sha256_file

EXPORT_VERSION = 1
TOLERANCE = 1e-4  # max |feature difference| eager vs ONNX Runtime on the probe batch
PROBE_BATCH = 4
OPSET = 18
BACKENDS = ("auto", "torch", "onnxruntime")
ENV_VAR = "GANBENCH_EVAL_BACKEND"

_SAID: set = set()  # fall-back notices already given in this process


def requested_backend(backend: Optional[str] = None) -> str:
    """The backend asked for: ``backend`` if given, else $GANBENCH_EVAL_BACKEND, else auto."""
    field = "--backend" if backend else ENV_VAR
    value = backend or os.environ.get(ENV_VAR) or "auto"
    if value not in BACKENDS:
        raise ConfigError(field, value, "one of " + ", ".join(BACKENDS))
    return value


def onnxruntime_version() -> Optional[str]:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def extractors_dir() -> Path:
    return cache_dir() / "extractors"


def entry_stem(name: str, weights_sha256: str, input_size: int) -> str:
    return (f"{name}-{weights_sha256[:16]}-{input_size}px-export{EXPORT_VERSION}"
            f"-torch{torch.__version__.split('+')[0]}-ort{onnxruntime_version()}")


def say_once(message: str) -> None:
    if message not in _SAID:
        _SAID.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


class OnnxFeatureNetwork:
    """An ONNX Runtime session standing in for the extractor's torch network: float32
    N x 3 x S x S preprocessed images in, N x dim features out (on the CPU)."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.threads = options.intra_op_num_threads
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def shapes(self) -> Tuple[list, list]:
        return list(self.session.get_inputs()[0].shape), list(self.session.get_outputs()[0].shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run([self.output_name], {self.input_name: array})[0])


def _probe(input_size: int) -> torch.Tensor:
    """The fixed probe batch of the creation check (values in the preprocessed range)."""
    gen = torch.Generator().manual_seed(20261202)
    return torch.rand(PROBE_BATCH, 3, input_size, input_size, generator=gen) * 2 - 1


def _shapes_fit(net: OnnxFeatureNetwork, input_size: int, dim: int) -> bool:
    inputs, outputs = net.shapes()
    return (len(inputs) == 4 and inputs[1:] == [3, input_size, input_size] and not isinstance(inputs[0], int)
            and len(outputs) == 2 and outputs[1] == dim)


def _export(module: nn.Module, path: Path, input_size: int) -> None:
    example = _probe(input_size)[:2]
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=["images"], output_names=["features"],
                          dynamo=True, external_data=False, opset_version=OPSET, verbose=False,
                          dynamic_shapes=({0: batch},))


def _record_matches(meta: Dict[str, Any], expected: Dict[str, Any]) -> bool:
    return all(meta.get(k) == v for k, v in expected.items())


class _Entry:
    def __init__(self, name: str, weights_sha256: str, input_size: int, dim: int):
        stem = entry_stem(name, weights_sha256, input_size)
        root = extractors_dir()
        self.onnx_path = root / f"{stem}.onnx"
        self.meta_path = root / f"{stem}.json"
        self.lock_path = root / f"{stem}.lock"
        self.input_size, self.dim = input_size, dim
        self.expected = {"extractor": name, "weights_sha256": weights_sha256, "export_version": EXPORT_VERSION,
                         "torch": torch.__version__, "onnxruntime": onnxruntime_version(),
                         "input_shape": ["batch", 3, input_size, input_size], "dim": dim}

    def read(self, threads: int) -> Tuple[Optional[Dict[str, Any]], Optional[OnnxFeatureNetwork]]:
        """(record, session) of a trustworthy entry; (None, None) when it must be (re)built."""
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return None, None
        if not isinstance(meta, dict) or not _record_matches(meta, self.expected):
            return None, None
        if not meta.get("usable"):
            return meta, None
        try:
            if sha256_file(self.onnx_path) != meta.get("onnx_sha256"):
                return None, None
            net = OnnxFeatureNetwork(self.onnx_path, threads)
        except Exception:  # missing, unreadable or not a model ONNX Runtime can load
            return None, None
        if not _shapes_fit(net, self.input_size, self.dim):
            return None, None
        return meta, net

    def build(self, make_module: Callable[[], nn.Module], threads: int) -> Dict[str, Any]:
        meta: Dict[str, Any] = {**self.expected, "tolerance": TOLERANCE, "probe_batch": PROBE_BATCH,
                                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        t0 = time.perf_counter()
        try:
            module = make_module().to("cpu").eval()
            with atomic_target(self.onnx_path) as tmp:
                _export(module, tmp, self.input_size)
            meta["onnx_sha256"] = sha256_file(self.onnx_path)
            net = OnnxFeatureNetwork(self.onnx_path, threads)
            if not _shapes_fit(net, self.input_size, self.dim):
                raise ValueError(f"exported shapes {net.shapes()} are not [batch, 3, {self.input_size}, "
                                 f"{self.input_size}] -> [batch, {self.dim}]")
            probe = _probe(self.input_size)
            with torch.no_grad():
                eager = module(probe).double()
            diff = float((net(probe).double() - eager).abs().max())
            meta.update(max_abs_diff=diff, feature_scale=float(eager.abs().max()), usable=diff <= TOLERANCE,
                        reason="" if diff <= TOLERANCE else
                        f"features differ from torch eager by {diff:.3g} > {TOLERANCE:g}")
        except Exception as err:  # an exporter or runtime that cannot handle this network
            meta.update(usable=False, reason=f"export failed: {type(err).__name__}: {str(err)[:300]}")
        meta["export_s"] = round(time.perf_counter() - t0, 3)
        atomic_write_json(self.meta_path, meta)  # the record last: it vouches for the file
        return meta


def onnx_network(name: str, weights_sha256: str, input_size: int, dim: int,
                 make_module: Callable[[], nn.Module], threads: int
                 ) -> Tuple[Optional[OnnxFeatureNetwork], Dict[str, Any]]:
    """The ONNX Runtime stand-in for ``make_module()`` (exported and checked if needed),
    or (None, record) with the record's ``reason`` when eager torch must be used."""
    if onnxruntime_version() is None:
        return None, {"usable": False, "reason": "onnxruntime is not installed"}
    entry = _Entry(name, weights_sha256, input_size, dim)
    meta, net = entry.read(threads)
    if meta is None:
        with hold(entry.lock_path):
            meta, net = entry.read(threads)  # another process may have built it meanwhile
            if meta is None:
                entry.build(make_module, threads)
                meta, net = entry.read(threads)
    if meta is None:  # written but not readable back (disk full, foreign file swapped in)
        return None, {"usable": False, "reason": f"cache entry {entry.meta_path} could not be read back"}
    return net, meta
