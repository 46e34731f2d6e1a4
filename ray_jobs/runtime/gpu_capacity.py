"""Whether a Ray cluster can hold one vLLM engine: on a node it has now, or on one its autoscaler can start.

An engine needs tensor_parallel_size x pipeline_parallel_size GPUs on one node (the annotate job places them with
STRICT_PACK), of the configured accelerator type when one is set: Ray's `accelerator_type:<name>` resource, which a
running node gets from its GPU (H100, A100, L4, ...). A node type with no node yet offers what its config declares:
`ray up` on AWS fills GPU and accelerator type in from the instance type; GCP and KubeRay configs must declare them.

Ray 2.60 gives a driver no public way to list the node types an autoscaler may start. The GCS keeps a slot for
them (`ray._private.state.state.get_cluster_config()`, which Ray Data reads), but neither autoscaler of 2.60
writes it. So the node types come from that slot when it is filled, else from the autoscaling config of this
cluster's autoscaler: its monitor process runs on the head node, where `ray job submit` runs drivers. Where
neither can be read (a driver on another machine, KubeRay's autoscaler in a container of its own), nothing is
refused: the engine waits for the autoscaler.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Mapping

import yaml

ACCELERATOR_PREFIX = "accelerator_type:"
MONITOR_SCRIPTS = ("autoscaler/_private/monitor.py", "autoscaler/v2/monitor.py")  # autoscaler v1 and v2


@dataclass(frozen=True)
class EngineShape:
    """The GPUs one engine needs on one node."""

    gpus: int
    accelerator_type: str | None = None

    def fits(self, resources: Mapping[str, float]) -> bool:
        if resources.get("GPU", 0) < self.gpus:
            return False
        return not self.accelerator_type or resources.get(ACCELERATOR_PREFIX + self.accelerator_type, 0) > 0

    def __str__(self) -> str:
        kind = f"{self.accelerator_type} " if self.accelerator_type else ""
        return f"{self.gpus} {kind}GPU{'s' if self.gpus != 1 else ''} on one node"


@dataclass(frozen=True)
class Verdict:
    fits: bool  # False: neither a node nor a node type the autoscaler can start holds one engine
    reason: str


def judge(shape: EngineShape, nodes: list[Mapping[str, float]], node_types: Mapping[str, Mapping[str, float]] | None) -> Verdict:
    """`nodes`: the resources of the alive nodes; `node_types`: the declared resources of the node types the
    autoscaler can start, {} when it can start none, None when that is not known here.

    A node type counts by its declared resources only: the autoscaler starts a type for a request its declared
    resources hold (from a running node it learns CPU, GPU and memory, never an accelerator type).
    """
    if any(shape.fits(node) for node in nodes):
        return Verdict(True, f"a node of the cluster has {shape}")
    needed = f"GPU: {shape.gpus}" + (f" and {ACCELERATOR_PREFIX}{shape.accelerator_type}" if shape.accelerator_type else "")
    if node_types is None:
        return Verdict(True, f"no node has {shape} yet, and the autoscaler's node types cannot be read from this driver: "
                             f"the engine waits for a node, which the autoscaler starts only if a node type declares {needed}")
    fitting = sorted(name for name, resources in node_types.items() if shape.fits(resources))
    if fitting:
        return Verdict(True, f"no node has {shape} yet; the autoscaler can start one ({', '.join(fitting)})")
    node_list = ", ".join(f"{count} x {kind}" for kind, count in sorted(Counter(map(describe, nodes)).items()))
    if not node_types:
        return Verdict(False, f"no node has them (nodes: {node_list}) and the cluster's autoscaler cannot add nodes")
    type_list = "; ".join(f"{name}: {describe(resources)}" for name, resources in sorted(node_types.items()))
    return Verdict(False, f"no node has them (nodes: {node_list}) and no node type the autoscaler can start has them "
                          f"({type_list}); the autoscaler starts a node type for an engine only if its resources declare {needed}")


def describe(resources: Mapping[str, float]) -> str:
    if not resources:
        return "no resources declared"
    gpus = int(resources.get("GPU", 0))
    kinds = sorted(key[len(ACCELERATOR_PREFIX):] for key in resources if key.startswith(ACCELERATOR_PREFIX))
    return f"{gpus} GPU{'s' if gpus != 1 else ''}" + (f" ({', '.join(kinds)})" if kinds else "")


def cluster_verdict(shape: EngineShape) -> Verdict:
    """The verdict for the cluster this driver is connected to."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    if any(shape.fits(node) for node in nodes):
        return judge(shape, nodes, {})
    if ray.util.client.ray.is_connected():  # a Ray Client driver (ray://): the GCS and the head's processes are out of reach
        return judge(shape, nodes, None)
    return judge(shape, nodes, autoscaler_node_types(ray.get_runtime_context().gcs_address))


def autoscaler_node_types(gcs_address: str) -> dict[str, dict] | None:
    """{node type: resources} the cluster's autoscaler can start; {} when it can start none; None when unknown."""
    import ray._private.state

    reported = node_types_from_cluster_config(ray._private.state.state.get_cluster_config())
    if reported is not None:
        return reported
    monitor = _monitor_process(gcs_address)
    if monitor is None:
        return None
    arguments, cwd = monitor
    config_path = option_value(arguments, "--autoscaling-config")
    if not config_path:
        return {}  # a head started without an autoscaling config: the cluster keeps the nodes it has
    try:
        with open(os.path.join(cwd, os.path.expanduser(config_path)), encoding="utf-8") as file:
            return node_types_from_autoscaling_config(yaml.safe_load(file))
    except (OSError, yaml.YAMLError):
        return None


def node_types_from_cluster_config(cluster_config) -> dict[str, dict] | None:
    """Node groups of the GCS's cluster config (autoscaler_pb2.ClusterConfig) that may have nodes; None if unreported."""
    if cluster_config is None or not cluster_config.node_group_configs:
        return None
    return {group.name: dict(group.resources) for group in cluster_config.node_group_configs if group.max_count != 0}


def node_types_from_autoscaling_config(config: Mapping) -> dict[str, dict]:
    """Node types an autoscaling config (`ray up`'s YAML) lets the autoscaler start, with their resources.

    Defaults as the autoscaler fills them in: a type without max_workers gets the cluster's max_workers, the head's
    type gets 0.
    """
    cluster_max = config.get("max_workers", 1)
    if cluster_max == 0:
        return {}
    head_type = config.get("head_node_type")
    types = {}
    for name, spec in (config.get("available_node_types") or {}).items():
        if spec.get("max_workers", 0 if name == head_type else cluster_max) > 0:
            types[name] = dict(spec.get("resources") or {})
    return types


def _monitor_process(gcs_address: str) -> tuple[list[str], str] | None:
    """The command line and working directory of this cluster's autoscaler monitor, if it runs on this machine."""
    import psutil

    for process in psutil.process_iter(["cmdline", "cwd"]):
        arguments = process.info["cmdline"] or []
        if is_monitor_of(arguments, gcs_address):
            return arguments, process.info["cwd"] or "/"
    return None


def is_monitor_of(arguments: list[str], gcs_address: str) -> bool:
    return any(argument.endswith(MONITOR_SCRIPTS) for argument in arguments) and option_value(arguments, "--gcs-address") == gcs_address


def option_value(arguments: list[str], option: str) -> str | None:
    """The value of `--option=value` or `--option value` in a command line."""
    for index, argument in enumerate(arguments):
        if argument.startswith(option + "="):
            return argument[len(option) + 1:]
        if argument == option and index + 1 < len(arguments):
            return arguments[index + 1]
    return None
