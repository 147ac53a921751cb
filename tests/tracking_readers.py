"""Read back what the trackers wrote, through each tool's own reader where it has one
(TensorBoard's EventAccumulator, MLflow's client) and W&B's offline run file format."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Dict, List, Tuple


def tensorboard(folder: Path):
    """The EventAccumulator of a trial's tensorboard/ folder (purged steps hidden, as
    TensorBoard shows them)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def tb_series(acc, tag: str) -> List[Tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def tb_hparams(acc) -> Dict[str, Any]:
    """The hyperparameters of the run's HParams session."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    for content in acc.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            out = {}
            for key, value in data.session_start_info.hparams.items():
                kind = value.WhichOneof("kind")
                out[key] = getattr(value, kind)
            return out
    return {}


def _wandb_records(path: Path):
    """Records of a W&B run file (.wandb): a 7-byte header, then LevelDB-log blocks of
    32 KiB holding protobuf ``Record`` messages (whole, or split over FIRST/MIDDLE/LAST)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def wandb_runs(trial_dir: Path) -> List[Dict[str, Any]]:
    """Each offline run file of a trial (oldest first): run id, group, and history rows."""
    runs = []
    for file in sorted((trial_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        run: Dict[str, Any] = {"history": []}
        for record in _wandb_records(file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.update(id=record.run.run_id, group=record.run.run_group, project=record.run.project)
            elif kind == "history":
                run["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                                       for i in record.history.item})
        runs.append(run)
    return runs


def wandb_series(runs: List[Dict[str, Any]], key: str) -> List[Tuple[int, float]]:
    return [(row["_step"], row[key]) for run in runs for row in run["history"] if key in row]


def rows_series(rows: List[Dict[str, Any]], group: str, key: str) -> List[Tuple[int, float]]:
    return [(r["iteration"], r[group][key]) for r in rows if key in (r.get(group) or {})]


def tb_session_groups(logdir: Path) -> Dict[str, Dict[str, float]]:
    """What TensorBoard's HParams tab lists for ``logdir`` (its own backend): run -> metric
    tag -> value, one session per trial."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    tb = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux,
                               data_provider=data_provider.MultiplexerDataProvider(mux, str(logdir)))
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=1000, allowed_statuses=[
        api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING])
    response = list_session_groups.Handler(context.RequestContext(), backend_context.Context(tb), "", request).run()
    return {g.name: {m.name.tag: m.value for m in g.metric_values} for g in response.session_groups}
