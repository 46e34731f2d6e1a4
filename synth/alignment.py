"""Aligning entity strings (from an LLM annotation) to word spans of the text, and building GLiNER training examples.

Every case-insensitive occurrence of an entity string that starts at a word start and ends at a word end (words from
`gliner.inputs.split_words`, the splitter training uses) is labelled; so "ia" never matches inside "anemia", and one
string gets every occurrence in the text. Matching is on the text itself: the text and the string are case-folded
and whitespace runs count as one space, with offsets mapped back to the original text (case folding can change the
length: 'İ' folds to 2 code points, 'ß' to 'ss'), and an occurrence must begin and end on whole original characters.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from gliner.inputs import Words, split_words

from .llm_output import ParsedAnnotation, parse_annotation

# Whitespace other than single spaces: the text then needs the offset-mapped search view.
_UNUSUAL_SPACE = re.compile(r"[^\S ]| {2}")
_SPACE_RUN = re.compile(r"\s+")


@dataclass
class Alignment:
    tokens: list[str]
    spans: list[tuple[int, int, str]]  # (start word, end word inclusive, normalised label), sorted, unique
    dropped: Counter  # entities dropped, per reason
    entities_in: int  # entities given
    entities_aligned: int  # entities with at least one labelled occurrence
    occurrences: int  # labelled occurrences before de-duplication
    aligned_texts: list[str]  # lower-cased, whitespace-normalised strings of the aligned entities (with repeats)


def normalize_label(label: str) -> str:
    """Whitespace runs to one space, stripped, lower-cased; also the key of an entity's surface string in statistics."""
    return " ".join(label.split()).lower()


def align_entities(text: str, entities: list[dict], max_width: int | None = None, words: Words | None = None) -> Alignment:
    """Label every word-aligned occurrence of each entity's text with its normalised type.

    Entities are dicts with "text" and "type"; dropped ones are counted per reason: "invalid_entity" (not a dict, or
    text/type not strings), "empty_text", "empty_label", "not_found", "not_at_word_boundary", "span_too_wide" (every
    word-aligned occurrence is wider than `max_width` words)."""
    words = words if words is not None else split_words(text)
    view = _SearchView(text, words)
    spans: set[tuple[int, int, str]] = set()
    dropped: Counter = Counter()
    occurrences, aligned_texts = 0, []
    for entity in entities:
        needle, label, reason = _needle_and_label(entity)
        if reason is None:
            found = view.word_spans(needle)
            reason = _alignment_problem(found, max_width)
        if reason is not None:
            dropped[reason] += 1
            continue
        kept = [(start, end) for start, end in found.spans if max_width is None or end - start + 1 <= max_width]
        occurrences += len(kept)
        spans.update((start, end, label) for start, end in kept)
        aligned_texts.append(normalize_label(entity["text"]))
    return Alignment(list(words.tokens), sorted(spans), dropped, len(entities), len(aligned_texts), occurrences, aligned_texts)


def _needle_and_label(entity) -> tuple[str, str, str | None]:
    if not isinstance(entity, dict) or not isinstance(entity.get("text"), str) or not isinstance(entity.get("type"), str):
        return "", "", "invalid_entity"
    needle, label = _fold(entity["text"]), normalize_label(entity["type"])
    if not needle:
        return "", "", "empty_text"
    if not label:
        return "", "", "empty_label"
    return needle, label, None


def _alignment_problem(found: "_Found", max_width: int | None) -> str | None:
    if not found.anywhere:
        return "not_found"
    if not found.spans:
        return "not_at_word_boundary"
    if max_width is not None and all(end - start + 1 > max_width for start, end in found.spans):
        return "span_too_wide"
    return None


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


@dataclass
class _Found:
    anywhere: bool  # the string occurs in the text at all
    spans: list[tuple[int, int]]  # word spans of the occurrences on word boundaries


class _SearchView:
    """The text case-folded, whitespace runs as one space, with each position mapped back to original offsets."""

    def __init__(self, text: str, words: Words):
        self.word_at_start = dict(zip(words.starts, range(len(words))))
        self.word_at_end = dict(zip(words.ends, range(len(words))))
        self.cache: dict[str, _Found] = {}
        folded = text.casefold()
        if len(folded) == len(text) and not _UNUSUAL_SPACE.search(text):
            self.folded, self.start_of, self.end_of = folded, None, None  # one folded character per original one
        else:
            self.folded, self.start_of, self.end_of = _mapped_fold(text)

    def word_spans(self, needle: str) -> _Found:
        if needle not in self.cache:
            self.cache[needle] = self._search(needle)
        return self.cache[needle]

    def _search(self, needle: str) -> _Found:
        spans, anywhere = [], False
        position = self.folded.find(needle)
        while position >= 0:
            anywhere = True
            start, end = self._original(position, position + len(needle))
            if start in self.word_at_start and end in self.word_at_end:
                spans.append((self.word_at_start[start], self.word_at_end[end]))
            position = self.folded.find(needle, position + 1)
        return _Found(anywhere, spans)

    def _original(self, start: int, end: int) -> tuple[int, int]:
        """Original offsets of folded [start, end); -1 where a bound falls inside one original character's folding."""
        if self.start_of is None:
            return start, end
        return self.start_of[start], self.end_of[end - 1]


