"""The input pipeline: from texts and labels to the tensors the span models read, and long texts cut into windows.

    text   --split_words-->   Words (tokens with code-point offsets)
    labels --normalize_labels--> checked, de-duplicated labels --build_prompt--> [<<ENT>>, label, ..., <<SEP>>]
    prompt + words --encode_words--> input_ids, attention_mask, words_mask (B, T); text_lengths (B,);
                                     span_idx (B, W*K, 2) and span_mask (B, W*K) for the training loss
    a text over the model's word or token budget --plan_windows--> overlapping Windows, merged back after decoding
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch


# ---------------------------------------------------------------------------------------------------- words
# Upstream's default `whitespace` splitter. A word is a run of word characters joined by single '-' or '_', or any other single non-space character.
WORD_PATTERN = re.compile(r"\w+(?:[-_]\w+)*|\S")


@dataclass(frozen=True)
class Words:
    tokens: list[str]
    starts: list[int]  # code-point offset of each word's first character
    ends: list[int]  # code-point offset just past each word's last character

    def __len__(self) -> int:
        return len(self.tokens)


_SPLIT_PATTERN = re.compile(f"({WORD_PATTERN.pattern})")  # re.split keeps the words, between the runs of space


def split_words(text: str) -> Words:
    # [space, word, space, word, ..., space]: the running sum of the parts' lengths gives every word's offsets.
    parts = _SPLIT_PATTERN.split(text)
    offsets = list(itertools.accumulate(map(len, parts)))
    return Words(parts[1::2], offsets[0:-1:2], offsets[1::2])


# ---------------------------------------------------------------------------------------------------- labels and prompt
def normalize_labels(labels: Sequence[str] | str, reserved_tokens: Sequence[str] = ()) -> list[str]:
    """Labels in first-seen order without duplicates; a clear ValueError for anything that cannot be a label."""
    if isinstance(labels, str):
        raise ValueError("labels must be a list of strings, not a single string")
    if labels is None or len(labels) == 0:
        raise ValueError("labels must be a non-empty list of strings")
    for index, label in enumerate(labels):
        if not isinstance(label, str):
            raise ValueError(f"label {index} is a {type(label).__name__}, not a string")
        if not label.strip():
            raise ValueError(f"label {index} is empty or whitespace")
        for token in reserved_tokens:
            if token in label:
                raise ValueError(f"label {label!r} contains the reserved prompt token {token!r}")
    return list(dict.fromkeys(labels))


def build_prompt(labels: Sequence[str], ent_token: str, sep_token: str) -> list[str]:
    """[ent, label_1, ent, label_2, ..., ent, label_C, sep]: each label is one "word" however many spaces it has.
    An empty label (training's placeholder for an example with no types) keeps its marker but adds no word."""
    prompt: list[str] = []
    for label in labels:
        prompt += [ent_token, label] if label else [ent_token]
    return prompt + [sep_token]


# ---------------------------------------------------------------------------------------------------- tensors
def encode_words(tokenizer, word_lists: Sequence[Sequence[str]], max_width: int, prompt: Sequence[str] = (),
                 prompts_per_row: Sequence[Sequence[str]] | None = None, num_words: int | None = None,
                 token_multiple: int | None = None) -> dict[str, torch.Tensor]:
    """Tokenize `prompt + words` per row (or each row's own prompt) and build word, span and length tensors.

    words_mask[b, t] is k (1-based) when subword t is the first piece of text word k, else 0. It follows the
    tokenizer's word_ids(), so a word that yields no subword leaves a zero vector without shifting later words.
    Spans cover the longest text, or `num_words` words (at least as many); subwords are padded to the longest
    row, rounded up to a multiple of `token_multiple` when given.
    """
    prompts = prompts_per_row if prompts_per_row is not None else [prompt] * len(word_lists)
    encoded = tokenizer(
        [list(row_prompt) + list(words) for row_prompt, words in zip(prompts, word_lists)],
        is_split_into_words=True,
        truncation=True,
        padding="longest",
        pad_to_multiple_of=token_multiple,
        return_tensors="pt",
    )
    words_mask = torch.zeros_like(encoded["input_ids"])
    for row in range(len(word_lists)):
        previous, prompt_length = None, len(prompts[row])
        for position, word_id in enumerate(encoded.word_ids(row)):
            if word_id is not None and word_id != previous and word_id >= prompt_length:
                words_mask[row, position] = word_id - prompt_length + 1
            previous = word_id
    text_lengths = torch.tensor([len(words) for words in word_lists], dtype=torch.long)
    span_idx, span_mask = enumerate_spans(text_lengths, max_width, num_words)
    return {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "words_mask": words_mask,
        "text_lengths": text_lengths,
        "span_idx": span_idx,
        "span_mask": span_mask,
    }


def enumerate_spans(text_lengths: torch.Tensor, max_width: int, num_words: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, W*K, 2) spans (start, end inclusive) in start-then-width order, and the mask of those inside each text.
    W is the longest text's word count, or `num_words` when that is more."""
    max_words = max(int(text_lengths.max()), 1) if len(text_lengths) else 1
    max_words = max(max_words, num_words or 0)
    starts = torch.arange(max_words).repeat_interleave(max_width)
    ends = starts + torch.arange(max_width).repeat(max_words)
    span_idx = torch.stack([starts, ends], dim=-1).unsqueeze(0).repeat(len(text_lengths), 1, 1)
    span_mask = (ends.unsqueeze(0) < text_lengths.unsqueeze(1)) & (starts.unsqueeze(0) < text_lengths.unsqueeze(1))
    span_idx = span_idx * span_mask.unsqueeze(-1)
    return span_idx, span_mask


def encode_labels_for_bi_encoder(labels_tokenizer, labels: Sequence[str], token_multiple: int | None = None) -> dict[str, torch.Tensor]:
    encoded = labels_tokenizer(list(labels), truncation=True, padding="longest", pad_to_multiple_of=token_multiple, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


# The LSTM's packing reads lengths on the host, and the prompt's label count sizes a tensor; kept there, they cost no
# device-to-host sync per forward.
HOST_SIDE_INPUTS = ("text_lengths", "prompt_lengths")


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's tensors on `device`, except the host-side ones. To a GPU, from pinned memory without blocking the host."""
    to_gpu = device.type == "cuda"
    moved = {}
    for key, tensor in batch.items():
        if key in HOST_SIDE_INPUTS or tensor.device == device:
            moved[key] = tensor
        elif to_gpu:
            moved[key] = (tensor if tensor.is_pinned() else tensor.pin_memory()).to(device, non_blocking=True)
        else:
            moved[key] = tensor.to(device)
    return moved


# ---------------------------------------------------------------------------------------------------- windows
# Long texts: overlapping word windows within the model's word and token budgets. A window owns the span starts between the midpoints of its overlaps with its neighbours; with an overlap of at
# least 2 * max_width words every span of up to max_width words lies wholly inside the window that owns its start.
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
