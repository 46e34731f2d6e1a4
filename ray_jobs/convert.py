"""Convert LLM annotations into GLiNER training examples: Ray Data from the `annotations` and `documents` contracts
to the `examples` contract.

    python -m ray_jobs.convert --config configs/convert/default.yaml [key=value ...]
    python -m ray_jobs.convert --annotations PATH [--annotations PATH ...] --documents PATH --output DIR [--format auto|parquet|jsonl]

Inputs are Parquet or JSON Lines, each a file, a directory or a glob, matched on doc_id (rows of both grouped by it).
Every annotation row becomes either an example, OUTPUT/examples/part-*.parquet, or an error row with a reason,
OUTPUT/errors/part-*.parquet: annotation error set, document missing, raw output unparseable, too few entities...
Entities already in a row are used; a row with null entities has its raw_output parsed. Files are written under a
temporary name and moved into place; OUTPUT/_SUMMARY.json, written last, marks the output complete: a rerun then
only prints it (overwrite=true redoes it), and a rerun over an incomplete output starts it afresh.
The conversion itself is `synth.alignment.convert_annotation`; this module reads, groups, writes and counts.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import uuid
from collections import Counter
from typing import Literal

import pyarrow as pa
from pydantic import Field

from synth.contracts import ENTITY_TYPE, EXAMPLES_SCHEMA

from .job_config import Section, cli_main, load_config


class ConvertConfig(Section):
    name: str = "convert"
    annotations: str | list[str]  # the `annotations` contract: files, directories or globs; local or any fsspec URL
    documents: str  # the `documents` contract (doc_id, text); same forms
    output: str
    format: Literal["auto", "parquet", "jsonl"] = "auto"  # auto: from each input's file names
    max_width: int | None = Field(12, ge=1)  # in words; wider occurrences are dropped and counted
    min_entities: int = Field(0, ge=0)  # fewer spans: an error row (too_few_entities) instead of an example
    negatives: list[str] | None = None  # the closed type set the annotator was asked for; see example_record
    max_raw_chars: int = Field(200_000, ge=1)  # longer raw outputs are not parsed (raw_output_too_long)
    num_partitions: int | None = Field(None, ge=1)  # of the group-by-doc_id shuffle; default: one per 32 MiB of input
    rows_per_file: int = Field(10_000, ge=1)
    overwrite: bool = False


def parse_args(argv: list[str] | None = None) -> tuple[ConvertConfig, str | None]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (configs/convert/*.yaml)")
    parser.add_argument("--annotations", action="append", help="annotations: Parquet or JSONL file, directory or glob (repeatable)")
    parser.add_argument("--documents", help="documents: Parquet or JSONL file, directory or glob")
    parser.add_argument("--output", help="output directory or URL")
    parser.add_argument("--format", choices=["auto", "parquet", "jsonl"])
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. max_width=10 overwrite=true")
    args = parser.parse_intermixed_args(argv)
    flags = {"annotations": args.annotations, "documents": args.documents, "output": args.output, "format": args.format}
    return load_config(ConvertConfig, args.config, args.overrides, flags), args.address


# ------------------------------------------------------------------------------------------------ rows
# Annotation rows, document rows and unreadable input rows, in one schema so they can be grouped by doc_id together.
ROW_SCHEMA = pa.schema([
    ("key", pa.string()), ("doc_id", pa.string()), ("kind", pa.string()), ("model", pa.string()), ("raw_output", pa.string()),
    ("entities", pa.list_(ENTITY_TYPE)), ("error", pa.string()), ("text", pa.string()), ("source", pa.string()),
])
ERRORS_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("model", pa.string()), ("input", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
])
# Per converted row: the example or error fields, and its statistics; "document" rows only count documents.
RESULT_SCHEMA = pa.schema(
    [("status", pa.string())] + [field for field in EXAMPLES_SCHEMA]
    + [field for field in ERRORS_SCHEMA if field.name != "doc_id"]
    + [("entities_in", pa.int64()), ("entities_aligned", pa.int64()), ("occurrences", pa.int64()),
       ("drops", pa.string()), ("parse_notes", pa.string()), ("aligned_texts", pa.list_(pa.string()))]
)
INVALID_KEY = ""  # the group of rows that could not be read and have no doc_id


def annotation_rows(batch: pa.Table, json_lines: bool) -> pa.Table:
    """Parquet `annotations` rows, or JSON Lines read as text ({"text": line, "path": file}), to ROW_SCHEMA."""
    rows = [_annotation_row(record) for record in _records(batch, json_lines)]
    return pa.Table.from_pylist(rows, ROW_SCHEMA)


def document_rows(batch: pa.Table, json_lines: bool) -> pa.Table:
    rows = [_document_row(record) for record in _records(batch, json_lines)]
    return pa.Table.from_pylist(rows, ROW_SCHEMA)


def _records(batch: pa.Table, json_lines: bool):
    """Dicts with the input file as "_path", or (path, reason, line) for a JSON line that is not an object."""
    for row in batch.to_pylist():
        if not json_lines:
            yield dict(row, _path=row.pop("path", None))
            continue
        try:
            record = json.loads(row["text"])
        except json.JSONDecodeError as error:
            yield (row["path"], f"invalid JSON line: {error.msg}", row["text"][:200])
            continue
        if not isinstance(record, dict):
            yield (row["path"], "a JSON line that is not an object", row["text"][:200])
        else:
            yield dict(record, _path=row["path"])


def _annotation_row(record) -> dict:
    if isinstance(record, tuple):
        return _invalid("invalid_annotation_row", *record)
    doc_id, source = _doc_id(record.get("doc_id")), record.get("_path")
    if doc_id is None:
        return _invalid("invalid_annotation_row", source, "missing doc_id", json.dumps(record, default=str)[:200])
    entities = record.get("entities")
    if entities is not None and not isinstance(entities, list):
        return _invalid("invalid_annotation_row", source, "entities is not a list", None, doc_id)
    raw = record.get("raw_output") if entities is None else None  # only parsed when entities are null: not shuffled
    return {
        "key": doc_id, "doc_id": doc_id, "kind": "annotation", "model": _string_or_none(record.get("model")),
        "raw_output": raw if raw is None or isinstance(raw, str) else json.dumps(raw),
        "entities": None if entities is None else [_entity(item) for item in entities],
        "error": _string_or_none(record.get("error")), "text": None, "source": source,
    }


def _document_row(record) -> dict:
    if isinstance(record, tuple):
        return _invalid("invalid_document_row", *record)
    doc_id, text = _doc_id(record.get("doc_id")), record.get("text")
    if doc_id is None or not isinstance(text, str):
        what = "missing doc_id" if doc_id is None else "text is missing or not a string"
        return _invalid("invalid_document_row", record.get("_path"), what, None, doc_id)
    return {"key": doc_id, "doc_id": doc_id, "kind": "document", "text": text, "source": record.get("_path")}


def _invalid(kind: str, source: str | None, reason: str, detail: str | None, doc_id: str | None = None) -> dict:
    """An input row that cannot be converted; grouped with its doc_id's rows when it has one."""
    return {"key": doc_id or INVALID_KEY, "doc_id": doc_id, "kind": kind, "error": reason, "text": detail, "source": source}


