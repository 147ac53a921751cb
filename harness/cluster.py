"""What a study needs from every node of a Ray cluster, checked before scheduling.

:func:`worker_env` is the part of the driver's environment every worker gets through
Ray's runtime environment (``ganbench``'s own variables and the non-secret S3 settings;
credentials stay with each node: its own variables, profile or role).

:func:`check_nodes` runs one small task on every alive node (pinned there, no CPU
reserved) that checks the node can read what the driver wrote into the results location
and write there, and holds the study's datasets and source models — or, with results on
object storage, can read their uploaded copies and write its own cache. Any node that
cannot is one ConfigError naming the node (id, address) and the path, before any trial
is scheduled. A Ray of one node on the driver's own machine (the embedded default) is not
probed: the driver has just checked all of it itself.
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from harness.errors import ConfigError

FORWARDED_PREFIXES = ("GANBENCH_",)
FORWARDED = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
             "OMP_NUM_THREADS")
PROBE_DIR = ".ganbench-probe"
PROBE_TIMEOUT_S = 120.0


def worker_env(environ: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The variables the driver passes to every Ray worker (``runtime_env.env_vars``)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k.startswith(FORWARDED_PREFIXES) or k in FORWARDED}


def probe_node(target: Dict[str, Any]) -> Dict[str, Any]:
    """Run on one node: what it cannot read or write of the study (``target`` from
    :func:`check_nodes`). Returns its host, address and problems."""
    from harness import assets
    from harness.store import StudyRecord

    problems: List[str] = []
    record = StudyRecord.open(target["uri"] or target["root"])
    probe = f"{PROBE_DIR}/{target['token']}"
    if record.remote is not None:
        try:
            if record.remote.get_bytes(probe) != target["token"].encode():
                problems.append(f"cannot see what the driver wrote to {record.remote.uri}")
            else:
                record.remote.check(write=True)
        except ConfigError as err:
            problems.append(f"cannot use {record.remote.uri} ({err.expected})")
    else:
        path = Path(target["root"]) / probe
        try:
            seen = path.read_text()
        except OSError as err:
            seen = None
            problems.append(f"cannot read the results folder {target['root']} ({err.strerror}: the driver's probe "
                            f"{path} is not there) — it must be on storage every node mounts at the same path, or "
                            "on object storage (--results s3://...)")
        if seen is not None and seen != target["token"]:
            problems.append(f"sees another results folder at {target['root']} (the driver's probe differs)")
        if seen == target["token"]:
            mine = path.with_name(f"{target['token']}-{socket.gethostname()}-{os.getpid()}")
            try:
                mine.write_text("")
                mine.unlink()
            except OSError as err:
                problems.append(f"cannot write the results folder {target['root']} ({err.strerror})")
    problems += assets.problems(target["assets"], record if record.remote is not None else None)
    return {"host": socket.gethostname(), "problems": problems}


def check_nodes(record: Any, entries: Callable[[], List[Dict[str, Any]]], timeout_s: float = PROBE_TIMEOUT_S) -> int:
    """Refuse (ConfigError) unless every alive Ray node can use the study ``record`` and
    the files ``entries()`` lists (harness.assets; called only when there are nodes to
    probe); returns how many nodes were probed (0: one local node)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    here = ray.get_runtime_context().get_node_id()
    if len(nodes) <= 1 and all(n["NodeID"] == here for n in nodes):
        return 0
    token = uuid.uuid4().hex
    probe = f"{PROBE_DIR}/{token}"
    if record.remote is not None:
        record.remote.put_bytes(probe, token.encode())
    else:
        (record.root / PROBE_DIR).mkdir(parents=True, exist_ok=True)
        (record.root / probe).write_text(token)
    target = {"uri": record.remote.uri if record.remote is not None else None, "root": str(record.root),
              "token": token, "assets": entries()}
    task = ray.remote(num_cpus=0, max_retries=0)(probe_node)
    try:
        refs = {n["NodeID"]: task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(target) for n in nodes}
        failures = []
        for node in nodes:
            name = f"node {node['NodeID'][:12]} ({node.get('NodeManagerAddress', '?')})"
            try:
                answer = ray.get(refs[node["NodeID"]], timeout=timeout_s)
            except Exception as err:  # noqa: BLE001 - a node that cannot run the probe at all
                failures.append(f"{name} did not answer the storage probe within {timeout_s:g} s "
                                f"({type(err).__name__})")
                continue
            failures += [f"{name} {p}" for p in answer["problems"]]
    finally:
        if record.remote is not None:
            record.remote.delete(probe)
        else:
            (record.root / probe).unlink(missing_ok=True)
            try:
                (record.root / PROBE_DIR).rmdir()
            except OSError:  # another driver's probe is there
                pass
    if failures:
        raise ConfigError("--results", record.where, "results and inputs every Ray node can read and write; "
                          + "; ".join(failures[:8]) + (f"; and {len(failures) - 8} more" if len(failures) > 8 else ""))
    return len(nodes)


def check_placeable(resources: Any) -> None:
    """Refuse (ConfigError, before anything is scheduled) a trial no alive node of the Ray
    cluster can hold: a trial (each worker of a multi-worker one) runs on one node, so it
    needs one node with its CPUs and GPUs, and a trial of N workers needs room for N such
    workers across the nodes at once. (A cluster that adds nodes on demand is judged by the nodes it has now: start
    one node of the kind a trial needs first.)"""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    have = [(float(r.get("CPU", 0)), float(r.get("GPU", 0))) for r in nodes]
    if any(c >= resources.cpus and g >= resources.gpus for c, g in have):
        _check_workers(resources, have)
        return
    gpus = sorted({g for _, g in have}, reverse=True)
    where = f"{len(have)} alive node(s); the most of one node: {max((c for c, _ in have), default=0):g} CPU(s), " \
            f"{gpus[0] if gpus else 0:g} GPU(s)"
    if resources.gpus and not any(g >= resources.gpus for _, g in have):
        if not gpus or gpus[0] == 0:
            raise ConfigError("resources.gpus", resources.gpus, f"0: this Ray cluster has no GPU ({where}); run on a "
                              "machine with one, or pass --address of a cluster that has GPUs")
        raise ConfigError("resources.gpus", resources.gpus, f"at most {gpus[0]:g}, the GPUs of this cluster's largest "
                          f"node (a trial runs on one node; {where})")
    raise ConfigError("resources.cpus", resources.cpus, f"a number of CPUs one node with {resources.gpus:g} GPU(s) "
                      f"has ({where})")


def _check_workers(resources: Any, have: List[Tuple[float, float]]) -> None:
    workers = int(getattr(resources, "workers", 1))
    if workers <= 1:
        return
    fit = 0  # workers the alive nodes hold at once (Ray Train places them all or none)
    for cpus, gpus in have:
        n = int(cpus / resources.cpus + 1e-9)
        if resources.gpus:
            n = min(n, int(gpus / resources.gpus + 1e-9))
        fit += n
    if fit < workers:
        raise ConfigError("resources.workers", workers, f"at most {fit}: the workers of {resources.cpus:g} CPU(s) and "
                          f"{resources.gpus:g} GPU(s) this Ray cluster holds at once ({len(have)} alive node(s) with "
                          f"{sum(c for c, _ in have):g} CPU(s) and {sum(g for _, g in have):g} GPU(s) in all)")
