"""Parsing one raw LLM annotation output into entities and relations (the JSON of `contracts.ANNOTATION_JSON_SCHEMA`).

`parse_annotation` never raises. A whole output is rejected with `error` set ("code: detail") when no usable JSON object
can be read from it; inside a usable object, malformed entities and relations are dropped one by one and counted per
reason in `dropped`. Deviations that lose nothing (a code fence, prose around the object, an entity without an id) are
counted in `notes`.

Where the object is taken from: the whole output when it parses; else the inside of the first ``` fence; else the
first '{' that opens an object (followed by '"' or '}'), decoded by the JSON decoder itself (so braces inside strings
are handled) with any text after the object ignored. A decoded object without "entities" (e.g. an example in the prose)
or with entities that are not a list (a template) is skipped for the next object after it, and reported only when no
better one follows; a syntax error stops the search there, since the broken object's extent is unknown.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

# An opening fence with an optional language tag; the closing fence may be missing when the output was cut off.
_FENCE = re.compile(r"```[\w+-]*[^\S\n]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_OBJECT_START = re.compile(r"\{\s*[\"}]")
_MAX_OBJECTS_SKIPPED = 20


@dataclass
class ParsedAnnotation:
    entities: list[dict]  # [{"text": str, "type": str}] in output order, only well-formed ones
    relations: list[dict]  # [{"head": int, "tail": int, "type": str}], head/tail are indices into `entities`
    error: str | None  # None when a usable object was read; else "code: detail"
    dropped: Counter  # items dropped inside a usable object, per reason
    notes: Counter = field(default_factory=Counter)  # harmless deviations, per kind; nothing was dropped for them


def parse_annotation(raw: str, max_chars: int = 200_000) -> ParsedAnnotation:
    if not isinstance(raw, str):
        return _failed("empty_output" if raw is None else f"not_a_string: got {type(raw).__name__}")
    if len(raw) > max_chars:
        return _failed(f"too_long: {len(raw)} chars > max_chars={max_chars}")
    if not raw.strip():
        return _failed("empty_output")
    notes: Counter = Counter()
    value, error = _read_object(raw.strip(), notes)
    if error is not None:
        return _failed(error, notes)
    if not isinstance(value, dict):
        return _failed(f"not_an_object: got {_json_type(value)}", notes)
    if "entities" not in value:
        return _failed(f"missing_entities: keys {sorted(value)[:10]}", notes)
    if not isinstance(value["entities"], list):
        return _failed(f"entities_not_a_list: got {_json_type(value['entities'])}", notes)
    dropped: Counter = Counter()
    entities, index_of_id = _read_entities(value["entities"], dropped, notes)
    relations = _read_relations(value.get("relations"), index_of_id, dropped)
    return ParsedAnnotation(entities, relations, None, dropped, notes)


def _failed(error: str, notes: Counter | None = None) -> ParsedAnnotation:
    return ParsedAnnotation([], [], error, Counter(), notes or Counter())


# ------------------------------------------------------------------------------------------------ finding the object
def _read_object(text: str, notes: Counter) -> tuple[object, str | None]:
    try:
        return json.loads(text), None
    except json.JSONDecodeError:
        pass
    except RecursionError:
        return None, "invalid_json: nested too deeply"
    fence = _FENCE.search(text)
    if fence is not None and _OBJECT_START.search(fence.group(1)):  # an empty or prose-only fence is ignored
        notes["code_fence"] += 1
        text = fence.group(1).strip()
        try:
            return json.loads(text), None
        except json.JSONDecodeError:
            pass
        except RecursionError:
            return None, "invalid_json: nested too deeply"
    return _first_annotation_object(text, notes)


def _first_annotation_object(text: str, notes: Counter) -> tuple[object, str | None]:
    decoder = json.JSONDecoder()
    position, skipped, first_object = 0, 0, None
    while skipped <= _MAX_OBJECTS_SKIPPED:
        start = _OBJECT_START.search(text, position)
        if start is None:
            break
        try:
            value, end = decoder.raw_decode(text, start.start())
        except json.JSONDecodeError as error:
            return None, _describe(error, text)
        except RecursionError:
            return None, "invalid_json: nested too deeply"
        if isinstance(value.get("entities"), list):
            notes["surrounding_text"] += 1
            return value, None
        first_object = value if first_object is None else first_object
        position, skipped = end, skipped + 1
    if first_object is not None:
        notes["surrounding_text"] += 1
        return first_object, None  # reported as missing_entities by the caller
    return None, _no_object(text)


def _no_object(text: str) -> str:
    """The error for text with no object start: the decoder's own message when it looks like JSON at all."""
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        if text[:1] in "[{\"" or text[:1].isdigit():
            return _describe(error, text)
        return f"no_json_object: output starts with {text[:40]!r}"
    except RecursionError:
        return "invalid_json: nested too deeply"
    return "no_json_object"


