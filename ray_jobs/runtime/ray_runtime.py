"""Starting Ray for a job: join the cluster that --address or RAY_ADDRESS names, else start an embedded local Ray.

The embedded Ray is always a new one (`address="local"`): a plain `ray.init()` would join whatever cluster Ray's
latest-cluster file (/tmp/ray/ray_current_cluster) names, and a cluster killed without `ray stop` leaves that file
behind, so every job would hang on GCS time-outs. A named address is checked with a plain TCP connection first:
an unreachable one is a clear error within seconds instead of minutes of retries.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from .job_command import BadInput

CONNECT_TIMEOUT_S = 5.0


def init_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
             outputs: Sequence[str] = (), inputs: Sequence[str] = ()) -> dict:
    """Join or start Ray (a process that already runs Ray keeps it); returns the cluster's resources. The job's
    local outputs and inputs must be visible on every node (shared_storage.py)."""
    import ray

    from .shared_storage import require_shared_storage

    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            check_reachable(address)
            ray.init(address=address, log_to_driver=True)
        else:
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=True)
    require_shared_storage(outputs, inputs)
    return ray.cluster_resources()


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise BadInput unless something listens at the address's host and port ("auto" is Ray's to resolve)."""
    if address in ("auto", "local"):
        return
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, separator, port = host_port.rpartition(":")
    if not separator or not port.isdigit():
        raise BadInput(f"Ray address {address!r} is not host:port (or ray://host:port)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise BadInput(f"cannot reach the Ray cluster at {address} ({error.strerror or error}); check --address or "
                       "RAY_ADDRESS, or leave both unset to run on an embedded local Ray") from None
