"""MLflow: one run per trial, nested under one run per study, on a tracking URI.

Through ``mlflow.tracking.MlflowClient`` (no global active run, so several trials in one
process never share state); ``mlflow-skinny`` is enough. The trial's run id is kept in
its record (``tracking.json``), so a resumed trial continues its run; steps the run
already holds are not sent again (MLflow cannot delete logged values).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import urlparse

from harness.errors import ConfigError
from harness.tracking.base import Tracker, register

SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks", "file")
PARAM_CHARS = 6000   # MLflow's longest parameter value
BATCH = 100          # params per log_batch (MLflow's limit; 1000 for metrics)
PARENT_TAG = "mlflow.parentRunId"
_NAME = re.compile(r"^[^\x00-\x1f]{1,500}$")
_NOT_IN_KEYS = re.compile(r"[^A-Za-z0-9_\-. :/]")  # what MLflow refuses in param, metric and tag names


def _key(name: str) -> str:
    return _NOT_IN_KEYS.sub("_", name)[:250]


@dataclass
class MlflowOptions:
    # The tracking URI: an MLflow server (http://127.0.0.1:5000), a database
    # (sqlite:///path/mlflow.db, postgresql://...), databricks, or a folder (MLflow's
    # file store, which MLflow 3 runs only with MLFLOW_ALLOW_FILE_STORE=true). Relative
    # paths are made absolute when the config is read.
    uri: str
    # The experiment (created when missing); null: the study's name, or "ganbench" for a
    # trial run alone.
    experiment: Optional[str] = None
    # Send the sample grids as artifacts (samples/).
    images: bool = True

    def validate(self, path: str) -> None:
        self.uri = normalise_uri(self.uri, f"{path}.uri")
        if self.experiment is not None and not _NAME.match(self.experiment):
            raise ConfigError(f"{path}.experiment", self.experiment, "an experiment name of 1 to 500 printable characters")


def normalise_uri(uri: str, path: str) -> str:
    """``uri`` checked, with a relative folder or SQLite file made absolute."""
    expected = ("a tracking URI: http(s)://host[:port], sqlite:///file.db, postgresql://, mysql://, mssql://, "
                "databricks, file:///folder or a folder path")
    if not uri or len(uri) > 2000 or any(ord(c) < 32 for c in uri):
        raise ConfigError(path, uri, expected)
    if uri == "databricks" or uri.startswith("databricks://"):
        return uri
    if "://" not in uri:
        if ":" in uri.split("/")[0] and not re.match(r"^[A-Za-z]:[\\/]", uri):
            raise ConfigError(path, uri, expected)  # 'http:host' and the like: a scheme without //
        return Path(uri).expanduser().resolve().as_uri()
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0].lower()
    if scheme not in SCHEMES:
        raise ConfigError(path, uri, expected)
    if scheme in ("http", "https") and not parsed.hostname:
        raise ConfigError(path, uri, expected + " (this one names no host)")
    try:
        parsed.port
    except ValueError:
        raise ConfigError(path, uri, expected + " (its port is not a number in 0..65535)") from None
    if scheme == "sqlite":
        file = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        if not file:
            raise ConfigError(path, uri, "sqlite:///relative/file.db or sqlite:////absolute/file.db")
        return "sqlite:///" + str(Path(file).expanduser().resolve())
    if scheme == "file" and not parsed.path:
        raise ConfigError(path, uri, expected + " (this one names no folder)")
    return uri


PROBE_S = 5.0  # how long an HTTP server gets to accept a connection before MLflow's retries


def _client(uri: str):
    """MLflow's client for ``uri``; an HTTP server that refuses or does not accept a TCP
    connection within PROBE_S fails now, in one line, instead of after MLflow's minutes
    of retries."""
    import socket

    from mlflow.tracking import MlflowClient

    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout=PROBE_S).close()
        except OSError as err:
            raise ConnectionError(f"{parsed.scheme}://{parsed.hostname}:{port} does not answer "
                                  f"({err.strerror or err})") from None
    return MlflowClient(tracking_uri=uri)


def experiment_id(client: Any, uri: str, name: str) -> str:
    """The experiment called ``name``, created when missing (a SQLite store keeps its
    artifacts beside the database file, not in whatever folder the process runs in)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - created meanwhile by another trial
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def experiment_name(options: MlflowOptions, study: Optional[str]) -> str:
    return options.experiment or study or "ganbench"


def _log_params(client: Any, run_id: str, params: Dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(_key(k), str(v)[:PARAM_CHARS]) for k, v in params.items()]
    for i in range(0, len(items), BATCH):
        client.log_batch(run_id, params=items[i:i + BATCH])


@register("mlflow", MlflowOptions)
class MlflowTracker(Tracker):
    package = "mlflow"
    install = "mlflow-skinny"

    @classmethod
    def start_study(cls, options: MlflowOptions, study: str, kept: Optional[str]) -> Optional[str]:
        """The study's parent run: continued when ``kept`` still exists, else created."""
        client = _client(options.uri)
        if kept:
            try:
                client.update_run(kept, status="RUNNING")
                return kept
            except Exception:  # noqa: BLE001 - deleted since: make a new one
                pass
        exp = experiment_id(client, options.uri, experiment_name(options, study))
        return client.create_run(exp, run_name=study, tags={"ganbench.study": study, "ganbench.kind": "study"}).info.run_id

    @classmethod
    def end_study(cls, options: MlflowOptions, run_id: str, status: str) -> None:
        _client(options.uri).set_terminated(run_id, "FINISHED" if status == "completed" else "FAILED")

    def start(self) -> Dict[str, Any]:
        info, options = self.info, self.options
        self.client = _client(options.uri)
        run_id = self.state.get("run_id")
        if run_id:
            self.client.update_run(run_id, status="RUNNING")
        else:
            exp = experiment_id(self.client, options.uri, experiment_name(options, info.study))
            tags = {"ganbench.trial": info.trial, "ganbench.kind": "trial"}
            if info.study:
                tags["ganbench.study"] = info.study
            if info.phase:
                tags["ganbench.phase"] = info.phase
            tags.update({_key(f"label.{k}"): str(v) for k, v in info.labels.items()})
            parent = info.parents.get(self.name)
            if parent:
                tags[PARENT_TAG] = parent
            run_id = self.client.create_run(exp, run_name=info.trial, tags=tags).info.run_id
            _log_params(self.client, run_id, self.hparams)
        self.run_id = run_id
        return {"run_id": run_id}

    @property
    def hparams(self) -> Dict[str, Any]:
        from harness.tracking.hub import flatten

        return flatten(self.info.config)

    def log(self, step: int, values: Dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics: List[Any] = [Metric(_key(k), float(v), now, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def text(self, step: int, values: Dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(_key(k), v[:8000]) for k, v in values.items()])

    def image(self, step: int, tag: str, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path), tag)

    def finish(self, step: int, status: str, hparams: Dict[str, Any], results: Dict[str, float]) -> None:
        # the final and best values are the last points of metrics/<m> and best/<m>
        self.client.set_tag(self.run_id, "ganbench.status", status)
        self.client.set_terminated(self.run_id, {"completed": "FINISHED", "stopped": "KILLED"}.get(status, "FAILED"))
