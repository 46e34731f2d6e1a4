"""Statistics of the convert job: per batch of converted rows, then merged over the batches on the driver."""
from __future__ import annotations

import json
from collections import Counter


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


def merge_statistics(batches: list[dict]) -> dict:
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
