"""Subword ids per word, each distinct word tokenized once: the prepare stage's tokenizer.

Why reuse is exact: a text reaches the tokenizer already split into words (`is_split_into_words`), and a fast
(Rust) tokenizer encodes each word of such an input on its own, normalizer, pre-tokenizer, added tokens and model
alike, then joins the pieces and adds the special tokens around them. So a word's ids never depend on its
neighbours, its position or the text it sits in: WordPiece words, and SentencePiece (Metaspace) words too, each of
which gets its own "▁" whatever the prepend scheme, since every word is a first word. Joining cached ids, then
truncating and padding as the tokenizer does, gives its exact `input_ids`. `WordIds.reuses_words` is false for
anything this does not cover (a slow tokenizer, left padding or truncation, a tokenizer whose joined ids differ from
its own on a check sample): then every call goes through the tokenizer as before (`gliner.inputs.encode_words`).

    words --ids_of--> a TextIds per text: ids (N,) and offsets (n + 1,), word k's ids are ids[offsets[k]:offsets[k+1]]
    rows of (TextIds, first word, end word) + prompt --encode--> input_ids, attention_mask, words_mask, text_lengths
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .inputs import count_tokens_per_word, encode_words

MAX_CACHED_WORDS = 1_000_000  # distinct words kept; a full cache starts again (PubMed's vocabulary is a few million)
# Words whose ids the check compares both ways: prompt tokens, labels with spaces, case, accents, scripts, digits,
# punctuation, a long word, and an empty-looking one.
CHECK_WORDS = ["Imatinib", "induced", "remission", "of", "BCR-ABL1", "ménière", "ZÜRICH", "β-catenin", "TNF-α", "5-fluorouracil",
               "患者", "😷", "(", ")", "—", "…", "dimethylaminopropylcarbodiimide-hydroxysuccinimide", "\u200b", "e.g", ".", "1,250"]
CHECK_LABELS = ["disease", "cell line", "adverse drug event"]


@dataclass(frozen=True)
class TextIds:
    """A text's subword ids, word by word: word k is ids[offsets[k] : offsets[k + 1]] (no ids for some words)."""

    ids: np.ndarray  # (N,) int64
    offsets: np.ndarray  # (n + 1,) int64

    def counts(self) -> list[int]:
        return np.diff(self.offsets).tolist()


