"""parse_annotation on adversarial LLM outputs: every failure is an error code, every dropped item a counted reason,
and nothing raises."""
import json

import pytest

from synth.llm_output import ParsedAnnotation, parse_annotation

GOOD = {
    "entities": [{"id": 0, "text": "cisplatin", "type": "drug"}, {"id": 1, "text": "nephrotoxicity", "type": "disease"}],
    "relations": [{"head": 0, "tail": 1, "type": "causes"}],
}
GOOD_ENTITIES = [{"text": "cisplatin", "type": "drug"}, {"text": "nephrotoxicity", "type": "disease"}]


def parse_ok(raw: str) -> ParsedAnnotation:
    parsed = parse_annotation(raw)
    assert parsed.error is None, parsed.error
    return parsed


def error_code(raw, **kwargs) -> str:
    parsed = parse_annotation(raw, **kwargs)
    assert parsed.entities == [] and parsed.relations == [], "a failed parse must not return items"
    assert parsed.error is not None
    return parsed.error.split(":", 1)[0]


def test_well_formed_output_parses_with_relations_remapped_to_entity_indices():
    parsed = parse_ok(json.dumps({"entities": [{"id": 7, "text": " cisplatin ", "type": "drug"}, {"id": 3, "text": "nephrotoxicity", "type": "disease"}],
                                  "relations": [{"head": 7, "tail": 3, "type": "causes"}]}))
    assert parsed.entities == GOOD_ENTITIES
    assert parsed.relations == [{"head": 0, "tail": 1, "type": "causes"}]
    assert not parsed.dropped and not parsed.notes


@pytest.mark.parametrize("raw, code", [
    ('{"entities": [{"id": 0, "text": "a", "type": "b"},, ]}', "invalid_json"),
    ("{'entities': []}", "invalid_json"),  # Python quotes
    ('{"entities": [], }', "invalid_json"),  # trailing comma
    ('{"entities": [{"id": 0, "text": "a", "type": "b"}] "relations": []}', "invalid_json"),
    ('{"entities": [{"id": 0, "text": "cisplatin", "type": "dr', "truncated_json"),  # inside a string
    ('{"entities": [{"id": 0, "text": "cisplatin", "type": "drug"}', "truncated_json"),  # between items
    ('{"entities": [', "truncated_json"),
    ('{"entities": [{"id": 0, "text": "a", "type": "b"}], "relations": [{"head": 0,', "truncated_json"),
    ("{", "truncated_json"),
    ("[1, 2", "truncated_json"),
    ("I cannot annotate this passage.", "no_json_object"),
    ("", "empty_output"),
    ("   \n\t ", "empty_output"),
    ("[]", "not_an_object"),
    ('[{"id": 0, "text": "a", "type": "b"}]', "not_an_object"),
    ('"entities"', "not_an_object"),
    ("42", "not_an_object"),
    ("null", "not_an_object"),
    ('{"relations": []}', "missing_entities"),
    ('{"error": "content policy"}', "missing_entities"),
    ('{"entities": "cisplatin"}', "entities_not_a_list"),
    ('{"entities": null}', "entities_not_a_list"),
    ("[" * 100_000, "invalid_json"),  # nesting beyond the recursion limit
])
def test_unusable_outputs_are_errors_with_a_code(raw, code):
    assert error_code(raw) == code


def test_truncated_and_invalid_errors_say_where():
    assert parse_annotation('{"entities": [{"id": 0, "text": "a", "type": "b"},, ]}').error == \
        "invalid_json: Expecting value at char 50"
    assert parse_annotation('{"entities": [').error == "truncated_json: Expecting value at char 14"
    fenced_truncated = '```json\n{"entities": [{"id": 0, "text": "cis'  # cut off before the closing fence
    assert error_code(fenced_truncated) == "truncated_json"


