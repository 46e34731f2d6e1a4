"""Convert LLM annotations into GLiNER training examples: Ray Data from the `annotations` and `documents` contracts
to the `examples` contract.

    python -m ray_jobs.convert --config configs/convert/default.yaml [key=value ...]
    python -m ray_jobs.convert --annotations PATH [--annotations PATH ...] --documents PATH --output DIR [--format auto|parquet|jsonl]

Inputs are Parquet or JSON Lines, each a file, a directory or a glob, read in work units (row ranges, byte ranges:
`corpus.work_units`, sized by `units`) and matched on doc_id (rows of both grouped by it).
Every annotation row becomes either an example, OUTPUT/examples/part-*.parquet, or an error row with a reason,
OUTPUT/errors/part-*.parquet (the `errors` contract; `source` is the annotating model): annotation error set,
document missing, raw output unparseable, too few entities...
Entities already in a row are used; a row with null entities has its raw_output parsed. Files are written under a
temporary name and moved into place; OUTPUT/_SUMMARY.json, written last, marks the output complete: a rerun then
only prints it (overwrite=true redoes it), and a rerun over an incomplete output starts it afresh.
The conversion itself is `synth.alignment.convert_annotation`, the input rows `synth.conversion_inputs` and the
statistics `synth.conversion_stats`; this module reads, groups, writes and sums up.
"""
from __future__ import annotations

import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Literal

import pyarrow as pa
from pydantic import Field

from corpus.contracts import ERRORS_SCHEMA, EXAMPLES_SCHEMA
from synth.conversion_inputs import annotation_rows, document_rows
from synth.conversion_stats import batch_statistics, merge_statistics

from .runtime.job_command import FLAGS, BadInput, Flag, job_main, parse_job_args
from .runtime.job_config import Section
from .runtime.job_summary import previous_run, write_summary
from .runtime.output_root import OutputRoot
from .runtime.progress import Progress
from .runtime.unit_pipeline import ReadStage, UnitSettings, units_dataset


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
    units: UnitSettings = UnitSettings()
    overwrite: bool = False


def parse_args(argv: list[str] | None = None) -> tuple[ConvertConfig, str | None]:
    annotations = Flag("annotations", FLAGS["--annotations"].help + " (repeatable)", repeat=True)
    return parse_job_args(argv, __doc__, ConvertConfig, [("--annotations", annotations), "--documents", "--output", "--format"])


# ------------------------------------------------------------------------------------------------ converting
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
            results.append({"status": "error", "doc_id": row["doc_id"], "input": row["source"], "stage": "read", "reason": row["kind"],
                            "detail": f"{row['error']}: {row['text']}" if row["text"] else row["error"]})
    return pa.Table.from_pylist(results, RESULT_SCHEMA)


def _result(row: dict, conversion) -> dict:
    result = {"doc_id": row["doc_id"], "source": row["model"], "input": row["source"]}
    if conversion.example is not None:
        result.update(conversion.example, status="example")
    else:
        result.update(status="error", stage="convert", reason=conversion.error_reason, detail=conversion.error_detail)
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
    rows = batch.to_pylist()
    examples = [row for row in rows if row["status"] == "example"]
    errors = [row for row in rows if row["status"] == "error"]
    root, name = OutputRoot(output), f"part-{uuid.uuid4().hex}.parquet"
    for folder, items, schema in (("examples", examples, EXAMPLES_SCHEMA), ("errors", errors, ERRORS_SCHEMA)):
        if items:
            root.write_parquet(f"{folder}/{name}", pa.Table.from_pylist([{key: row.get(key) for key in schema.names} for row in items], schema))
    return pa.Table.from_pylist([{"stats": json.dumps(batch_statistics(rows))}])