def _describe(error: json.JSONDecodeError, text: str) -> str:
    # Cut off = the decoder ran out of text: a string left open, or an error at the very end.
    truncated = error.msg.startswith("Unterminated string") or error.pos >= len(text.rstrip())
    return f"{'truncated_json' if truncated else 'invalid_json'}: {error.msg} at char {error.pos}"


def _json_type(value) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


# ------------------------------------------------------------------------------------------------ items
def _read_entities(items: list, dropped: Counter, notes: Counter) -> tuple[list[dict], dict[int, int]]:
    entities: list[dict] = []
    index_of_id: dict[int, int] = {}
    for item in items:
        reason = _entity_problem(item)
        if reason is not None:
            dropped[reason] += 1
            continue
        entity_id = _as_id(item.get("id"))
        if entity_id is None:
            notes["entity_missing_id" if "id" not in item else "entity_invalid_id"] += 1
        elif entity_id in index_of_id:
            notes["entity_duplicate_id"] += 1  # relations keep pointing at the first entity with this id
        else:
            index_of_id[entity_id] = len(entities)
        entities.append({"text": item["text"].strip(), "type": item["type"].strip()})
    return entities, index_of_id


def _entity_problem(item) -> str | None:
    if not isinstance(item, dict):
        return "entity_not_an_object"
    for key in ("text", "type"):
        if key not in item or item[key] is None:
            return f"entity_missing_{key}"
        if not isinstance(item[key], str):
            return f"entity_{key}_not_a_string"
        if not item[key].strip():
            return f"entity_empty_{key}"
        if not _encodable(item[key]):
            return "entity_invalid_unicode"  # a lone surrogate from a \ud8xx escape: no text holds it, Arrow cannot
    return None


def _read_relations(items, index_of_id: dict[int, int], dropped: Counter) -> list[dict]:
    if items is None:
        return []
    if not isinstance(items, list):
        dropped["relations_not_a_list"] += 1
        return []
    relations = []
    for item in items:
        reason = _relation_problem(item, index_of_id)
        if reason is not None:
            dropped[reason] += 1
            continue
        head, tail = index_of_id[_as_id(item["head"])], index_of_id[_as_id(item["tail"])]
        relations.append({"head": head, "tail": tail, "type": item["type"].strip()})
    return relations


def _relation_problem(item, index_of_id: dict[int, int]) -> str | None:
    if not isinstance(item, dict):
        return "relation_not_an_object"
    if _as_id(item.get("head")) is None or _as_id(item.get("tail")) is None:
        return "relation_missing_endpoint"
    type_ = item.get("type")
    if not isinstance(type_, str) or not type_.strip() or not _encodable(type_):
        return "relation_missing_type"
    if _as_id(item["head"]) not in index_of_id or _as_id(item["tail"]) not in index_of_id:
        return "relation_unknown_entity"
    return None


def _as_id(value) -> int | None:
    """An integer id; digit strings ("3") are accepted since models often quote numbers. Booleans are not ids."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
