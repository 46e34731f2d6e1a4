"""Rows of the `annotations` contract: the raw LLM output always kept, parsed entities and relations, or an error."""
from __future__ import annotations

import pyarrow as pa

from corpus.contracts import ANNOTATIONS_SCHEMA
from .llm_output import parse_annotation

# The contract's columns plus token counts, which the summary and the throughput benchmark add up.
ANNOTATION_TABLE_SCHEMA = ANNOTATIONS_SCHEMA.append(pa.field("input_tokens", pa.int32())).append(pa.field("output_tokens", pa.int32()))


def annotation_row(doc_id: str, model: str, raw_output: str | None, error: str | None = None,
                   input_tokens: int = 0, output_tokens: int = 0) -> dict:
    """Parse `raw_output` unless the request already failed; a parse failure becomes the row's error."""
    entities, relations = [], []
    if error is None:
        parsed = parse_annotation(raw_output)
        entities, relations, error = parsed.entities, parsed.relations, parsed.error
    return {"doc_id": doc_id, "model": model, "raw_output": raw_output, "entities": entities, "relations": relations,
            "error": error, "input_tokens": int(input_tokens or 0), "output_tokens": int(output_tokens or 0)}


def annotation_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ANNOTATION_TABLE_SCHEMA)

