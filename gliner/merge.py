"""The merge stage of inference: the spans of each window back to its text, then to character offsets."""
from __future__ import annotations

from .decoding import Span, greedy_select
from .inputs import Words
from .prepare import Chunk


def merge_windows(chunks: list[Chunk], spans_per_chunk: list[list[Span]], num_texts: int, flat_ner: bool, multi_label: bool) -> list[list[Span]]:
    """Shift window spans to text words, keep those each window owns, re-resolve where windows were many."""
    merged: list[list[Span]] = [[] for _ in range(num_texts)]
    windows_per_text = [0] * num_texts
    for chunk, spans in zip(chunks, spans_per_chunk):
        windows_per_text[chunk.text_index] += 1
        offset = chunk.window.start
        for span in spans:
            start = span.start + offset
            if chunk.window.own_start <= start < chunk.window.own_end:
                merged[chunk.text_index].append(Span(start, span.end + offset, span.label, span.score))
    return [greedy_select(spans, flat_ner, multi_label) if count > 1 else spans for spans, count in zip(merged, windows_per_text)]


def to_entities(text: str, words: Words, spans: list[Span]) -> list[dict]:
    """{"start", "end", "text", "label", "score"} per span, with code-point offsets into `text`."""
    entities = []
    for span in spans:
        start, end = words.starts[span.start], words.ends[span.end]
        entities.append({"start": start, "end": end, "text": text[start:end], "label": span.label, "score": span.score})
    return entities
