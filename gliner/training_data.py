"""Training examples in GLiNER's format, label sets with in-batch negatives, and training batches.

An example is {"tokenized_text": [words], "ner": [[start, end, label], ...]} with word indices and an inclusive
end (dicts {"start", "end", "label"} are accepted too), optionally "negatives" (or upstream's "ner_negatives"):
types known to be absent, and "ner_labels": a fixed label set.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .batch import build_prompt, encode_labels_for_bi_encoder, encode_words
from .config import GLiNERConfig


class ExampleError(ValueError):
    """A training example that cannot be used; `reason` is a short, countable category."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Example:
    tokens: list[str]
    spans: list[tuple[int, int, str]]  # (first word, last word inclusive, label)
    negatives: list[str] | None = None
    label_set: list[str] | None = None


def parse_example(raw: dict, max_width: int, max_len: int) -> Example:
    """Validate one raw example; spans past `max_len` words are cut with the text (upstream truncates too)."""
    if not isinstance(raw, dict):
        raise ExampleError("not_a_record", f"expected a mapping, got {type(raw).__name__}")
    tokens = raw.get("tokenized_text")
    if not isinstance(tokens, (list, tuple)) or not tokens:
        raise ExampleError("empty_tokenized_text", "tokenized_text is missing or empty")
    if not all(isinstance(token, str) for token in tokens):
        raise ExampleError("bad_tokenized_text", "tokenized_text must hold strings")
    spans = [_parse_span(item, len(tokens), max_width) for item in (raw.get("ner") or [])]
    tokens = list(tokens[:max_len])
    spans = sorted({span for span in spans if span[1] < max_len})
    negatives = raw.get("negatives", raw.get("ner_negatives"))
    label_set = raw.get("ner_labels")
    return Example(tokens, spans, _string_list(negatives, "negatives"), _string_list(label_set, "ner_labels"))


def _parse_span(item, num_words: int, max_width: int) -> tuple[int, int, str]:
    if isinstance(item, dict):
        item = (item.get("start"), item.get("end"), item.get("label"))
    if not isinstance(item, (list, tuple)) or len(item) != 3:
        raise ExampleError("bad_span", f"a span must be [start, end, label], got {item!r}")
    start, end, label = item
    if not isinstance(start, int) or not isinstance(end, int) or not isinstance(label, str) or not label.strip():
        raise ExampleError("bad_span", f"a span needs integer offsets and a label, got {item!r}")
    if not 0 <= start <= end < num_words:
        raise ExampleError("span_out_of_range", f"span {item!r} is outside the {num_words} words")
    if end - start + 1 > max_width:
        raise ExampleError("span_too_wide", f"span {item!r} is wider than max_width={max_width}")
    return start, end, label


def _string_list(values, field: str) -> list[str] | None:
    if values is None:
        return None
    if not isinstance(values, (list, tuple)) or not all(isinstance(value, str) for value in values):
        raise ExampleError(f"bad_{field}", f"{field} must be a list of strings")
    return list(values)


def choose_label_sets(examples: Sequence[Example], max_types: int, max_neg_type_ratio: int, rng: random.Random) -> list[list[str]]:
    """Per example: its own types plus negatives (explicit, or sampled from the other types in the batch, up to
    `len(spans) * ratio` with ratio drawn from 0..max_neg_type_ratio), shuffled and cut to max_types."""
    batch_types = sorted({label for example in examples for _, _, label in example.spans})
    rng.shuffle(batch_types)
    in_batch_negatives = batch_types[:100]
    label_sets = []
    for example in examples:
        if example.label_set is not None:
            label_sets.append(list(example.label_set) or [""])
            continue
        ratio = rng.randint(0, max_neg_type_ratio) if max_neg_type_ratio else 0
        if example.negatives is not None:
            negatives = example.negatives
        else:
            negatives = in_batch_negatives[: len(example.spans) * ratio]
        types = sorted({label for _, _, label in example.spans} | set(negatives))
        rng.shuffle(types)
        label_sets.append(types[:max_types] or [""])  # a type-less example still trains every span as negative
    return label_sets


def shared_label_set(examples: Sequence[Example], max_types: int, rng: random.Random) -> list[str]:
    """Bi-encoders score one label set per batch: every example's types and negatives, up to max_types each."""
    types = set()
    for example in examples:
        types |= {label for _, _, label in example.spans} | set(example.negatives or ()) | set(example.label_set or ())
    ordered = sorted(types)
    rng.shuffle(ordered)
    return ordered[: max_types * len(examples)] or [""]


def build_training_batch(config: GLiNERConfig, tokenizer, examples: Sequence[Example], label_sets: Sequence[Sequence[str]],
                         labels_tokenizer=None) -> dict[str, torch.Tensor]:
    """Model inputs plus `labels` (B, W, K, C) one-hot targets and `label_mask` (B, C) of real label slots.

    Uni-encoders take one label set per row (`label_sets[i]`); bi-encoders one shared set (`label_sets[0]`).
    """
    word_lists = [example.tokens for example in examples]
    if config.is_bi_encoder:
        shared = list(label_sets[0])
        inputs = encode_words(tokenizer, word_lists, config.max_width)
        label_inputs = encode_labels_for_bi_encoder(labels_tokenizer, shared)
        inputs["labels_input_ids"], inputs["labels_attention_mask"] = label_inputs["input_ids"], label_inputs["attention_mask"]
        rows = [shared] * len(examples)
    else:
        prompts = [build_prompt(labels, config.ent_token, config.sep_token) for labels in label_sets]
        inputs = encode_words(tokenizer, word_lists, config.max_width, prompts_per_row=prompts)
        rows = [list(labels) for labels in label_sets]
    num_words = inputs["span_idx"].size(1) // config.max_width
    num_labels = max(len(row) for row in rows)
    targets = torch.zeros(len(examples), num_words, config.max_width, num_labels)
    label_mask = torch.zeros(len(examples), num_labels, dtype=torch.long)
    for row, (example, labels) in enumerate(zip(examples, rows)):
        label_mask[row, : len(labels)] = 1
        index = {label: position for position, label in enumerate(labels)}
        for start, end, label in example.spans:
            if label in index:
                targets[row, start, end - start, index[label]] = 1.0
    inputs["labels"], inputs["label_mask"] = targets, label_mask
    return inputs
