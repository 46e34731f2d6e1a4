"""Splitting documents into passages at paragraph and sentence boundaries, with a rule-based sentence splitter.

Sentence rule (documented so that counts are reproducible): a sentence ends at a run of `.`, `!` or `?` (closing
quotes and brackets may follow) that is followed by whitespace, or at the end of the text, unless
  * the next character is a lowercase letter ("approx. the", "E. coli", "S. aureus"), or
  * the terminator is a single `.` and the word it closes is a known abbreviation (`ABBREVIATIONS`: "e.g.",
    "i.e.", "et al.", "Fig.", "vs.", "Dr.", ...), compared case-insensitively without its inner dots' context.
A blank line (paragraph break) always ends a sentence. Decimals ("3.5", "p<0.05") never split because a boundary
needs whitespace after the terminator. A single newline does not end a sentence.

Passages: paragraphs are packed whole while they fit `max_words` / `max_chars`; a paragraph that does not fit
alone is packed sentence by sentence; a sentence that does not fit alone (no punctuation for megabytes) is cut at
word boundaries, and a "word" longer than `max_chars` is cut by characters. So every passage fits the limits and
splitting is linear in the text's length. Passage texts are exact slices of the document (offsets kept).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

ABBREVIATIONS = frozenset({
    "e.g", "eg", "i.e", "ie", "al", "fig", "figs", "eq", "eqs", "ref", "refs", "no", "nos", "vs", "cf", "ca",
    "approx", "dr", "mr", "mrs", "ms", "prof", "st", "jr", "sr", "inc", "ltd", "co", "corp", "dept", "univ",
    "vol", "vols", "pp", "tab", "suppl", "resp", "var", "sp", "spp", "subsp", "ssp", "viz", "cit", "ed", "eds",
    "u.s", "u.k", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
})

_TERMINATOR = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s|$)")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_WORD = re.compile(r"\S+")
_OPENERS = "([{\"'\u201c\u2018"


@dataclass(frozen=True)
class Passage:
    index: int
    start: int
    end: int
    text: str


def passage_id(doc_id: str, index: int) -> str:
    return f"{doc_id}#p{index}"


def split_sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in sentence_spans(text)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, whitespace trimmed; paragraph breaks always end a sentence."""
    spans = []
    for paragraph_start, paragraph_end in paragraph_spans(text):
        spans += _sentences_in(text, paragraph_start, paragraph_end)
    return spans


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for match in _PARAGRAPH_BREAK.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [trimmed for span in spans if (trimmed := _trim(text, *span))]


def split_passages(text: str, max_words: int = 256, max_chars: int = 4000) -> list[Passage]:
    """Passages of at most `max_words` whitespace-separated words and `max_chars` characters each."""
    if max_words < 1 or max_chars < 1:
        raise ValueError("max_words and max_chars must be positive")
    packer = _Packer(text, max_words, max_chars)
    for paragraph_start, paragraph_end in paragraph_spans(text):
        packer.add_paragraph(paragraph_start, paragraph_end)
    packer.flush()
    return [Passage(index, start, end, text[start:end]) for index, (start, end) in enumerate(packer.spans)]


class _Packer:
    """Greedy packing of paragraphs, then sentences, then word runs into spans that fit the limits."""

    def __init__(self, text: str, max_words: int, max_chars: int):
        self.text, self.max_words, self.max_chars = text, max_words, max_chars
        self.spans: list[tuple[int, int]] = []
        self.start = self.end = None
        self.words = 0

    def add_paragraph(self, start: int, end: int) -> None:
        words = _count_words(self.text, start, end, self.max_words + 1)
        if self._fits_with(start, end, words):
            self._extend(start, end, words)
            return
        self.flush()
        if self._fits_alone(start, end, words):
            self._extend(start, end, words)
            return
        for sentence_start, sentence_end in _sentences_in(self.text, start, end):
            self.add_sentence(sentence_start, sentence_end)

    def add_sentence(self, start: int, end: int) -> None:
        words = _count_words(self.text, start, end, self.max_words + 1)
        if not self._fits_with(start, end, words):
            self.flush()
        if self._fits_alone(start, end, words):
            self._extend(start, end, words)
            return
        for piece_start, piece_end, piece_words in self._word_runs(start, end):
            if not self._fits_with(piece_start, piece_end, piece_words):
                self.flush()
            self._extend(piece_start, piece_end, piece_words)

    def flush(self) -> None:
        if self.start is not None:
            self.spans.append((self.start, self.end))
        self.start = self.end = None
        self.words = 0

    def _fits_with(self, start: int, end: int, words: int) -> bool:
        first = self.start if self.start is not None else start
        return self.words + words <= self.max_words and end - first <= self.max_chars

    def _fits_alone(self, start: int, end: int, words: int) -> bool:
        return words <= self.max_words and end - start <= self.max_chars

    def _extend(self, start: int, end: int, words: int) -> None:
        if self.start is None:
            self.start = start
        self.end, self.words = end, self.words + words

    def _word_runs(self, start: int, end: int):
        """Single words (or `max_chars` slices of an overlong word) of an oversized sentence, in order."""
        for match in _WORD.finditer(self.text, start, end):
            word_start, word_end = match.span()
            for piece_start in range(word_start, word_end, self.max_chars):
                yield piece_start, min(piece_start + self.max_chars, word_end), 1


def _sentences_in(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans, sentence_start = [], start
    for match in _TERMINATOR.finditer(text, start, end):
        if _is_boundary(text, match, end):
            spans.append((sentence_start, match.end()))
            sentence_start = match.end()
    spans.append((sentence_start, end))
    return [trimmed for span in spans if (trimmed := _trim(text, *span))]


def _is_boundary(text: str, match: re.Match, end: int) -> bool:
    following = _next_visible(text, match.end(), end)
    if following is None:
        return True
    if following.islower():
        return False
    terminator = match.group().rstrip("\"'\u201d\u2019)]")
    if terminator != ".":
        return True
    return _word_before(text, match.start()).lower() not in ABBREVIATIONS


def _next_visible(text: str, position: int, end: int) -> str | None:
    while position < end and text[position].isspace():
        position += 1
    return text[position] if position < end else None


def _word_before(text: str, position: int) -> str:
    start = position
    while start > 0 and not text[start - 1].isspace() and position - start < 20:
        start -= 1
    return text[start:position].lstrip(_OPENERS)


def _count_words(text: str, start: int, end: int, stop_after: int) -> int:
    count = 0
    for _ in _WORD.finditer(text, start, end):
        count += 1
        if count >= stop_after:
            break
    return count


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None