def _entity(item) -> dict:
    """Well-formed items as they are; anything else with null fields, so alignment counts it as invalid_entity."""
    if isinstance(item, dict) and isinstance(item.get("text"), str) and isinstance(item.get("type"), str):
        return {"text": item["text"], "type": item["type"]}
    return {"text": None, "type": None}


def _doc_id(value) -> str | None:
    if isinstance(value, bool) or value is None or not isinstance(value, (str, int)):
        return None
    return str(value) if str(value).strip() else None


def _string_or_none(value) -> str | None:
    return None if value is None else str(value)


# ------------------------------------------------------------------------------------------------ converting
def convert_group(group: pa.Table, config: dict) -> pa.Table:
    """All rows with one doc_id (annotations and documents) to result rows: one per annotation and per document."""
    from synth.alignment import convert_annotation

    settings = ConvertConfig.model_validate(config)
    rows = group.to_pylist()
    texts = [row["text"] for row in rows if row["kind"] == "document"]
    annotated = any(row["kind"] == "annotation" for row in rows)
    results = []
    for row in rows:
        if row["kind"] == "document":
            reason = "annotated" if annotated else "not_annotated"
            results.append({"status": "document", "doc_id": row["doc_id"], "reason": reason})
        elif row["kind"] == "annotation":
            conversion = convert_annotation(row["doc_id"], texts, row, settings.max_width, settings.min_entities,
                                            settings.negatives, settings.max_raw_chars)
            results.append(_result(row, conversion))
        else:
            results.append({"status": "error", "doc_id": row["doc_id"], "input": row["source"], "reason": row["kind"],
                            "detail": f"{row['error']}: {row['text']}" if row["text"] else row["error"]})
    return pa.Table.from_pylist(results, RESULT_SCHEMA)


