"""Turning word lists (and a label prompt) into the tensors the span models read."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def build_prompt(labels: Sequence[str], ent_token: str, sep_token: str) -> list[str]:
    """[ent, label_1, ent, label_2, ..., ent, label_C, sep]: each label is one "word" however many spaces it has.
    An empty label (training's placeholder for an example with no types) keeps its marker but adds no word."""
    prompt: list[str] = []
    for label in labels:
        prompt += [ent_token, label] if label else [ent_token]
    return prompt + [sep_token]


def encode_words(tokenizer, word_lists: Sequence[Sequence[str]], max_width: int, prompt: Sequence[str] = (),
                 prompts_per_row: Sequence[Sequence[str]] | None = None) -> dict[str, torch.Tensor]:
    """Tokenize `prompt + words` per row (or each row's own prompt) and build word, span and length tensors.

    words_mask[b, t] is k (1-based) when subword t is the first piece of text word k, else 0. It follows the
    tokenizer's word_ids(), so a word that yields no subword leaves a zero vector without shifting later words.
    """
    prompts = prompts_per_row if prompts_per_row is not None else [prompt] * len(word_lists)
    encoded = tokenizer(
        [list(row_prompt) + list(words) for row_prompt, words in zip(prompts, word_lists)],
        is_split_into_words=True,
        truncation=True,
        padding="longest",
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
    span_idx, span_mask = enumerate_spans(text_lengths, max_width)
    return {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "words_mask": words_mask,
        "text_lengths": text_lengths,
        "span_idx": span_idx,
        "span_mask": span_mask,
    }


def enumerate_spans(text_lengths: torch.Tensor, max_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, W*K, 2) spans (start, end inclusive) in start-then-width order, and the mask of those inside each text."""
    max_words = max(int(text_lengths.max()), 1) if len(text_lengths) else 1
    starts = torch.arange(max_words).repeat_interleave(max_width)
    ends = starts + torch.arange(max_width).repeat(max_words)
    span_idx = torch.stack([starts, ends], dim=-1).unsqueeze(0).repeat(len(text_lengths), 1, 1)
    span_mask = (ends.unsqueeze(0) < text_lengths.unsqueeze(1)) & (starts.unsqueeze(0) < text_lengths.unsqueeze(1))
    span_idx = span_idx * span_mask.unsqueeze(-1)
    return span_idx, span_mask


def encode_labels_for_bi_encoder(labels_tokenizer, labels: Sequence[str]) -> dict[str, torch.Tensor]:
    encoded = labels_tokenizer(list(labels), truncation=True, padding="longest", return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


# The LSTM's packing reads lengths on the host; kept there, they cost no device-to-host sync per forward.
HOST_SIDE_INPUTS = ("text_lengths",)


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
