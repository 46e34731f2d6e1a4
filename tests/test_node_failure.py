"""A simulated multi-node cluster (ray.cluster_utils.Cluster: a head and worker nodes, separate raylets on 127.0.0.1)
where the node holding the training workers is killed mid-run. The train job's workers are restarted on the
surviving node and resume from the last checkpoint on the storage the nodes share; the run ends at the right step.
The job's shared-storage check runs on every node first (all nodes here share this machine's disk)."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from gliner.iob import read_iob
from ray_jobs.train import TrainConfig, export_final_model, fit_model

pytestmark = pytest.mark.slow
REGISTRATION_WAIT_S = 4.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head without CPUs (as the shipped clusters have) and two 2-CPU worker nodes."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    simulated = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [simulated.add_node(num_cpus=2) for _ in range(2)]
    simulated.wait_for_nodes()
    ray.init(address=simulated.address)
    try:
        yield simulated, workers
    finally:
        ray.shutdown()
        simulated.shutdown()


@pytest.fixture(scope="module")
def train_file(tmp_path_factory, data_dir) -> Path:
    examples = read_iob(data_dir / "bioner-iob/BC5CDR/train.tsv", {"Chemical": "chemical", "Disease": "disease"})[:64]
    path = tmp_path_factory.mktemp("train") / "train.json"
    path.write_text(json.dumps(examples))
    return path


def training_node_ids() -> set[str]:
    from ray.util.state import list_actors

    return {actor.node_id for actor in list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])}


def kill_training_node_after_two_checkpoints(cluster, workers, run_dir: Path, killed: dict) -> None:
    """A checkpoint's files land on storage before Ray Train registers it, at its next poll of the workers (every
    few seconds): the node dies a few seconds after the second checkpoint, well before the run's 60 steps end."""
    deadline = time.time() + 600
    while time.time() < deadline and len(list(run_dir.glob("checkpoint_*/trainer_state.json"))) < 2:
        time.sleep(0.2)
    time.sleep(REGISTRATION_WAIT_S)
    nodes = training_node_ids()
    victim = next(node for node in workers if node.node_id in nodes)
    killed.update(node_id=victim.node_id, after=sorted(path.parent.name for path in run_dir.glob("checkpoint_*/trainer_state.json")))
    cluster.remove_node(victim, allow_graceful=False)


def test_train_job_survives_losing_a_node_and_resumes_from_shared_checkpoints(cluster, tmp_path, tiny_backbone, train_file):
    simulated, workers = cluster
    config = TrainConfig.model_validate({
        "name": "node-failure", "output": str(tmp_path / "out"), "max_steps": 60, "checkpoint_every": 5, "keep_checkpoints": 10,
        "max_failures": 2,
        "model": {"backbone": str(tiny_backbone), "hidden_size": 32, "max_width": 8, "max_len": 64},
        "data": {"train": str(train_file), "shuffle": False},
        "optim": {"lr_encoder": 5e-4, "lr_others": 5e-3, "warmup_ratio": 0.0, "schedule": "constant"},
        "scale": {"num_workers": 2, "micro_batch_size": 4, "collective_timeout_s": 60},
    })
    killed: dict = {}
    killer = threading.Thread(target=kill_training_node_after_two_checkpoints,
                              args=(simulated, workers, tmp_path / "out" / "node-failure", killed), daemon=True)
    killer.start()
    result = fit_model(config)
    killer.join(timeout=5)
    assert killed, "the training node was never killed"
    assert result.error is None
    assert result.metrics["step"] == 60
    resumed = result.metrics["resumed_from_step"]
    assert resumed is not None and 10 <= resumed < 60 and resumed % 5 == 0, killed  # a checkpoint on shared storage, not step 0
    assert killed["node_id"] not in training_node_ids()  # nothing of the run lives on the dead node
    assert sorted(metrics["step"] for _, metrics in result.best_checkpoints)[-1] == 60
    assert (export_final_model(result, tmp_path / "out") / "model.safetensors").exists()