class WordIds:
    def __init__(self, tokenizer, max_cached_words: int = MAX_CACHED_WORDS):
        self.tokenizer = tokenizer
        self.max_cached_words = max_cached_words
        self._ids: dict[str, tuple[int, ...]] = {}
        self._last_prompt: tuple = (None, None)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.limit = _truncation_limit(tokenizer)
        self.prefix, self.suffix = _special_ids(tokenizer)
        self.reuses_words = (getattr(tokenizer, "is_fast", False) and tokenizer.padding_side == "right"
                             and tokenizer.truncation_side == "right" and self._agrees_with_tokenizer())

    # ------------------------------------------------------------------------------------------------ words
    def ids_of(self, word_lists: Sequence[Sequence[str]]) -> list[TextIds]:
        """Each word list's ids, the words the cache lacks tokenized in one call."""
        if not self.reuses_words:
            return [_from_counts(count_tokens_per_word(self.tokenizer, words)) for words in word_lists]
        self._learn(set(itertools.chain.from_iterable(word_lists)).difference(self._ids))
        return [self._text_ids(words) for words in word_lists]

    def _text_ids(self, words: Sequence[str]) -> TextIds:
        pieces = list(map(self._ids.__getitem__, words))
        offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)), out=offsets[1:])
        ids = np.fromiter(itertools.chain.from_iterable(pieces), dtype=np.int64, count=int(offsets[-1]))
        return TextIds(ids, offsets)

    def _learn(self, words: set[str]) -> None:
        if not words:
            return
        if len(self._ids) + len(words) > self.max_cached_words:
            self._ids.clear()
            self._last_prompt = (None, None)
        words = list(words)
        # The tokenizer's own call (not its backend's): it sets truncation and padding off for this call.
        encoded = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False, truncation=False, verbose=False,
                                 return_attention_mask=False, return_token_type_ids=False)
        word_of_id = np.asarray(encoded.word_ids(), dtype=np.int64)
        ids = encoded["input_ids"]
        ends = np.cumsum(np.bincount(word_of_id, minlength=len(words))).tolist()
        start = 0
        for word, end in zip(words, ends):
            self._ids[word] = tuple(ids[start:end])
            start = end

    # ------------------------------------------------------------------------------------------------ rows
    def encode(self, rows: Sequence[tuple[TextIds, int, int]], prompt: Sequence[str], words_of_rows=None) -> dict[str, torch.Tensor]:
        """The model's inputs for rows (text, first word, end word) after `prompt`, exactly as
        `encode_words(tokenizer, [prompt + words of each row])` makes them (`words_of_rows`: the rows' words, which
        that path needs when words are not reused)."""
        if not self.reuses_words:
            encoded = encode_words(self.tokenizer, words_of_rows, 1, prompt)
            return {key: encoded[key] for key in ("input_ids", "attention_mask", "words_mask", "text_lengths")}
        prompt_ids = self._prompt_ids(tuple(prompt))
        prefix, suffix = np.asarray(self.prefix, dtype=np.int64), np.asarray(self.suffix, dtype=np.int64)
        room = None if self.limit is None else max(0, self.limit - len(prefix) - len(suffix))  # for prompt + text
        sequences, first_pieces, text_lengths = [], [], []
        for text, start, end in rows:
            body = np.concatenate([prompt_ids, text.ids[text.offsets[start] : text.offsets[end]]])[:room]  # truncation
            starts = text.offsets[start:end] - text.offsets[start]  # each word's first id, within the row's text ids
            words = np.flatnonzero((np.diff(text.offsets[start : end + 1]) > 0) & (starts < len(body) - len(prompt_ids)))
            first_pieces.append((len(prefix) + len(prompt_ids) + starts[words], words + 1))
            sequences.append(np.concatenate([prefix, body, suffix]))
            text_lengths.append(end - start)
        return _padded(sequences, first_pieces, text_lengths, self.pad_id)

    def _prompt_ids(self, prompt: tuple[str, ...]) -> np.ndarray:
        if self._last_prompt[0] != prompt:
            self._last_prompt = (prompt, self.ids_of([prompt])[0].ids)
        return self._last_prompt[1]

    # ------------------------------------------------------------------------------------------------ check
    def _agrees_with_tokenizer(self) -> bool:
        """Joined ids equal the tokenizer's own, on rows that cut, truncate and pad (a safety net for tokenizers
        this was not written for: if they differ, every call goes through the tokenizer)."""
        self.reuses_words = True
        prompt = [word for label in CHECK_LABELS for word in ("<<ENT>>", label)] + ["<<SEP>>"]
        texts = [CHECK_WORDS, CHECK_WORDS[3:9], CHECK_WORDS[::-1] * 3]
        if self.limit is not None and self.limit < 100_000:
            texts.append((CHECK_WORDS * (self.limit // 4))[: self.limit])  # over the model's window: truncated
        try:
            text_ids = self.ids_of(texts)
            rows = [(text_ids[0], 0, len(CHECK_WORDS)), (text_ids[1], 1, 5), (text_ids[2], 4, 40)] + [(ids, 0, len(words)) for ids, words in zip(text_ids[3:], texts[3:])]
            words_of_rows = [texts[0], texts[1][1:5], texts[2][4:40]] + texts[3:]
            joined = self.encode(rows, prompt)
            own = encode_words(self.tokenizer, words_of_rows, 1, prompt)
            return all(torch.equal(joined[key], own[key]) for key in joined)
        finally:
            self._ids.clear()
            self._last_prompt = (None, None)


def _padded(sequences: list[np.ndarray], first_pieces: list[tuple[np.ndarray, np.ndarray]], text_lengths: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    width = int(lengths.max()) if len(sequences) else 0
    filled = np.arange(width) < lengths[:, None]  # (B, T)
    input_ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    input_ids[filled] = np.concatenate(sequences) if sequences else []
    words_mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, (positions, numbers) in enumerate(first_pieces):
        words_mask[row, positions] = numbers
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(filled.astype(np.int64)),
            "words_mask": torch.from_numpy(words_mask), "text_lengths": torch.tensor(text_lengths, dtype=torch.long)}


def _from_counts(counts: list[int]) -> TextIds:
    """Offsets without ids: what planning windows needs when rows go through the tokenizer itself."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return TextIds(np.zeros(0, dtype=np.int64), offsets)


def _truncation_limit(tokenizer) -> int | None:
    """The length `truncation=True` cuts to: the tokenizer's model_max_length, none when it has no real one."""
    limit = tokenizer.model_max_length
    return None if limit is None or limit > 1_000_000_000 else int(limit)


def _special_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after a sequence (e.g. [CLS] ... [SEP])."""
    bare = tokenizer(["a"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    full = tokenizer(["a"], is_split_into_words=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    return full, []