# ------------------------------------------------------------------------------------------------ the job
def run(config: ConvertConfig, address: str | None = None) -> dict:
    from .runtime.ray_runtime import init_ray

    started = time.time()
    output = OutputRoot(config.output)
    previous = previous_run(output, config.overwrite)
    if previous is not None:
        return previous
    output.remove("_SUMMARY.json", "examples", "errors")  # what an earlier (complete or interrupted) run left
    annotation_inputs = [config.annotations] if isinstance(config.annotations, str) else config.annotations
    init_ray(address, outputs=[config.output], inputs=[*annotation_inputs, config.documents])
    annotations, annotation_files = _read_input(config.annotations, config, annotation_rows)
    documents, document_files = _read_input(config.documents, config, document_rows, columns=["doc_id", "text"])
    partitions = config.num_partitions or _default_partitions(annotation_files + document_files)
    grouped = annotations.union(documents).groupby("key", num_partitions=partitions)
    results = grouped.map_groups(convert_group, batch_format="pyarrow", fn_kwargs={"config": config.model_dump()})
    stats = results.map_batches(write_results, batch_format="pyarrow", batch_size=config.rows_per_file,
                                fn_kwargs={"output": config.output})
    progress = Progress("convert", _parquet_rows(annotation_files), "annotation rows", output)
    totals = merge_statistics(_tracked_statistics(stats.iter_rows(), progress))
    inputs = {"annotations": config.annotations, "annotation_files": annotation_files,
              "documents": config.documents, "document_files": document_files}
    return write_summary(output, "convert", config, started, _summary(config, inputs, totals, time.time() - started), ("pyarrow",))


def _tracked_statistics(rows, progress: Progress) -> list[dict]:
    """Each written file's statistics as they arrive, the annotation rows converted so far counted on `progress`."""
    statistics, converted, examples = [], 0, 0
    for row in rows:
        statistics.append(json.loads(row["stats"]))
        converted, examples = converted + statistics[-1]["annotation_rows"], examples + statistics[-1]["examples"]
        progress.update(converted, examples=examples)
    progress.finish()
    return statistics


def _parquet_rows(paths: list[str]) -> int | None:
    """The rows of these files from their Parquet footers (Ray reads them in parallel); None unless all are Parquet."""
    import ray

    if not paths or not all(path.endswith(".parquet") for path in paths):
        return None
    return ray.data.read_parquet(paths).count()


def _read_input(patterns: str | list[str], config: ConvertConfig, to_rows, columns: list[str] | None = None):
    """The input's rows (`to_rows` of each unit's records) as a Ray dataset, and the input's files."""
    from corpus.work_units import plan_inputs

    units = [unit for pattern in ([patterns] if isinstance(patterns, str) else patterns)
             for unit in plan_inputs(pattern, config.format, config.units.sizes())]
    formats = {unit.format for unit in units}
    if not formats <= {"parquet", "jsonl"} or len(formats) != 1:
        raise BadInput(f"{patterns}: input formats {sorted(formats)}; convert reads Parquet or JSON Lines, one of them: "
                       "name the files *.parquet or *.jsonl, or pass format=parquet or format=jsonl")
    read = ReadStage(read_unit_rows, {"to_rows": to_rows, "columns": columns}, unit_rows=False)
    return units_dataset(units, read), sorted({unit.path for unit in units})


def read_unit_rows(units: list, to_rows, columns: list[str] | None) -> Iterator[pa.Table]:
    """Each unit's Parquet rows, or its JSON lines as {"text": line}, with their file as "path", through `to_rows`."""
    from corpus.unit_records import parquet_batches, parquet_columns, records_by_unit

    if units[0].format == "jsonl":
        for unit, pairs in records_by_unit(units):
            lines = [str(line) if offset is None else line.decode("utf-8", errors="replace") for offset, line in pairs]
            yield to_rows(_with_path(pa.table({"text": pa.array(lines, pa.string())}), unit.path), json_lines=True)
        return
    for unit in units:
        present = parquet_columns(unit.path)
        wanted = [name for name in columns if name in present] if columns else None
        batches = [batch for _, batch in parquet_batches(unit, wanted)]
        table = pa.concat_tables(batches) if batches else pa.table({name: pa.array([], pa.string()) for name in wanted or present})
        yield to_rows(_with_path(table, unit.path), json_lines=False)


def _with_path(table: pa.Table, path: str) -> pa.Table:
    return table.append_column("path", pa.array([path] * table.num_rows, pa.string()))


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
    }


def print_summary(summary: dict) -> None:
    counts, mentions = summary["counts"], summary["mentions"]
    print(f"converted {counts['annotation_rows']} annotation rows over {counts['documents']} documents: "
          f"{counts['examples']} examples ({mentions['spans']} spans, {summary['unique_types']} types, "
          f"{summary['unique_entities']} unique entities), {counts['error_rows']} error rows")
    for reason, count in counts["errors_by_reason"].items():
        print(f"  error {reason}: {count}")
    for reason, drop in summary["drops"].items():
        print(f"  dropped {reason}: {drop['count']} ({100 * drop['rate']:.2f}%)")


def main(argv: list[str] | None = None) -> int:
    return job_main(argv, parse_args, run, print_summary)


if __name__ == "__main__":
    sys.exit(main())
