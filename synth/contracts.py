"""The data contracts as Arrow schemas, and the JSON the annotating LLM must produce (a JSON schema for structured output)."""
from __future__ import annotations

import pyarrow as pa

# {"entities": [{"id", "text", "type"}], "relations": [{"head", "tail", "type"}]}; head and tail are entity ids.
ANNOTATION_JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "text": {"type": "string"}, "type": {"type": "string"}},
                "required": ["id", "text", "type"],
                "additionalProperties": False,
            },
        },
        "relations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"head": {"type": "integer"}, "tail": {"type": "integer"}, "type": {"type": "string"}},
                "required": ["head", "tail", "type"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["entities", "relations"],
    "additionalProperties": False,
}

ENTITY_TYPE = pa.struct([("text", pa.string()), ("type", pa.string())])
RELATION_TYPE = pa.struct([("head", pa.int32()), ("tail", pa.int32()), ("type", pa.string())])

# The `annotations` contract (docs: one row per document and model; raw output always kept).
ANNOTATIONS_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("model", pa.string()),
    ("raw_output", pa.string()),
    ("entities", pa.list_(ENTITY_TYPE)),
    ("relations", pa.list_(RELATION_TYPE)),
    ("error", pa.string()),
])

DOCUMENTS_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("text", pa.string()),
    ("source", pa.string()),
    ("title", pa.string()),
    ("meta", pa.string()),
])

EXAMPLES_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("tokenized_text", pa.list_(pa.string())),
    ("ner", pa.list_(pa.struct([("start", pa.int32()), ("end", pa.int32()), ("label", pa.string())]))),
    ("negatives", pa.list_(pa.string())),
])