def test_code_fences_around_the_json_are_removed_and_noted():
    for raw in ["```json\n" + json.dumps(GOOD) + "\n```", "```\n" + json.dumps(GOOD, indent=2) + "\n```",
                "Here is the annotation:\n```JSON\n" + json.dumps(GOOD) + "\n```\nLet me know if you need more."]:
        parsed = parse_ok(raw)
        assert parsed.entities == GOOD_ENTITIES and len(parsed.relations) == 1
        assert parsed.notes["code_fence"] == 1


def test_prose_around_one_object_takes_that_object():
    parsed = parse_ok("Sure! Here are the entities: " + json.dumps(GOOD) + " I hope this helps {really}.")
    assert parsed.entities == GOOD_ENTITIES
    assert parsed.notes["surrounding_text"] == 1
    assert parse_ok(json.dumps(GOOD) + "\n```").entities == GOOD_ENTITIES  # a stray closing fence after the object


def test_braces_in_strings_and_in_the_prose_do_not_confuse_the_object_search():
    good = {"entities": [{"id": 0, "text": "{weird} text }", "type": "odd"}], "relations": []}
    parsed = parse_ok('Use the format {"entities": "..."} as asked: ' + json.dumps(good) + " done")
    assert parsed.entities == [{"text": "{weird} text }", "type": "odd"}]
    parsed = parse_ok('Format {id} here, then {"a": {"entities": 1}} and then ' + json.dumps(good))
    assert parsed.entities == [{"text": "{weird} text }", "type": "odd"}]  # never a nested object of a skipped one


def test_an_object_in_the_prose_without_entities_is_reported_when_there_is_nothing_better():
    assert error_code('Example: {"note": 1}. Nothing else.') == "missing_entities"


def test_entities_of_wrong_shape_are_dropped_and_counted_per_reason():
    entities = [
        {"id": 0, "text": "cisplatin", "type": "drug"},
        "nephrotoxicity",
        ["a", "b"],
        {"id": 2, "type": "disease"},
        {"id": 3, "text": None, "type": "disease"},
        {"id": 4, "text": 42, "type": "disease"},
        {"id": 5, "text": "   ", "type": "disease"},
        {"id": 6, "text": "anemia"},
        {"id": 7, "text": "anemia", "type": ["disease"]},
        {"id": 8, "text": "anemia", "type": ""},
        {"id": 9, "text": "bad \ud800 surrogate", "type": "disease"},
        {"id": 10, "text": "anemia", "type": "disease", "extra": "ignored"},
    ]
    parsed = parse_ok(json.dumps({"entities": entities, "relations": []}))
    assert parsed.entities == [{"text": "cisplatin", "type": "drug"}, {"text": "anemia", "type": "disease"}]
    assert parsed.dropped == {
        "entity_not_an_object": 2, "entity_missing_text": 2, "entity_text_not_a_string": 1, "entity_empty_text": 1,
        "entity_missing_type": 1, "entity_type_not_a_string": 1, "entity_empty_type": 1, "entity_invalid_unicode": 1,
    }


def test_ids_missing_or_odd_keep_the_entity_but_relations_cannot_point_at_it():
    entities = [{"text": "cisplatin", "type": "drug"}, {"id": "1", "text": "nephrotoxicity", "type": "disease"},
                {"id": True, "text": "anemia", "type": "disease"}, {"id": 1, "text": "duplicate", "type": "x"},
                {"id": 2.0, "text": "kidney", "type": "organ"}]
    relations = [{"head": 0, "tail": 1, "type": "causes"}, {"head": "1", "tail": 2, "type": "in"}, {"head": 1, "tail": 1, "type": "self"}]
    parsed = parse_ok(json.dumps({"entities": entities, "relations": relations}))
    assert [entity["text"] for entity in parsed.entities] == ["cisplatin", "nephrotoxicity", "anemia", "duplicate", "kidney"]
    assert parsed.notes == {"entity_missing_id": 1, "entity_invalid_id": 1, "entity_duplicate_id": 1}
    # id 0 never existed (the first entity had none); "1" and 2.0 are read as ids 1 and 2; id 1 is the first holder.
    assert parsed.relations == [{"head": 1, "tail": 4, "type": "in"}, {"head": 1, "tail": 1, "type": "self"}]
    assert parsed.dropped == {"relation_unknown_entity": 1}