def _result(row: dict, conversion) -> dict:
    result = {"doc_id": row["doc_id"], "model": row["model"], "input": row["source"]}
    if conversion.example is not None:
        result.update(conversion.example, status="example")
    else:
        result.update(status="error", reason=conversion.error_reason, detail=conversion.error_detail)
    alignment, parsed = conversion.alignment, conversion.parsed
    drops = Counter(parsed.dropped if parsed else {})
    if alignment is not None:
        drops.update(alignment.dropped)
        result.update(entities_in=alignment.entities_in, entities_aligned=alignment.entities_aligned,
                      occurrences=alignment.occurrences, aligned_texts=alignment.aligned_texts)
    result.update(drops=json.dumps(drops), parse_notes=json.dumps(parsed.notes if parsed else {}))
    return result


# ------------------------------------------------------------------------------------------------ writing
def write_results(batch: pa.Table, output: str) -> pa.Table:
    """Commit the batch's examples and errors as one Parquet file each; returns the batch's statistics (one row)."""
    from .shard_output import output_filesystem, write_atomically

    rows = batch.to_pylist()
    examples = [row for row in rows if row["status"] == "example"]
    errors = [row for row in rows if row["status"] == "error"]
    filesystem, root = output_filesystem(output)
    name = f"part-{uuid.uuid4().hex}.parquet"
    for folder, items, schema in (("examples", examples, EXAMPLES_SCHEMA), ("errors", errors, ERRORS_SCHEMA)):
        if items:
            table = pa.Table.from_pylist([{key: row[key] for key in schema.names} for row in items], schema)
            write = lambda handle, table=table: _write_parquet(table, handle)  # noqa: E731
            write_atomically(filesystem, f"{root}/{folder}/{name}", write)
    return pa.Table.from_pylist([{"stats": json.dumps(batch_statistics(rows))}])


def _write_parquet(table: pa.Table, handle) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, handle)


def batch_statistics(rows: list[dict]) -> dict:
    converted = [row for row in rows if row["status"] != "document"]
    examples = [row for row in rows if row["status"] == "example"]
    drops, notes, per_type = Counter(), Counter(), Counter()
    for row in converted:
        drops.update(json.loads(row["drops"] or "{}"))
        notes.update(json.loads(row["parse_notes"] or "{}"))
    for row in examples:
        per_type.update(span["label"] for span in row["ner"])
    documents = [row for row in rows if row["status"] == "document"]
    return {
        "documents": len(documents),
        "documents_annotated": sum(row["reason"] == "annotated" for row in documents),
        "annotation_rows": sum(row["reason"] != "invalid_document_row" for row in converted),
        "examples": len(examples),
        "examples_without_spans": sum(not row["ner"] for row in examples),
        "errors_by_reason": Counter(row["reason"] for row in rows if row["status"] == "error"),
        "annotation_errors_by_code": Counter(_error_code(row["detail"]) for row in rows if row["reason"] == "annotation_error"),
        "entities_in": sum(row["entities_in"] or 0 for row in converted),
        "entities_aligned": sum(row["entities_aligned"] or 0 for row in converted),
        "occurrences": sum(row["occurrences"] or 0 for row in converted),
        "spans": sum(len(row["ner"]) for row in examples),
        "drops": drops,
        "parse_notes": notes,
        "spans_per_type": per_type,
        "unique_entities": sorted({text for row in examples for text in row["aligned_texts"] or ()}),
    }