def _mapped_fold(text: str) -> tuple[str, list[int], list[int]]:
    """The folded text, and per folded position the original offset it starts (or -1 when it continues a character)
    and the original offset just past it (or -1 when its character continues)."""
    pieces: list[str] = []
    start_of: list[int] = []
    end_of: list[int] = []
    position = 0
    for space in _SPACE_RUN.finditer(text):
        _fold_chunk(text, position, space.start(), pieces, start_of, end_of)
        pieces.append(" ")
        start_of.append(space.start())
        end_of.append(space.end())
        position = space.end()
    _fold_chunk(text, position, len(text), pieces, start_of, end_of)
    return "".join(pieces), start_of, end_of


def _fold_chunk(text: str, start: int, end: int, pieces: list[str], start_of: list[int], end_of: list[int]) -> None:
    """Append text[start:end] (no whitespace in it) folded; character by character only where folding changes length."""
    folded = text[start:end].casefold()
    if len(folded) == end - start:
        pieces.append(folded)
        start_of.extend(range(start, end))
        end_of.extend(range(start + 1, end + 1))
        return
    for offset in range(start, end):
        piece = text[offset].casefold()
        pieces.append(piece)
        start_of.extend([offset] + [-1] * (len(piece) - 1))
        end_of.extend([-1] * (len(piece) - 1) + [offset + 1])


# ------------------------------------------------------------------------------------------------ examples
def example_record(doc_id: str, alignment: Alignment, negative_labels: list[str] | None = None) -> dict:
    """One row of the `examples` contract. With a closed label set (the types the annotator was asked for), the
    example's negatives are those of them it has no span of; None leaves negatives to in-batch sampling."""
    negatives = None
    if negative_labels is not None:
        positive = {label for _, _, label in alignment.spans}
        normalized = dict.fromkeys(normalize_label(label) for label in negative_labels)
        negatives = [label for label in normalized if label and label not in positive]
    ner = [{"start": start, "end": end, "label": label} for start, end, label in alignment.spans]
    return {"doc_id": doc_id, "tokenized_text": alignment.tokens, "ner": ner, "negatives": negatives}


@dataclass
class Conversion:
    """One annotation row turned into an example, or into an error with a reason code (and a detail)."""

    example: dict | None
    error_reason: str | None = None
    error_detail: str | None = None
    alignment: Alignment | None = None
    parsed: ParsedAnnotation | None = None  # set when the entities came from parsing raw_output here


def convert_annotation(doc_id: str, texts: list[str], annotation: dict, max_width: int | None = 12,
                       min_entities: int = 0, negative_labels: list[str] | None = None,
                       max_raw_chars: int = 200_000) -> Conversion:
    """An `annotations` row (error, entities, raw_output) and the texts of the documents with its doc_id (none when
    missing; several differing ones are ambiguous) to an `examples` row. Entities already in the row are used as
    they are; when they are null, raw_output is parsed."""
    if annotation.get("error"):
        return Conversion(None, "annotation_error", str(annotation["error"]))
    if not texts:
        return Conversion(None, "missing_document", f"no document with doc_id {doc_id!r}")
    if len(set(texts)) > 1:
        return Conversion(None, "conflicting_documents", f"{len(set(texts))} different texts for doc_id {doc_id!r}")
    parsed, entities = None, annotation.get("entities")
    if entities is None:
        parsed = parse_annotation(annotation.get("raw_output"), max_raw_chars)
        if parsed.error is not None:
            return Conversion(None, "raw_output_" + parsed.error.split(":", 1)[0], parsed.error, parsed=parsed)
        entities = parsed.entities
    if not texts[0].strip():
        return Conversion(None, "empty_document", "the document text is empty", parsed=parsed)
    alignment = align_entities(texts[0], entities, max_width)
    if len(alignment.spans) < min_entities:
        detail = f"{len(alignment.spans)} spans < min_entities={min_entities}"
        return Conversion(None, "too_few_entities", detail, alignment, parsed)
    return Conversion(example_record(doc_id, alignment, negative_labels), alignment=alignment, parsed=parsed)
