"""Storage every node sees: a job's local paths must be visible on every node of a cluster of more than one.

A Ray Data task or a Ray Train worker reads its input and writes its output on whatever node it runs; a local path
that only the driver's machine has (the head's `outputs/`) would scatter output over the nodes' own disks, while the
driver reads back, from its own disk, what was "done". URLs (s3://, gs://, ...) are shared by nature. A local path
is checked for real: the driver leaves a probe file in it and a task on every alive node looks for it.
Nodes an autoscaler adds later are not probed: give them the same shared mount (docs/cluster.md).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from .job_command import BadInput

PROBE_TIMEOUT_S = 120.0


def is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def require_shared_storage(outputs: Sequence[str] = (), inputs: Sequence[str] = ()) -> None:
    """Raise BadInput naming the local paths some alive node does not see; a one-node cluster needs no check.

    An output directory gets a probe file (made if missing); an input is looked for as it is (never written: it may
    be read-only), and only when the driver has it (otherwise it is a hub id, or the job reports it missing)."""
    import ray

    nodes = [node for node in ray.nodes() if node["Alive"]]
    local_outputs = [_local(path) for path in outputs if path and not is_url(path)]
    local_inputs = [existing for path in inputs if path and not is_url(path) if (existing := _existing_prefix(path))]
    if len(nodes) < 2 or not (local_outputs or local_inputs):
        return
    probes = {path: _leave_probe(path) for path in local_outputs}
    looked_for = {**probes, **{path: path for path in local_inputs}}
    try:
        unseen = _unseen_by_node(nodes, list(looked_for.values()))
    finally:
        for probe in probes.values():
            Path(probe).unlink(missing_ok=True)
    if unseen:
        lost = {path for paths in unseen.values() for path in paths}
        missing = sorted(path for path, looked in looked_for.items() if looked in lost)
        raise BadInput(
            f"{', '.join(missing)}: not visible on every node of this {len(nodes)}-node cluster (missing on "
            f"{', '.join(sorted(unseen))}); on a cluster give a URL (s3://, gs://, ...) or a path on storage every node "
            "mounts (e.g. the clusters' /mnt/shared)")


def absolute_local_path(path: str | None) -> str | None:
    """A relative path that exists here, made absolute: Ray Train workers run in a folder of their own, where a
    relative model path is not found (and is then taken for a hub id). URLs, hub ids, `package:` references and
    paths that do not exist here are returned as they are."""
    if not path or is_url(path):
        return path
    local = Path(path).expanduser()
    return str(local.resolve()) if local.exists() else path


def _local(path: str) -> str:
    return str(Path(path.removeprefix("file://")).expanduser().resolve())


def _existing_prefix(path: str) -> str | None:
    """The input's path up to its first wildcard (a glob's folder), if the driver has it."""
    fixed = []
    for part in Path(path.removeprefix("file://")).expanduser().parts:
        if any(wildcard in part for wildcard in "*?["):
            break
        fixed.append(part)
    candidate = Path(*fixed).resolve() if fixed else None
    return str(candidate) if candidate is not None and candidate.exists() else None


def _leave_probe(directory: str) -> str:
    Path(directory).mkdir(parents=True, exist_ok=True)
    probe = Path(directory) / f".shared-storage-probe-{uuid.uuid4().hex}"
    probe.write_text("")
    return str(probe)


def _unseen_by_node(nodes: list[dict], paths: list[str]) -> dict[str, list[str]]:
    """{node address: the paths it cannot see}, from a zero-CPU task pinned to each alive node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0, max_retries=0)
    def missing(paths: list[str]) -> list[str]:
        return [path for path in paths if not os.path.exists(path)]

    pending = {f"{node['NodeManagerAddress']} ({node['NodeID'][:8]})": missing.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(paths) for node in nodes}
    results = dict(zip(pending, ray.get(list(pending.values()), timeout=PROBE_TIMEOUT_S)))
    return {node: lost for node, lost in results.items() if lost}
