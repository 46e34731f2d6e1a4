"""OUTPUT/_SUMMARY.json: written by every job through one function, atomically and last; a cut-off or foreign summary
is not a complete output, and the pipeline reruns such a stage and skips a complete one."""
import importlib
import inspect
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_jobs.runtime.job_summary import SUMMARY_FILE, previous_run, read_summary, write_summary
from ray_jobs.runtime.output_root import OutputRoot
from ray_jobs.pipeline import JOBS, PipelineConfig, is_complete, run
from corpus.contracts import ANNOTATIONS_SCHEMA, DOCUMENTS_SCHEMA

RAY_JOBS = Path(__file__).resolve().parents[1] / "ray_jobs"


class Config:
    def model_dump(self) -> dict:
        return {"output": "somewhere"}


def test_a_write_cut_off_by_a_crash_leaves_the_previous_file_and_no_temporary(tmp_path):
    output = OutputRoot(str(tmp_path))
    first = write_summary(output, "tag", Config(), 0.0, {"counts": {"documents": 3}})
    assert read_summary(output) == first and first["status"] == "complete" and set(first["versions"]) >= {"python", "ray"}

    def crash_half_way(handle):
        handle.write(b'{"job": "tag", "status": "compl')
        raise KeyboardInterrupt  # a kill while the bytes go out

    with pytest.raises(KeyboardInterrupt):
        output.write_with(SUMMARY_FILE, crash_half_way)
    assert read_summary(output) == first and [path.name for path in tmp_path.iterdir()] == [SUMMARY_FILE]


@pytest.mark.parametrize("content", ['{"job": "tag", "status": "compl', '{"job": "tag"}', '{"status": "failed"}', "[]", ""])
def test_only_a_summary_that_says_complete_marks_an_output_complete(tmp_path, content, capsys):
    (tmp_path / SUMMARY_FILE).write_text(content)
    assert read_summary(str(tmp_path)) is None and previous_run(str(tmp_path), overwrite=False) is None
    (tmp_path / SUMMARY_FILE).write_text(json.dumps({"job": "tag", "status": "complete"}))
    assert previous_run(str(tmp_path), overwrite=False)["skipped"] is True and "is complete" in capsys.readouterr().out
    assert previous_run(str(tmp_path), overwrite=True) is None


@pytest.mark.parametrize("module_name", sorted({module for module, _ in JOBS.values()}))
def test_every_job_writes_its_summary_through_write_summary_and_nothing_else_writes_one(module_name):
    module = importlib.import_module(f"ray_jobs.{module_name}")
    assert "write_summary(" in inspect.getsource(module) or module_name == "synthesize"  # synthesize is annotate's run
    for path in RAY_JOBS.rglob("*.py"):
        if path.name in ("job_summary.py", "output_root.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            writes = any(call in line for call in ("write_text(", "write_bytes(", "write_json(", ".open(", "open("))
            assert not (writes and "SUMMARY" in line), f"{path.name}:{number} writes a summary itself: {line.strip()}"


@pytest.mark.ray
def test_the_pipeline_reruns_a_stage_whose_summary_is_cut_off_and_skips_a_complete_one(tmp_path):
    import ray

    pq.write_table(pa.Table.from_pylist([{"doc_id": "d1", "text": "Cisplatin causes acute kidney injury.", "source": "t",
                                          "title": None, "meta": "{}"}], DOCUMENTS_SCHEMA), tmp_path / "documents.parquet")
    pq.write_table(pa.Table.from_pylist([{"doc_id": "d1", "model": "teacher", "raw_output": "{}", "relations": None, "error": None,
                                          "entities": [{"text": "acute kidney injury", "type": "disease"}]}], ANNOTATIONS_SCHEMA),
                   tmp_path / "annotations.parquet")
    root = tmp_path / "root"
    config = PipelineConfig.model_validate({"root": str(root), "local_cpus": 2, "stages": {"convert": {"overrides": [
        f"annotations={tmp_path / 'annotations.parquet'}", f"documents={tmp_path / 'documents.parquet'}"]}}})
    (root / "convert").mkdir(parents=True)
    (root / "convert" / SUMMARY_FILE).write_text('{"job": "convert", "status": "compl')  # a crash mid-write, before this change
    assert not is_complete("convert", config)
    try:
        assert run(config)["convert"]["status"] == "ran"
        summary = read_summary(str(root / "convert"))
        assert summary["job"] == "convert" and summary["counts"]["examples"] == 1
        assert run(config) == {"convert": {"status": "skipped", "seconds": 0.0}}
    finally:
        ray.shutdown()

