"""Long documents: overlapping word windows that fit the model's word and token budgets, and merging back.

A window owns the span starts between the midpoints of its overlaps with its neighbours; with an overlap of at
least 2 * max_width words every span of up to max_width words lies wholly inside the window that owns its start.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    start: int  # first word of the window
    end: int  # one past its last word
    own_start: int  # spans starting in [own_start, own_end) are this window's to report
    own_end: int


def plan_windows(word_token_counts: Sequence[int], max_words: int, max_tokens: int | None, overlap: int) -> list[Window]:
    """Cover all words with windows of at most max_words words and max_tokens subword tokens."""
    if max_words < 1:
        raise ValueError("max_words must be >= 1")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError("no room for text in the token budget: the label prompt alone fills the encoder window")
    spans: list[tuple[int, int]] = []
    num_words, start = len(word_token_counts), 0
    while start < num_words:
        end, tokens = start, 0
        while end < num_words and end - start < max_words and (max_tokens is None or tokens + word_token_counts[end] <= max_tokens):
            tokens += word_token_counts[end]
            end += 1
        end = max(end, start + 1)  # a single word longer than the token budget still gets a window of its own
        spans.append((start, end))
        if end >= num_words:
            break
        start = max(end - overlap, start + 1)
    return _assign_ownership(spans)


def _assign_ownership(spans: list[tuple[int, int]]) -> list[Window]:
    windows = []
    for index, (start, end) in enumerate(spans):
        own_start = 0 if index == 0 else (start + spans[index - 1][1]) // 2
        own_end = end if index == len(spans) - 1 else (spans[index + 1][0] + end) // 2
        windows.append(Window(start, end, own_start, own_end))
    return windows


def count_tokens_per_word(tokenizer, words: Sequence[str]) -> list[int]:
    """Subword tokens each word yields when tokenized as part of a pre-split input (no special tokens)."""
    counts = [0] * len(words)
    if not words:
        return counts
    # Whole documents on purpose (to plan windows): verbose=False drops the "longer than the maximum" warning.
    encoded = tokenizer(list(words), is_split_into_words=True, add_special_tokens=False, truncation=False, verbose=False)
    for word_id in encoded.word_ids():
        if word_id is not None:
            counts[word_id] += 1
    return counts
