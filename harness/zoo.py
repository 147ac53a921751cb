"""The model zoo: source models for transfer, as safetensors weights plus a JSON card.

A zoo entry is a directory ``<zoo>/<name>/`` holding

* ``G.safetensors`` - the generator (the EMA generator of the source trial, with its
  normalisation buffers), ``D.safetensors`` - the discriminator;
* ``card.json`` - what the weights are: architecture name and (resolved) kwargs,
  resolution, channels, z_dim, the dataset's name and fingerprint, iterations trained,
  loss, best metric values with their protocol, the full source trial config, and the
  sha256 of both weight files.

``<zoo>`` is ``$GANBENCH_ZOO`` when set, else ``<cache>/zoo`` (see
:mod:`harness.data.cache`). ``ganbench pretrain`` trains a source model and exports
it here; ``ganbench zoo export`` exports an existing trial. Transfer configs name an
entry (``transfer.source: NAME``) or give its directory. Weights load only through
safetensors, after their checksum matches the card, and only into the architecture,
resolution and channel count the card names; a mismatch is a ConfigError raised
while the trial's config is validated, before anything trains. The card itself is
checked against a schema (:class:`ZooCard`) when it is read, and the weights' tensor
names and shapes (read from the safetensors headers, no weights loaded) against the
networks the trial builds, so a card that misdescribes its weights fails validation
with the first differing tensor instead of a ``load_state_dict`` error mid-start.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

from harness.data.cache import NAME_RULE, cache_dir, valid_name
from harness.errors import ConfigError
from harness.files import atomic_write_json, sha256_file
from harness.validation import build_dataclass

CARD = "card.json"
FILES = ("G.safetensors", "D.safetensors")
FORMAT = 1
MAX_CARD_BYTES = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _architectures():
    from harness.registry import ARCHITECTURES

    return ARCHITECTURES.names()


@dataclass
class CardArchitecture:
    name: str = field(metadata={"choices": _architectures})
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class CardDataset:
    name: str
    fingerprint: Optional[str] = None
    images: Optional[int] = field(default=None, metadata={"min": 0})


@dataclass
class ZooCard:
    """The schema of card.json (format 1): what :func:`export` writes."""

    format: int = field(metadata={"choices": (FORMAT,)})
    name: str
    architecture: CardArchitecture
    resolution: int = field(metadata={"min": 4, "max": 1024})
    channels: int = field(metadata={"choices": (3, 4)})
    z_dim: int = field(metadata={"min": 1})
    dataset: CardDataset
    # weight file -> its sha256
    files: Dict[str, str]
    loss: Optional[str] = None
    iterations: int = field(default=0, metadata={"min": 0})
    status: Optional[str] = None
    best: Dict[str, Any] = field(default_factory=dict)
    protocol: Dict[str, Any] = field(default_factory=dict)
    source_trial: Optional[str] = None
    trial_config: Dict[str, Any] = field(default_factory=dict)
    created: Optional[str] = None
    ganbench: Any = None
    torch: Optional[str] = None

    def validate(self, path: str) -> None:
        if not valid_name(self.name):
            raise ConfigError(f"{path}.name", self.name, NAME_RULE)
        if sorted(self.files) != sorted(FILES):
            raise ConfigError(f"{path}.files", sorted(self.files), "exactly " + " and ".join(FILES))
        for name, digest in self.files.items():
            if not _SHA256.match(digest):
                raise ConfigError(f"{path}.files.{name}", digest, "a sha256 (64 lowercase hex digits)")
        from harness.registry import ARCHITECTURES

        ARCHITECTURES.validate_kwargs(self.architecture.name, self.architecture.kwargs, f"{path}.architecture.kwargs")


def zoo_dir() -> Path:
    root = os.environ.get("GANBENCH_ZOO")
    return Path(root).expanduser() if root else cache_dir() / "zoo"


def list_models() -> List[str]:
    root = zoo_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CARD).is_file() and not p.name.startswith("."))


def resolve(source: str, path: str = "transfer.source") -> Path:
    """The directory of zoo entry ``source`` (a name or a directory holding card.json)."""
    direct = Path(source).expanduser()
    if (os.sep in source or source.startswith(".")) and (direct / CARD).is_file():
        return direct
    if valid_name(source) and (zoo_dir() / source / CARD).is_file():
        return zoo_dir() / source
    names = list_models()
    listing = ", ".join(names) if names else "it is empty; fill it with ganbench pretrain"
    raise ConfigError(path, source, f"a model in the zoo at {zoo_dir()} ({listing}) or a directory holding {CARD}")


def read_card(entry: Path, where: str = "transfer.source") -> Dict[str, Any]:
    """The card of zoo entry ``entry``, checked against :class:`ZooCard` (ConfigError)."""
    path = Path(entry) / CARD
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CARD_BYTES + 1)
        if len(raw) > MAX_CARD_BYTES:
            raise ValueError(f"larger than {MAX_CARD_BYTES:,} bytes")
        card = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) else str(err)
        raise ConfigError(where, str(entry), f"a zoo entry with a readable {CARD} ({reason})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ConfigError(where, str(entry), f"a zoo entry of card format {FORMAT}")
    try:
        build_dataclass(ZooCard, card, CARD)
    except ConfigError as err:
        raise ConfigError(where, str(entry), f"a zoo entry with a valid {CARD} ({err})") from None
    return card


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _resolved_arch_kwargs(name: str, kwargs: Dict[str, Any], path: str) -> Dict[str, Any]:
    from harness.registry import ARCHITECTURES
    from harness.validation import to_plain

    params = ARCHITECTURES.validate_kwargs(name, kwargs, path)
    return to_plain(params) if params is not None else {}


def check_compatible(card: Dict[str, Any], spec: Any, prefix: str = "") -> None:
    """Raise ConfigError unless ``spec``'s G/D have exactly the source model's shapes."""
    src = card["name"]
    arch = card["architecture"]
    if spec.architecture.name != arch["name"]:
        raise ConfigError(f"{prefix}architecture.name", spec.architecture.name,
                          f"{arch['name']} (the architecture of source model {src})")
    mine = _resolved_arch_kwargs(spec.architecture.name, spec.architecture.kwargs, f"{prefix}architecture.kwargs")
    if mine != arch["kwargs"]:
        diff = {k: arch["kwargs"].get(k) for k in set(mine) | set(arch["kwargs"])
                if mine.get(k) != arch["kwargs"].get(k)}
        raise ConfigError(f"{prefix}architecture.kwargs", {k: mine.get(k) for k in diff},
                          f"{diff} (as source model {src} was built)")
    for key in ("resolution", "channels"):
        if getattr(spec.dataset, key) != card[key]:
            raise ConfigError(f"{prefix}dataset.{key}", getattr(spec.dataset, key),
                              f"{card[key]} (the {key} of source model {src})")


# Source models a study will pretrain before it schedules its trials (its ``sources:``),
# by name: cards built from their trial configs, so the study's trials validate against
# them now. A real zoo entry of the same name always wins. See :func:`planned`.
_PLANNED: Dict[str, Dict[str, Any]] = {}


def planned_card(name: str, spec: Any) -> Dict[str, Any]:
    """The parts of a card validation reads, for a source not trained yet."""
    return {"format": FORMAT, "name": name, "planned": True,
            "architecture": {"name": spec.architecture.name,
                             "kwargs": _resolved_arch_kwargs(spec.architecture.name, spec.architecture.kwargs,
                                                             f"sources.{name}.architecture.kwargs")},
            "resolution": spec.dataset.resolution, "channels": spec.dataset.channels}


@contextmanager
def planned(cards: Dict[str, Dict[str, Any]]) -> Iterator[None]:
    """Within the block, ``transfer.source: NAME`` validates against ``cards[NAME]`` when
    the zoo has no entry NAME yet."""
    saved = dict(_PLANNED)
    _PLANNED.update(cards)
    try:
        yield
    finally:
        _PLANNED.clear()
        _PLANNED.update(saved)


def check_source(spec: Any, method: str, prefix: str = "") -> Dict[str, Any]:
    """Validation of ``transfer.source`` for methods that start from a source model."""
    source = spec.transfer.source
    if source is None:
        names = list_models()
        raise ConfigError(f"{prefix}transfer.source", None,
                          f"a source model for transfer method {method}: a zoo name ("
                          + (", ".join(names) if names else "the zoo is empty; fill it with ganbench pretrain")
                          + ") or a zoo entry's directory")
    if source in _PLANNED and not (valid_name(source) and (zoo_dir() / source / CARD).is_file()):
        card = _PLANNED[source]
        check_compatible(card, spec, prefix)
        return card
    entry = resolve(source, f"{prefix}transfer.source")
    card = read_card(entry, f"{prefix}transfer.source")
    check_compatible(card, spec, prefix)
    check_weights(entry, card, spec, prefix)
    return card


def check_weights(entry: Path, card: Dict[str, Any], spec: Any, prefix: str = "") -> None:
    """Raise ConfigError unless both weight files hold exactly the tensors (names and
    shapes) of the networks ``spec`` builds; reads only the safetensors headers."""
    problem = _weights_problem(Path(entry), spec)
    if problem:
        raise ConfigError(f"{prefix}transfer.source", spec.transfer.source,
                          f"a zoo entry whose weights fit its card: {problem}")


def _weights_problem(entry: Path, spec: Any) -> Optional[str]:
    """What is wrong with the weights of ``entry`` for the networks of ``spec`` (None:
    nothing); the networks are the cached meta ones, the headers are a few kilobytes."""
    from safetensors import SafetensorError, safe_open

    from harness.build import meta_networks

    networks = dict(zip(FILES, meta_networks(spec)))
    what = f"{spec.architecture.name} {spec.architecture.kwargs or ''} at {spec.dataset.resolution} px".replace("  ", " ")
    for name, module in networks.items():
        path = entry / name
        try:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                found = {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}
        except (OSError, SafetensorError, ValueError) as err:
            return f"{name} is not a readable safetensors file ({type(err).__name__}: {err})"
        wanted = {k: list(v.shape) for k, v in module.state_dict().items()}
        for key in sorted(set(wanted) | set(found)):
            if key not in found:
                return f"{name} lacks tensor {key} that {what} has"
            if key not in wanted:
                return f"{name} holds tensor {key} that {what} does not have"
            if found[key] != wanted[key]:
                return f"{name} holds {key} of shape {found[key]} where {what} needs {wanted[key]}"
    return None


def fingerprint(entry: Path) -> str:
    """Identity of a source model: its name and both weight hashes."""
    card = read_card(entry)
    text = json.dumps({"name": card["name"], "files": card["files"]}, sort_keys=True)
    return card["name"] + ":" + hashlib.sha256(text.encode()).hexdigest()[:16]


def load_weights(entry: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """(G state dict, D state dict) on the CPU, after checking both against the card."""
    from safetensors.torch import load_file

    card = read_card(entry)
    out = []
    for name in FILES:
        path = entry / name
        if not path.is_file() or sha256_file(path) != card["files"][name]:
            raise ConfigError("transfer.source", str(entry),
                              f"a zoo entry whose {name} matches the sha256 in its card (missing or modified)")
        out.append(load_file(str(path), device="cpu"))
    return out[0], out[1]


# ------------------------------------------------------------------------- export
def check_new_name(name: str, root: Path, force: bool = False) -> None:
    """Refuse an invalid entry name, or one already taken unless ``force``."""
    if not valid_name(name):
        raise ConfigError("--name", name, NAME_RULE)
    if (root / name).exists() and not force:
        raise ConfigError("--name", name, f"a name not yet in the zoo at {root} (or --force to replace it)")


def _plain_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    # safetensors wants contiguous tensors that share no storage.
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def export(trial_dir: os.PathLike, name: str, zoo: Optional[os.PathLike] = None, force: bool = False) -> Path:
    """Store a trial's latest checkpoint (its EMA generator and D) as zoo entry ``name``."""
    from safetensors.torch import save_file

    from harness import checkpoint as ckpt
    from harness.registry import ARCHITECTURES
    from harness.spec import load_trial
    from harness.store import TrialRecord

    root = Path(zoo) if zoo is not None else zoo_dir()
    check_new_name(name, root, force)
    record = TrialRecord(trial_dir)
    if not record.config_path.is_file():
        raise ConfigError("trial", str(trial_dir), "a trial directory (it has no config.yaml)")
    spec = load_trial(str(record.config_path))
    state = ckpt.load_latest(record.checkpoints_dir, map_location="cpu")
    if state is None:
        raise ConfigError("trial", str(trial_dir), "a trial with at least one checkpoint")
    arch = ARCHITECTURES.build(spec.architecture.name, spec.architecture.kwargs, "architecture.name",
                               resolution=spec.dataset.resolution, channels=spec.dataset.channels)
    G = arch.make_generator()
    D = arch.make_discriminator()
    for module, key in ((G, "G_ema"), (D, "D")):
        if set(module.state_dict()) != set(state[key]):
            raise ConfigError(
                "trial", str(trial_dir),
                f"a trial whose {key} is the plain {spec.architecture.name} (transfer scratch, finetune or "
                f"freezed); transfer {spec.transfer.method} changed its structure",
            )
    G.load_state_dict(state["G_ema"])  # proves the weights fit the architecture
    D.load_state_dict(state["D"])
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    tmp = root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_plain_state(G.state_dict()), str(tmp / "G.safetensors"))
    save_file(_plain_state(D.state_dict()), str(tmp / "D.safetensors"))
    status = record.status() or {}
    reports = record.reports()
    protocol = next((r["protocol"] for r in reversed(reports) if r.get("protocol")), {})
    env = {}
    if record.env_path.is_file():
        env = json.loads(record.env_path.read_text())
    card = {
        "format": FORMAT,
        "name": name,
        "architecture": {
            "name": spec.architecture.name,
            "kwargs": _resolved_arch_kwargs(spec.architecture.name, spec.architecture.kwargs, "architecture.kwargs"),
        },
        "resolution": spec.dataset.resolution,
        "channels": spec.dataset.channels,
        "z_dim": G.z_dim,
        "dataset": {"name": spec.dataset.name, "fingerprint": env.get("dataset_fingerprint"),
                    "images": env.get("dataset_images")},
        "loss": spec.loss.name,
        "iterations": int(state["iteration"]),
        "status": status.get("status"),
        "best": state.get("best", {}),
        "protocol": protocol,
        "source_trial": str(Path(trial_dir).resolve()),
        "trial_config": spec.to_dict(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ganbench": env.get("ganbench"),
        "torch": torch.__version__,
        "files": {f: sha256_file(tmp / f) for f in FILES},
    }
    atomic_write_json(tmp / CARD, card)
    if target.exists():
        old = root / f".{name}.old-{os.getpid()}"
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return target
