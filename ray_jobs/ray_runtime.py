"""Starting or joining Ray: a cluster when RAY_ADDRESS (or --address) says so, else an embedded local Ray."""
from __future__ import annotations

import os

import ray


def init_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> dict:
    """Join the cluster at `address`/RAY_ADDRESS, or start a local one; returns the cluster's resources."""
    if ray.is_initialized():
        return ray.cluster_resources()
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=True)
    return ray.cluster_resources()