def _error_code(detail: str | None) -> str:
    """The leading code of an annotation error ("truncated_json: ..." -> truncated_json)."""
    return (detail or "").split(":", 1)[0].strip()[:40] or "unknown"


# ------------------------------------------------------------------------------------------------ the job
def run(config: ConvertConfig, address: str | None = None) -> dict:
    from .ray_runtime import init_ray

    previous = _read_summary(config.output)
    if previous is not None and not config.overwrite:
        print(f"{config.output} is complete (its _SUMMARY.json exists); pass overwrite=true to redo it")
        _print_summary(previous)
        return previous
    _clear_output(config.output)
    started = time.time()
    init_ray(address)
    annotations, annotation_files = _read_input(config.annotations, config.format, annotation_rows)
    documents, document_files = _read_input(config.documents, config.format, document_rows, columns=["doc_id", "text"])
    partitions = config.num_partitions or _default_partitions(annotation_files + document_files)
    grouped = annotations.union(documents).groupby("key", num_partitions=partitions)
    results = grouped.map_groups(convert_group, batch_format="pyarrow", fn_kwargs={"config": config.model_dump()})
    stats = results.map_batches(write_results, batch_format="pyarrow", batch_size=config.rows_per_file,
                                fn_kwargs={"output": config.output})
    totals = _merge([json.loads(row["stats"]) for row in stats.iter_rows()])
    inputs = {"annotations": config.annotations, "annotation_files": annotation_files,
              "documents": config.documents, "document_files": document_files}
    summary = _summary(config, inputs, totals, time.time() - started)
    _write_summary(config.output, summary)
    _print_summary(summary)
    return summary


def _read_input(patterns: str | list[str], data_format: str, to_rows, columns: list[str] | None = None):
    import ray

    from .tag import list_input_files

    files = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        found = list_input_files(pattern)
        if len(found) == 1 and not _exists(found[0]):
            raise FileNotFoundError(f"no input files at {pattern}")
        files += found
    formats = {data_format} if data_format != "auto" else {_infer_format(path) for path in files}
    if len(formats) != 1:
        raise ValueError(f"{patterns}: mixed input formats {sorted(formats)}; pass format=parquet or format=jsonl")
    json_lines = formats == {"jsonl"}
    if json_lines:
        dataset = ray.data.read_text(files, include_paths=True)
    else:
        dataset = ray.data.read_parquet(files, include_paths=True)
        dataset = dataset.select_columns(columns + ["path"]) if columns else dataset
    return dataset.map_batches(to_rows, batch_format="pyarrow", fn_kwargs={"json_lines": json_lines}), files


def _exists(path: str) -> bool:
    import fsspec

    filesystem, _, [resolved] = fsspec.get_fs_token_paths(path)
    return filesystem.exists(resolved)


def _infer_format(path: str) -> str:
    name = path.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path}; pass format=parquet or format=jsonl")


