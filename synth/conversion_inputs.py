"""Input rows of the convert job: `annotations` and `documents` records, from Parquet rows or JSON lines, read
defensively into one schema so that both can be grouped by doc_id. A record that cannot be used becomes a row of
kind invalid_annotation_row or invalid_document_row with its reason, never an exception."""
from __future__ import annotations

import json

import pyarrow as pa

from corpus.contracts import ENTITY_TYPE

# Annotation rows, document rows and unreadable input rows, in one schema so they can be grouped by doc_id together.
ROW_SCHEMA = pa.schema([
    ("key", pa.string()), ("doc_id", pa.string()), ("kind", pa.string()), ("model", pa.string()), ("raw_output", pa.string()),
    ("entities", pa.list_(ENTITY_TYPE)), ("error", pa.string()), ("text", pa.string()), ("source", pa.string()),
])
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
