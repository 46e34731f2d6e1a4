"""The data contracts as Arrow schemas, and the JSON the annotating LLM must produce (a JSON schema for structured output)."""
from __future__ import annotations

import pyarrow as pa

def annotation_json_schema(max_entities: int = 256, max_relations: int = 256, max_chars: int = 200) -> dict:
    """{"entities": [{"id", "text", "type"}], "relations": [{"head", "tail", "type"}]}; head and tail are entity ids.

    The bounds keep every constrained generation finite: without them a weak model can emit digits, spaces or list
    items until it hits the token limit, and the output is cut mid-JSON.
    """
    entity_id = {"type": "integer", "minimum": 0, "maximum": max(max_entities - 1, 0)}
    bounded_string = {"type": "string", "minLength": 1, "maxLength": max_chars}
    entity = {"type": "object", "properties": {"id": entity_id, "text": bounded_string, "type": bounded_string},
              "required": ["id", "text", "type"], "additionalProperties": False}
    relation = {"type": "object", "properties": {"head": entity_id, "tail": entity_id, "type": bounded_string},
                "required": ["head", "tail", "type"], "additionalProperties": False}
    return {
        "type": "object",
        "properties": {
            "entities": {"type": "array", "items": entity, "maxItems": max_entities},
            "relations": {"type": "array", "items": relation, "maxItems": max_relations},
        },
        "required": ["entities", "relations"],
        "additionalProperties": False,
    }


ANNOTATION_JSON_SCHEMA = annotation_json_schema()

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

# The `entities` contract (tagging output): character offsets into the document text, end exclusive.
ENTITIES_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("start", pa.int32()),
    ("end", pa.int32()),
    ("text", pa.string()),
    ("label", pa.string()),
    ("score", pa.float32()),
    ("model", pa.string()),
])

# The `errors` contract: every record a job could not use (or chose to drop), and why; one schema for every job.
ERRORS_SCHEMA = pa.schema([
    ("doc_id", pa.string()),  # when the record has one
    ("source", pa.string()),  # the record's origin: its corpus source (curate), its annotating model (convert)
    ("input", pa.string()),  # the file or URL it was read from
    ("location", pa.string()),  # where in that input: "byte N" (uncompressed), "row N"
    ("stage", pa.string()),  # the step that set it aside: read, filter, quality, exact_duplicate, convert, ...
    ("reason", pa.string()),  # a short key to count by
    ("detail", pa.string()),  # the full message
])