def _default_partitions(files: list[str], bytes_per_partition: int = 32 << 20, most: int = 200) -> int:
    """Shuffle partitions from the input size: each becomes one reduce task and one file per output folder, so a
    small input gets few (not Ray's fixed 200) and a large one stays at bounded memory per task."""
    import fsspec

    total = 0
    for path in files:
        filesystem, _, [resolved] = fsspec.get_fs_token_paths(path)
        total += filesystem.size(resolved) or 0
    return max(1, min(most, -(-total // bytes_per_partition)))


def _merge(batches: list[dict]) -> dict:
    totals: dict = {}
    unique_entities: set[str] = set()
    for stats in batches:
        unique_entities.update(stats.pop("unique_entities"))
        for key, value in stats.items():
            if isinstance(value, dict):
                totals.setdefault(key, Counter()).update(value)
            else:
                totals[key] = totals.get(key, 0) + value
    totals["unique_entities"] = len(unique_entities)
    return totals


def _summary(config: ConvertConfig, inputs: dict, totals: dict, seconds: float) -> dict:
    import ray

    drops = totals.get("drops", Counter())
    candidates = totals.get("entities_in", 0) + sum(count for reason, count in drops.items() if reason.startswith("entity_"))
    spans_per_type = totals.get("spans_per_type", Counter())
    return {
        "job": "convert",
        "inputs": inputs,
        "output": config.output,
        "counts": {
            "documents": totals.get("documents", 0),
            "documents_annotated": totals.get("documents_annotated", 0),
            "annotation_rows": totals.get("annotation_rows", 0),
            "examples": totals.get("examples", 0),
            "examples_without_spans": totals.get("examples_without_spans", 0),
            "error_rows": sum(totals.get("errors_by_reason", {}).values()),
            "errors_by_reason": dict(sorted(totals.get("errors_by_reason", {}).items())),
            "annotation_errors_by_code": dict(sorted(totals.get("annotation_errors_by_code", {}).items())),
        },
        "mentions": {
            "entities_in": totals.get("entities_in", 0),  # entities handed to alignment
            "entities_aligned": totals.get("entities_aligned", 0),
            "occurrences": totals.get("occurrences", 0),  # labelled occurrences before de-duplication
            "spans": totals.get("spans", 0),  # spans in the examples
        },
        "unique_entities": totals.get("unique_entities", 0),  # lower-cased surface strings of aligned entities
        "unique_types": len(spans_per_type),
        "spans_per_type": dict(spans_per_type.most_common(100)),
        # rates over entity candidates: entities aligned, plus entity items dropped while parsing raw outputs here
        "drops": {reason: {"count": count, "rate": round(count / candidates, 6) if candidates else 0.0}
                  for reason, count in sorted(drops.items())},
        "parse_notes": dict(sorted(totals.get("parse_notes", {}).items())),
        "timings": {"seconds": round(seconds, 2),
                    "annotation_rows_per_s": round(totals.get("annotation_rows", 0) / seconds, 2) if seconds > 0 else 0.0},
        "config": config.model_dump(),
        "versions": {"python": platform.python_version(), "ray": ray.__version__, "pyarrow": pa.__version__},
    }


def _read_summary(output: str) -> dict | None:
    from .shard_output import output_filesystem

    filesystem, root = output_filesystem(output)
    if not filesystem.exists(f"{root}/_SUMMARY.json"):
        return None
    with filesystem.open(f"{root}/_SUMMARY.json", "rb") as handle:
        return json.loads(handle.read())


def _clear_output(output: str) -> None:
    """Remove what an earlier (complete or interrupted) run left, so no stale part file survives into this one."""
    from .shard_output import output_filesystem

    filesystem, root = output_filesystem(output)
    for leftover in (f"{root}/_SUMMARY.json", f"{root}/examples", f"{root}/errors"):
        if filesystem.exists(leftover):
            filesystem.rm(leftover, recursive=True)


def _write_summary(output: str, summary: dict) -> None:
    from .shard_output import output_filesystem, write_atomically

    filesystem, root = output_filesystem(output)
    payload = json.dumps(summary, indent=2).encode("utf-8")
    write_atomically(filesystem, f"{root}/_SUMMARY.json", lambda handle: handle.write(payload))


def _print_summary(summary: dict) -> None:
    counts, mentions = summary["counts"], summary["mentions"]
    print(f"converted {counts['annotation_rows']} annotation rows over {counts['documents']} documents: "
          f"{counts['examples']} examples ({mentions['spans']} spans, {summary['unique_types']} types, "
          f"{summary['unique_entities']} unique entities), {counts['error_rows']} error rows")
    for reason, count in counts["errors_by_reason"].items():
        print(f"  error {reason}: {count}")
    for reason, drop in summary["drops"].items():
        print(f"  dropped {reason}: {drop['count']} ({100 * drop['rate']:.2f}%)")


def main(argv: list[str] | None = None) -> int:
    return cli_main(parse_args, run, argv, run_errors=(FileNotFoundError, ValueError))  # inputs missing or of an unknown format


if __name__ == "__main__":
    sys.exit(main())
