"""Rows of the `errors` contract (`corpus.contracts.ERRORS_SCHEMA`), and the key they are counted by."""
from __future__ import annotations

import re

import pyarrow as pa

from .contracts import ERRORS_SCHEMA


def error_row(stage: str, reason: str, detail: str | None = None, doc_id: str | None = None, source: str | None = None,
              input: str | None = None, location: str | None = None) -> dict:
    return {"doc_id": doc_id, "source": source, "input": input, "location": location, "stage": stage,
            "reason": reason, "detail": detail if detail is not None else reason}


def reading_error(error, source: str | None = None) -> dict:
    """A reader's DocumentError as a row of stage "read", counted by its message's key."""
    return error_row("read", reason_key(error.reason), error.reason, error.doc_id, source, error.source, error.location)


def reason_key(message: str) -> str:
    """A message without what varies per record (quoted content after ": " or ", got ", numbers), so that errors
    can be counted by reason: "invalid JSON: Expecting value" -> "invalid JSON"."""
    return re.sub(r"\d+", "#", re.split(r": |, got ", message, maxsplit=1)[0])[:120]


def error_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, ERRORS_SCHEMA)
