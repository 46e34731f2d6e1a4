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
The conversion itself is `synth.alignment.convert_annotation`, the input rows `synth.conversion_inputs` and the
statistics `synth.conversion_stats`; this module reads, groups, writes and sums up.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import Counter
from typing import Literal

import pyarrow as pa
from pydantic import Field

from synth.contracts import EXAMPLES_SCHEMA
from synth.conversion_inputs import annotation_rows, document_rows
from synth.conversion_stats import batch_statistics, merge_statistics

from .job_config import Section, cli_main, load_config
from .versions import package_versions


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


# ------------------------------------------------------------------------------------------------ converting
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
    totals = merge_statistics([json.loads(row["stats"]) for row in stats.iter_rows()])
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


def _summary(config: ConvertConfig, inputs: dict, totals: dict, seconds: float) -> dict:
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
        "versions": package_versions("ray", "pyarrow"),
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
