"""SFT pairs for distillation: the annotate job's prompt, the teacher's compact JSON, loss on the answer only."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gliner.evaluation.pubtator import read_pubtator
from corpus.contracts import ANNOTATIONS_SCHEMA, DOCUMENTS_SCHEMA
from synth.llm_output import parse_annotation
from synth.prompts import load_prompt
from synth.sft_pairs import (
    IGNORE_INDEX, answer_end_id, build_sft_pairs, gold_pubtator_annotations, pad_batch, read_pair_sources, target_json,
    tokenize_pair, tokenize_pairs,
)
from synth.tiny_llm import build_tokenizer

PROMPT_FILE = "configs/annotate/prompt_biomed.yaml"
TEXT = "Cisplatin caused nephrotoxicity and hearing loss in two patients."
ENTITIES = [{"text": "Cisplatin", "type": "drug"}, {"text": "nephrotoxicity", "type": "disease"}, {"text": "hearing loss", "type": "disease"}]
RELATIONS = [{"head": 0, "tail": 1, "type": "causes"}, {"head": 0, "tail": 2, "type": "causes"}]


@pytest.fixture(scope="module")
def ncbi_documents(data_dir):
    return read_pubtator(data_dir / "ncbi-disease-pubtator/train.pubtator")


@pytest.fixture(scope="module")
def tokenizer(ncbi_documents):
    return build_tokenizer([document.text for document in ncbi_documents[:200]] + [TEXT])


@pytest.fixture(scope="module")
def prompt(pytestconfig):
    return load_prompt(pytestconfig.rootpath / PROMPT_FILE)


def annotation(doc_id="d1", entities=ENTITIES, relations=RELATIONS, error=None, raw_output=None) -> dict:
    return {"doc_id": doc_id, "model": "teacher", "raw_output": raw_output, "entities": entities, "relations": relations, "error": error}


def test_target_is_compact_json_with_ids_in_order():
    target = target_json(ENTITIES, RELATIONS)
    assert target == (
        '{"entities":[{"id":0,"text":"Cisplatin","type":"drug"},{"id":1,"text":"nephrotoxicity","type":"disease"},'
        '{"id":2,"text":"hearing loss","type":"disease"}],'
        '"relations":[{"head":0,"tail":1,"type":"causes"},{"head":0,"tail":2,"type":"causes"}]}'
    )
    assert target_json([{"text": "β-catenin", "type": "protein"}], []) == '{"entities":[{"id":0,"text":"β-catenin","type":"protein"}],"relations":[]}'


def test_pairs_use_the_annotate_prompt_and_skip_unusable_rows_with_counts(prompt):
    documents = [{"doc_id": "d1", "text": TEXT}, {"doc_id": "d2", "text": "No findings."}, {"doc_id": "d3", "text": "Aspirin helps."}]
    annotations = [
        annotation("d1"),
        annotation("d1", error="inference_error: timeout"),
        annotation("d9"),  # no such document
        annotation("d2", entities=[], relations=[]),
        annotation("d3", entities=None, relations=None, raw_output='Sure! {"entities":[{"id":5,"text":"Aspirin","type":"drug"}]}'),
        annotation("d3", entities=None, relations=None, raw_output='{"entities":[{"id":0,"text":"Asp'),  # cut off
    ]
    pairs, skipped = build_sft_pairs(documents, annotations, prompt)
    assert skipped == {"annotation_error": 1, "missing_document": 1, "unparseable_output": 1}
    assert [pair["doc_id"] for pair in pairs] == ["d1", "d2", "d3"]
    assert pairs[0]["messages"] == prompt.messages(TEXT)
    assert pairs[0]["target"] == target_json(ENTITIES, RELATIONS)
    assert pairs[1]["target"] == '{"entities":[],"relations":[]}'  # the student also learns to find nothing
    assert pairs[2]["target"] == '{"entities":[{"id":0,"text":"Aspirin","type":"drug"}],"relations":[]}'  # raw output parsed, id renumbered
    _, skipped = build_sft_pairs(documents, annotations, prompt, skip_empty=True)
    assert skipped["no_entities"] == 1


def test_malformed_entities_are_dropped_and_relations_renumbered(prompt):
    entities = [{"text": " ", "type": "drug"}, ENTITIES[0], {"text": "x", "type": None}, ENTITIES[1]]
    relations = [{"head": 1, "tail": 3, "type": "causes"}, {"head": 0, "tail": 3, "type": "causes"}, {"head": 1, "tail": 7, "type": "x"}]
    pairs, _ = build_sft_pairs([{"doc_id": "d1", "text": TEXT}], [annotation(entities=entities, relations=relations)], prompt)
    assert json.loads(pairs[0]["target"]) == {
        "entities": [{"id": 0, "text": "Cisplatin", "type": "drug"}, {"id": 1, "text": "nephrotoxicity", "type": "disease"}],
        "relations": [{"head": 0, "tail": 1, "type": "causes"}],
    }


def test_labels_mask_the_prompt_exactly(tokenizer, prompt):
    messages, target = prompt.messages(TEXT), target_json(ENTITIES, RELATIONS)
    end_id = answer_end_id(tokenizer)
    pair, reason = tokenize_pair(tokenizer, messages, target, max_length=4096, end_id=end_id)
    assert reason is None and not pair.truncated
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert rendered.endswith("<|assistant|>\n")
    assert pair.input_ids[:len(prompt_ids)] == prompt_ids
    assert pair.labels[:len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    answer = pair.labels[len(prompt_ids):]
    assert IGNORE_INDEX not in answer and answer == pair.input_ids[len(prompt_ids):]
    assert answer[-1] == end_id
    assert tokenizer.decode(answer) == target + tokenizer.eos_token


def test_max_length_skips_or_truncates_the_answer_only(tokenizer, prompt):
    messages, target = prompt.messages(TEXT), target_json(ENTITIES, RELATIONS)
    end_id = answer_end_id(tokenizer)
    full, _ = tokenize_pair(tokenizer, messages, target, 4096, end_id)
    prompt_length = full.labels.count(IGNORE_INDEX)
    max_length = prompt_length + 5
    assert tokenize_pair(tokenizer, messages, target, max_length, end_id) == (None, "too_long")
    cut, reason = tokenize_pair(tokenizer, messages, target, max_length, end_id, overflow="truncate")
    assert reason is None and cut.truncated
    assert cut.input_ids == full.input_ids[:max_length] and cut.labels == full.labels[:max_length]
    assert tokenize_pair(tokenizer, messages, target, prompt_length, end_id, overflow="truncate") == (None, "prompt_too_long")
    exact, _ = tokenize_pair(tokenizer, messages, target, len(full.input_ids), end_id)
    assert exact == full
    rows, skipped = tokenize_pairs([{"doc_id": "a", "messages": messages, "target": target},
                                    {"doc_id": "b", "messages": prompt.messages("Short."), "target": target_json([], [])}],
                                   tokenizer, max_length, end_id)
    assert [row["doc_id"] for row in rows] == ["b"] and skipped == {"too_long": 1}


def test_end_token_can_differ_from_eos(tokenizer):
    assert answer_end_id(tokenizer, "<|end|>") == tokenizer.eos_token_id
    assert answer_end_id(tokenizer, "<|assistant|>") == tokenizer.convert_tokens_to_ids("<|assistant|>")
    with pytest.raises(ValueError, match="end token"):
        answer_end_id(tokenizer, "<|eot_id|>")


def test_pad_batch_pads_right_with_ignored_labels():
    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    batch = pad_batch(rows, pad_id=1, pad_to_multiple_of=4)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1], [8, 1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100], [8, -100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]


def test_gold_pubtator_teacher_pairs_parse_back_to_the_gold_entities(ncbi_documents, prompt):
    documents, annotations = gold_pubtator_annotations(ncbi_documents)
    pairs, skipped = build_sft_pairs(documents, annotations, prompt)
    assert not skipped and len(pairs) == len(ncbi_documents) == 593
    for document, row, pair in zip(ncbi_documents, annotations, pairs):
        parsed = parse_annotation(pair["target"])
        assert parsed.error is None and not parsed.dropped and not parsed.notes
        assert parsed.entities == row["entities"] and parsed.relations == []
        gold = {(mention.text.strip(), "disease") for mention in document.mentions}  # a few gold texts end in spaces
        assert {(entity["text"], entity["type"]) for entity in parsed.entities} == gold  # each distinct mention once
        assert all(entity["text"] in document.text for entity in parsed.entities)
        assert pair["messages"][-1]["content"] == prompt.user_message(document.text)
    first = pairs[0]
    assert json.loads(first["target"])["entities"][:2] == [{"id": 0, "text": "skin tumour", "type": "disease"},
                                                           {"id": 1, "text": "cancer", "type": "disease"}]


def test_read_pair_sources_reads_contract_files_and_only_annotated_documents(tmp_path, ncbi_documents):
    documents, annotations = gold_pubtator_annotations(ncbi_documents[:5])
    pq.write_table(pa.Table.from_pylist(documents, DOCUMENTS_SCHEMA), tmp_path / "documents.parquet")
    (tmp_path / "annotations").mkdir()
    pq.write_table(pa.Table.from_pylist(annotations[:3], ANNOTATIONS_SCHEMA), tmp_path / "annotations/part-0.parquet")
    read_documents, read_annotations = read_pair_sources(str(tmp_path / "documents.parquet"), str(tmp_path / "annotations"))
    assert sorted(row["doc_id"] for row in read_documents) == sorted(row["doc_id"] for row in annotations[:3])
    assert read_annotations == annotations[:3]
