"""Supervised fine-tuning pairs for distilling the annotating LLM: (chat prompt, teacher answer) -> token ids + labels.

A pair's prompt is exactly what the annotate job sends (`AnnotationPrompt.messages(text)`); its target is the teacher's
annotation re-serialised as compact JSON with entity ids 0..n-1, which is what the annotate job decodes with
(structured output without free whitespace), so the student learns the same bytes it will be asked to produce.
Rows that cannot become a pair are skipped and counted per reason, never raised on.

`gold_pubtator_annotations` turns gold PubTator mentions into `annotations` rows: a stand-in teacher for tests and
a reference point for what a perfect teacher would teach.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .llm_output import parse_annotation
from .prompts import AnnotationPrompt, chat_prompt_token_ids

IGNORE_INDEX = -100  # label of prompt and padding tokens: torch's cross-entropy ignores it
PAIR_SKIP_REASONS = ("annotation_error", "unparseable_output", "missing_document", "no_entities")
TOKEN_SKIP_REASONS = ("too_long", "prompt_too_long")
NCBI_DISEASE_TYPES = {"SpecificDisease": "disease", "DiseaseClass": "disease", "CompositeMention": "disease", "Modifier": "disease"}


# ------------------------------------------------------------------------------------------------ pairs
def target_json(entities: list[dict], relations: list[dict]) -> str:
    """Compact annotation JSON; relation head/tail are indices into `entities`, which become the ids."""
    payload = {
        "entities": [{"id": index, "text": entity["text"], "type": entity["type"]} for index, entity in enumerate(entities)],
        "relations": [{"head": relation["head"], "tail": relation["tail"], "type": relation["type"]} for relation in relations],
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def build_sft_pairs(documents: Iterable[dict], annotations: Iterable[dict], prompt: AnnotationPrompt,
                    skip_empty: bool = False) -> tuple[list[dict], Counter]:
    """One pair {"doc_id", "model", "messages", "target"} per usable annotation row, and the skipped rows per reason.

    `documents` are rows of the documents contract (doc_id, text; the first row of a doc_id wins), `annotations` rows
    of the annotations contract. A row with null entities has its raw_output parsed, as the convert job does.
    """
    texts: dict[str, str] = {}
    for document in documents:
        if isinstance(document.get("text"), str):
            texts.setdefault(str(document["doc_id"]), document["text"])
    pairs, skipped = [], Counter()
    for row in annotations:
        answer, reason = teacher_answer(row)
        if reason is None and str(row.get("doc_id")) not in texts:
            reason = "missing_document"
        if reason is None and skip_empty and not answer[0]:
            reason = "no_entities"
        if reason is not None:
            skipped[reason] += 1
            continue
        doc_id = str(row["doc_id"])
        pairs.append({"doc_id": doc_id, "model": row.get("model"), "messages": prompt.messages(texts[doc_id]),
                      "target": target_json(*answer)})
    return pairs, skipped


def teacher_answer(row: dict) -> tuple[tuple[list[dict], list[dict]], str | None]:
    """(entities, relations) of an annotation row, or the reason it has none to teach."""
    if row.get("error"):
        return ([], []), "annotation_error"
    if row.get("entities") is None:
        parsed = parse_annotation(row.get("raw_output"))
        if parsed.error is not None:
            return ([], []), "unparseable_output"
        return (parsed.entities, parsed.relations), None
    return _well_formed(row["entities"], row.get("relations") or []), None


def _well_formed(entities: list, relations: list) -> tuple[list[dict], list[dict]]:
    """Entities with non-empty text and type, relations between kept entities (their indices renumbered)."""
    kept, new_index = [], {}
    for index, entity in enumerate(entities):
        if isinstance(entity, dict) and all(isinstance(entity.get(key), str) and entity[key].strip() for key in ("text", "type")):
            new_index[index] = len(kept)
            kept.append({"text": entity["text"].strip(), "type": entity["type"].strip()})
    kept_relations = [
        {"head": new_index[relation["head"]], "tail": new_index[relation["tail"]], "type": relation["type"].strip()}
        for relation in relations
        if isinstance(relation, dict) and relation.get("head") in new_index and relation.get("tail") in new_index
        and isinstance(relation.get("type"), str) and relation["type"].strip()
    ]
    return kept, kept_relations


# ------------------------------------------------------------------------------------------------ gold teacher
def gold_pubtator_annotations(pubtator_documents: Iterable, type_map: dict[str, str] | None = None,
                              model: str = "gold-pubtator") -> tuple[list[dict], list[dict]]:
    """(documents rows, annotations rows) from `gliner.evaluation.pubtator.PubtatorDocument`s: each distinct (mention text, type)
    once, in order of first occurrence, as the annotation prompt asks; mention types renamed by `type_map`
    (default: NCBI-disease's four classes -> "disease"; unmapped types are kept as they are)."""
    type_map = NCBI_DISEASE_TYPES if type_map is None else type_map
    documents, annotations = [], []
    for document in pubtator_documents:
        entities, seen = [], set()
        for mention in sorted(document.mentions, key=lambda mention: (mention.start, mention.end)):
            entity = (mention.text.strip(), type_map.get(mention.type, mention.type))
            if entity[0] and entity not in seen:
                seen.add(entity)
                entities.append({"text": entity[0], "type": entity[1]})
        documents.append({"doc_id": document.pmid, "text": document.text, "source": "pubtator", "title": document.title, "meta": None})
        annotations.append({"doc_id": document.pmid, "model": model, "raw_output": target_json(entities, []),
                            "entities": entities, "relations": [], "error": None})
    return documents, annotations


# ------------------------------------------------------------------------------------------------ tokens
@dataclass(frozen=True)
class TokenizedPair:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on the prompt, the answer's ids (target + end token) after it
    truncated: bool = False


def answer_end_id(tokenizer, end_token: str | None = None) -> int:
    """The id that ends the assistant turn: `end_token` (e.g. Llama 3's "<|eot_id|>") or the tokenizer's eos."""
    token = end_token or tokenizer.eos_token
    token_id = tokenizer.convert_tokens_to_ids(token) if token is not None else None
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer has no end token {token!r}; set end_token")
    return token_id


def tokenize_pair(tokenizer, messages: list[dict], target: str, max_length: int, end_id: int,
                  overflow: str = "skip") -> tuple[TokenizedPair | None, str | None]:
    """Prompt rendered by the chat template with the generation prompt, then the target and the end token.

    The prompt is tokenised on its own, as at inference (vLLM renders the template, then tokenises without adding
    special tokens), so the answer starts at the same token boundary the student generates from. Longer than
    `max_length`: skipped ("too_long"), or with overflow="truncate" the answer's tail is cut (the prompt is never cut;
    a prompt leaving no room for an answer token is "prompt_too_long").
    """
    prompt_ids = chat_prompt_token_ids(tokenizer, [messages])[0]
    answer_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [end_id]
    excess = len(prompt_ids) + len(answer_ids) - max_length
    if excess > 0:
        if overflow != "truncate":
            return None, "too_long"
        if len(prompt_ids) >= max_length:
            return None, "prompt_too_long"
        answer_ids = answer_ids[:-excess]
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    return TokenizedPair(prompt_ids + answer_ids, labels, truncated=excess > 0), None


def tokenize_pairs(pairs: Iterable[dict], tokenizer, max_length: int, end_id: int,
                   overflow: str = "skip") -> tuple[list[dict], Counter]:
    """Rows {"doc_id", "input_ids", "labels", "truncated"} for the pairs that fit, and the others per reason."""
    rows, skipped = [], Counter()
    for pair in pairs:
        tokenized, reason = tokenize_pair(tokenizer, pair["messages"], pair["target"], max_length, end_id, overflow)
        if reason is not None:
            skipped[reason] += 1
            continue
        rows.append({"doc_id": pair["doc_id"], "input_ids": tokenized.input_ids, "labels": tokenized.labels,
                     "truncated": tokenized.truncated})
    return rows, skipped


def pad_batch(rows: list[dict], pad_id: int, pad_to_multiple_of: int = 1) -> dict:
    """Right-padded tensors as long as the longest row (rounded up to a multiple): input_ids, attention_mask, labels."""
    import torch

    longest = max(len(row["input_ids"]) for row in rows)
    length = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for index, row in enumerate(rows):
        size = len(row["input_ids"])
        input_ids[index, :size] = torch.as_tensor(row["input_ids"], dtype=torch.long)
        labels[index, :size] = torch.as_tensor(row["labels"], dtype=torch.long)
        attention_mask[index, :size] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# ------------------------------------------------------------------------------------------------ reading
ANNOTATION_COLUMNS = ("doc_id", "model", "raw_output", "entities", "relations", "error")


def read_pair_sources(documents_path: str, annotations_path: str) -> tuple[list[dict], list[dict]]:
    """Rows of the annotations contract (Parquet file or directory) and of the documents they name (others unread)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    annotations_dataset = ds.dataset(annotations_path, format="parquet")
    columns = [name for name in ANNOTATION_COLUMNS if name in annotations_dataset.schema.names]
    annotations = annotations_dataset.to_table(columns=columns).to_pylist()
    doc_ids = sorted({str(row["doc_id"]) for row in annotations if row.get("doc_id") is not None})
    wanted = pc.field("doc_id").isin(doc_ids)
    documents = ds.dataset(documents_path, format="parquet").to_table(columns=["doc_id", "text"], filter=wanted).to_pylist()
    return documents, annotations
