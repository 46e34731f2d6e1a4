"""The convert job on a real local Ray: annotations and documents in Parquet and in JSON Lines, with bad rows of every
kind; examples and error rows checked exactly; the summary's counts; a rerun on a complete output skips."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ray_jobs.convert import main
from corpus.contracts import ANNOTATIONS_SCHEMA, DOCUMENTS_SCHEMA, EXAMPLES_SCHEMA

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]

DOCUMENTS = [
    {"doc_id": "d1", "text": "Anemia and IL-2 (alpha) deficiency; anemia recurs in İstanbul.", "source": "test", "title": None, "meta": "{}"},
    {"doc_id": "d2", "text": "Cisplatin causes acute kidney injury.", "source": "test", "title": "Cisplatin", "meta": "{}"},
    {"doc_id": "d3", "text": "Tamoxifen in breast cancer.", "source": "test", "title": None, "meta": "{}"},
    {"doc_id": "d4", "text": "Never annotated.", "source": "test", "title": None, "meta": "{}"},
]
FENCED = '```json\n{"entities": [{"id": 0, "text": "cisplatin", "type": "Drug"}, {"id": 1, "text": "acute kidney injury", "type": "disease"}, {"id": 2, "text": "", "type": "x"}], "relations": [{"head": 0, "tail": 1, "type": "causes"}]}\n```'


def annotation(doc_id, model="teacher", raw_output="{}", entities=None, error=None):
    return {"doc_id": doc_id, "model": model, "raw_output": raw_output, "entities": entities, "relations": None, "error": error}


ANNOTATIONS = [
    annotation("d1", entities=[{"text": "anemia", "type": " Disease "}, {"text": "IL-2 (alpha)", "type": "protein"},
                               {"text": "ia", "type": "x"}, {"text": "hepatitis", "type": "disease"}, {"text": "istanbul", "type": "place"},
                               {"text": "İstanbul", "type": "place"}]),
    annotation("d2", raw_output=FENCED),  # entities null: raw_output is parsed by the job
    annotation("d2", model="broken", raw_output='{"entities": [{"id": 0, "text": "cisplatin",'),
    annotation("d2", model="junk", raw_output="I am sorry, I cannot help."),
    annotation("d3", model="failed", error="timeout: no answer in 60 s", entities=[]),
    annotation("d3", model="silent", entities=[]),
    annotation("d9", entities=[{"text": "x", "type": "y"}]),
]
EXPECTED_EXAMPLES = {
    "d1": {"tokenized_text": ["Anemia", "and", "IL-2", "(", "alpha", ")", "deficiency", ";", "anemia", "recurs", "in", "İstanbul", "."],
                "ner": [{"start": 0, "end": 0, "label": "disease"}, {"start": 2, "end": 5, "label": "protein"},
                        {"start": 8, "end": 8, "label": "disease"}, {"start": 11, "end": 11, "label": "place"}],
                "negatives": None},
    "d2": {"tokenized_text": ["Cisplatin", "causes", "acute", "kidney", "injury", "."],
                "ner": [{"start": 0, "end": 0, "label": "drug"}, {"start": 2, "end": 4, "label": "disease"}], "negatives": None},
    "d3": {"tokenized_text": ["Tamoxifen", "in", "breast", "cancer", "."], "ner": [], "negatives": None},
}
EXPECTED_ERRORS = [
    ("d2", "broken", "raw_output_truncated_json"),
    ("d2", "junk", "raw_output_no_json_object"),
    ("d3", "failed", "annotation_error"),
    ("d9", "teacher", "missing_document"),
]


@pytest.fixture(scope="module")
def parquet_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parquet_inputs")
    (folder / "annotations").mkdir()
    pq.write_table(pa.Table.from_pylist(ANNOTATIONS[:3], ANNOTATIONS_SCHEMA), folder / "annotations/part-0.parquet")
    pq.write_table(pa.Table.from_pylist(ANNOTATIONS[3:], ANNOTATIONS_SCHEMA), folder / "annotations/part-1.parquet")
    pq.write_table(pa.Table.from_pylist(DOCUMENTS, DOCUMENTS_SCHEMA), folder / "documents.parquet")
    return folder


@pytest.fixture(scope="module")
def jsonl_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jsonl_inputs")
    lines = [json.dumps(row, ensure_ascii=False) for row in ANNOTATIONS]
    lines += ["not json at all", json.dumps({"model": "teacher", "raw_output": "{}"}), "[1, 2]",
              json.dumps({"doc_id": "d4", "entities": "anemia"})]
    (folder / "annotations.jsonl").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    documents = [json.dumps(row, ensure_ascii=False) for row in DOCUMENTS] + ['{"doc_id": "d5"}', "{broken"]
    (folder / "documents.jsonl").write_text("\n".join(documents) + "\n", encoding="utf-8")
    return folder


def read_folder(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def check_examples(output: Path) -> None:
    assert not list(output.rglob(".tmp-*"))
    for path in (output / "examples").glob("*.parquet"):
        assert pq.read_schema(path).equals(EXAMPLES_SCHEMA, check_metadata=False)
    examples = {row["doc_id"]: row for row in read_folder(output / "examples")}
    assert len(examples) == 3 and set(examples) == set(EXPECTED_EXAMPLES)
    for doc_id, expected in EXPECTED_EXAMPLES.items():
        assert {key: examples[doc_id][key] for key in expected} == expected, doc_id


def test_parquet_inputs_through_a_config_file(parquet_inputs, tmp_path, capsys):
    output = tmp_path / "out"
    config = {"annotations": str(parquet_inputs / "annotations"), "documents": str(parquet_inputs / "documents.parquet"),
              "output": "overridden/below", "max_width": 12, "num_partitions": 2}
    (tmp_path / "convert.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["--config", str(tmp_path / "convert.yaml"), f"output={output}"]) == 0
    check_examples(output)
    errors = sorted((row["doc_id"], row["source"], row["reason"]) for row in read_folder(output / "errors"))
    assert errors == EXPECTED_ERRORS
    details = {row["reason"]: row["detail"] for row in read_folder(output / "errors")}
    assert details["annotation_error"] == "timeout: no answer in 60 s"
    assert details["raw_output_truncated_json"].startswith("truncated_json: ")
    inputs = {(row["source"], row["input"]) for row in read_folder(output / "errors")}
    assert ("teacher", str(parquet_inputs / "annotations/part-1.parquet")) in inputs  # d9's row

    summary = json.loads((output / "_SUMMARY.json").read_text())
    assert summary["counts"] == {
        "documents": 4, "documents_annotated": 3, "annotation_rows": 7, "examples": 3, "examples_without_spans": 1,
        "error_rows": 4, "errors_by_reason": {"annotation_error": 1, "missing_document": 1, "raw_output_no_json_object": 1,
                                              "raw_output_truncated_json": 1},
        "annotation_errors_by_code": {"timeout": 1},
    }
    # d1: 6 entities (3 aligned), d2: 2 entities from the raw output (its empty one dropped while parsing), d3: none.
    assert summary["mentions"] == {"entities_in": 8, "entities_aligned": 5, "occurrences": 6, "spans": 6}
    assert summary["unique_entities"] == 5 and summary["unique_types"] == 4
    assert summary["spans_per_type"] == {"disease": 3, "protein": 1, "place": 1, "drug": 1}
    assert summary["drops"] == {
        "entity_empty_text": {"count": 1, "rate": round(1 / 9, 6)},
        "not_at_word_boundary": {"count": 1, "rate": round(1 / 9, 6)},
        "not_found": {"count": 2, "rate": round(2 / 9, 6)},
    }
    assert summary["parse_notes"] == {"code_fence": 1}
    progress = json.loads((output / "_PROGRESS.json").read_text())  # the total from the annotations' Parquet footers
    assert (progress["done"], progress["total"], progress["figures"], progress["finished"]) == (7, 7, {"examples": 3}, True)
    assert summary["config"]["output"] == str(output) and summary["timings"]["seconds"] > 0
    assert len(summary["inputs"]["annotation_files"]) == 2
    assert "3 examples" in capsys.readouterr().out


def test_jsonl_inputs_from_flags_then_a_rerun_skips(jsonl_inputs, tmp_path, capsys):
    output = tmp_path / "out"
    argv = ["--annotations", str(jsonl_inputs / "annotations.jsonl"), "--documents", str(jsonl_inputs / "documents.jsonl"),
            "--output", str(output)]
    assert main(argv) == 0
    check_examples(output)
    assert len(list((output / "examples").glob("*.parquet"))) == 1  # a tiny input is one shuffle partition, one file
    errors = read_folder(output / "errors")
    by_text = lambda item: tuple(str(value) for value in item)  # noqa: E731 (None sorts as "None")
    reasons = sorted(((row["doc_id"], row["source"], row["reason"]) for row in errors), key=by_text)
    bad_rows = [(None, None, "invalid_annotation_row")] * 3 + [("d4", None, "invalid_annotation_row")] + \
               [(None, None, "invalid_document_row"), ("d5", None, "invalid_document_row")]
    assert reasons == sorted(EXPECTED_ERRORS + bad_rows, key=by_text)
    assert {row["input"] for row in errors if row["reason"].startswith("invalid_")} == {
        str(jsonl_inputs / "annotations.jsonl"), str(jsonl_inputs / "documents.jsonl")}
    summary = json.loads((output / "_SUMMARY.json").read_text())
    assert summary["counts"]["annotation_rows"] == 11 and summary["counts"]["documents"] == 4
    progress = json.loads((output / "_PROGRESS.json").read_text())  # JSON Lines: no total known ahead
    assert (progress["done"], progress["total"], progress["finished"]) == (11, None, True)
    assert summary["counts"]["errors_by_reason"]["invalid_annotation_row"] == 4
    assert summary["counts"]["errors_by_reason"]["invalid_document_row"] == 2
    capsys.readouterr()

    files_before = {path: path.stat().st_mtime_ns for path in output.rglob("*")}
    assert main(argv) == 0
    assert "is complete" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in output.rglob("*")} == files_before

    assert main(argv + ["overwrite=true", "min_entities=1", "negatives=[disease, Gene]"]) == 0
    examples = read_folder(output / "examples")
    assert sorted(row["doc_id"] for row in examples) == ["d1", "d2"]
    assert {row["doc_id"]: row["negatives"] for row in examples} == {"d1": ["gene"], "d2": ["gene"]}
    summary = json.loads((output / "_SUMMARY.json").read_text())
    assert summary["counts"]["errors_by_reason"]["too_few_entities"] == 1 and summary["counts"]["examples"] == 2


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["--annotations", "a", "--documents", "d", "--output", "o", "max_width=0"]) == 2
    assert main(["--annotations", "a", "--output", "o"]) == 2
    assert main(["--annotations", "a", "--documents", "d", "--output", "o", "no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    missing = str(tmp_path / "missing.parquet")
    assert main(["--annotations", missing, "--documents", missing, "--output", str(tmp_path / "out")]) == 2
    assert "no input files" in capsys.readouterr().err
    assert not (tmp_path / "out" / "_SUMMARY.json").exists()