def test_relations_of_wrong_shape_are_dropped_and_counted_per_reason():
    relations = [
        {"head": 0, "tail": 1, "type": "causes"},
        {"head": 0, "tail": 9, "type": "causes"},
        {"head": 5, "tail": 1, "type": "causes"},  # 5 belongs to a dropped entity
        {"tail": 1, "type": "causes"},
        {"head": 0, "tail": "one", "type": "causes"},
        {"head": 0, "tail": 1},
        {"head": 0, "tail": 1, "type": "  "},
        "0 causes 1",
    ]
    entities = GOOD["entities"] + [{"id": 5, "text": "", "type": "x"}]
    parsed = parse_ok(json.dumps({"entities": entities, "relations": relations}))
    assert parsed.relations == [{"head": 0, "tail": 1, "type": "causes"}]
    assert parsed.dropped == {"entity_empty_text": 1, "relation_unknown_entity": 2, "relation_missing_endpoint": 2,
                              "relation_missing_type": 2, "relation_not_an_object": 1}


def test_missing_or_null_relations_are_accepted_and_a_non_list_is_counted():
    assert parse_ok('{"entities": [{"id": 0, "text": "a", "type": "b"}]}').relations == []
    assert parse_ok('{"entities": [], "relations": null}').relations == []
    parsed = parse_ok('{"entities": [{"id": 0, "text": "a", "type": "b"}], "relations": "none"}')
    assert parsed.entities == [{"text": "a", "type": "b"}] and parsed.dropped == {"relations_not_a_list": 1}


def test_empty_lists_parse_to_nothing_without_error():
    parsed = parse_ok('{"entities": [], "relations": []}')
    assert parsed == ParsedAnnotation([], [], None, parsed.dropped, parsed.notes) and not parsed.dropped


def test_unicode_text_survives_both_escaped_and_raw():
    entities = [{"id": 0, "text": "Ménière's disease", "type": "disease"}, {"id": 1, "text": "β-catenin", "type": "protein"},
                {"id": 2, "text": "İstanbul", "type": "place"}, {"id": 3, "text": "TNF-α 😷", "type": "protein"}]
    expected = [{"text": entity["text"], "type": entity["type"]} for entity in entities]
    assert parse_ok(json.dumps({"entities": entities})).entities == expected
    assert parse_ok(json.dumps({"entities": entities}, ensure_ascii=False)).entities == expected


def test_too_long_output_is_not_parsed():
    one_megabyte = json.dumps({"entities": [{"id": i, "text": f"entity {i}", "type": "x"} for i in range(30_000)]})
    assert len(one_megabyte) > 1_000_000
    assert parse_annotation(one_megabyte).error == f"too_long: {len(one_megabyte)} chars > max_chars=200000"
    assert len(parse_annotation(one_megabyte, max_chars=2_000_000).entities) == 30_000


@pytest.mark.parametrize("raw", [None, 12, b'{"entities": []}', "\x00", "```", "``````", "{}" * 50_000, "\ud800",
                                 '{"entities": [' + '{"id": 0, "text": "a", "type": "b"},' * 5000 + "]}",
                                 '{"entities": [{"id": NaN, "text": "a", "type": "b"}], "relations": [{"head": Infinity, "tail": 0, "type": "x"}]}'])
def test_nothing_raises(raw):
    parsed = parse_annotation(raw)
    assert isinstance(parsed, ParsedAnnotation)
    assert (parsed.error is None) or (parsed.entities == [] and parsed.relations == [])


def test_non_string_inputs_are_errors():
    assert parse_annotation(None).error == "empty_output"
    assert parse_annotation(12).error == "not_a_string: got int"
