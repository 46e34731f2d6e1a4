"""The prepare stage of inference: texts and labels to ready batches, on a CPU, with a tokenizer and no weights.

    texts --split_words--> Words per text
    words --WordIds.ids_of--> subword ids per word (each distinct word tokenized once)
    ids + the model's word and token budgets --plan_windows--> Chunks: (text, Window); most texts are one window
    chunks, longest first --batches--> PreparedBatch: input_ids, attention_mask, words_mask (B, T), text_lengths (B,)

Batches either hold `batch_size` chunks sorted by characters (what `GLiNER.inference` does) or, with
`batch_tokens`, as many chunks sorted by tokens as fit `batch_tokens` padded tokens (at most `batch_size`), so
padding stays small; `Prepared.padding_share` says how small. A job can run this stage on other machines than the
model's (`Preparer.from_pretrained` reads only the config and tokenizer).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig

from .checkpoint import CONFIG_FILE, ensure_prompt_tokens, load_tokenizer, resolve_model_dir
from .config import GLiNERConfig
from .inputs import Window, Words, build_prompt, normalize_labels, plan_windows
from .word_ids import TextIds, WordIds

LONG_TEXT_MODES = ("window", "truncate", "error")


@dataclass(frozen=True)
class Chunk:
    """What one row of the model sees: a window of a text's words."""

    text_index: int
    window: Window


@dataclass
class PreparedBatch:
    chunk_indices: list[int]  # the chunks of its rows, in row order
    # input_ids, attention_mask, words_mask (B, T), text_lengths (B,) and, for uni-encoders, prompt_lengths (B,); host
    inputs: dict[str, torch.Tensor]
    labels: tuple[str, ...] = ()  # what it was prepared for: a uni-encoder's prompt holds them; the model scores them

    @property
    def padded_tokens(self) -> int:
        return self.inputs["input_ids"].numel()

    @property
    def real_tokens(self) -> int:
        return int(self.inputs["attention_mask"].sum())

    def rows(self) -> list["PreparedBatch"]:
        """One batch per row, without padding (to find the row a failing batch fails on)."""
        singles = []
        for row, chunk_index in enumerate(self.chunk_indices):
            width = int(self.inputs["attention_mask"][row].sum())
            inputs = {key: tensor[row : row + 1, :width] if tensor.dim() == 2 else tensor[row : row + 1] for key, tensor in self.inputs.items()}
            singles.append(PreparedBatch([chunk_index], inputs, self.labels))
        return singles


@dataclass
class Prepared:
    labels: list[str]  # normalized
    words_per_text: list[Words]
    chunks: list[Chunk]
    batches: list[PreparedBatch]

    @property
    def padding_share(self) -> float:
        """Share of the batches' token slots that are padding."""
        padded = sum(batch.padded_tokens for batch in self.batches)
        return 1.0 - sum(batch.real_tokens for batch in self.batches) / padded if padded else 0.0


class Preparer:
    def __init__(self, tokenizer, config: GLiNERConfig, position_limit: int | None):
        self.tokenizer, self.config = tokenizer, config
        self.position_limit = position_limit  # the backbone's max_position_embeddings, when the tokenizer has no limit
        self.word_ids = WordIds(tokenizer)
        self.window_overlap = max(2 * config.max_width, 32)

    @classmethod
    def from_pretrained(cls, model_id: str | Path, **hub_options) -> "Preparer":
        """The preparer of a checkpoint, from its config and tokenizer alone (no weights are read)."""
        model_dir = resolve_model_dir(model_id, **hub_options)
        config = GLiNERConfig.from_json_file(model_dir / CONFIG_FILE)
        tokenizer = load_tokenizer(model_dir if (model_dir / "tokenizer_config.json").is_file() else config.model_name)
        if not config.is_bi_encoder:
            ensure_prompt_tokens(config, tokenizer)
        encoder = config.encoder_config or AutoConfig.from_pretrained(config.model_name).to_dict()
        return cls(tokenizer, config, encoder.get("max_position_embeddings"))

    # ------------------------------------------------------------------------------------------------ the stage
    def prepare(self, words_per_text: list[Words], labels: Sequence[str], long_text: str = "window", batch_size: int = 8,
                batch_tokens: int | None = None) -> Prepared:
        labels = normalize_labels(labels, reserved_tokens=(self.config.ent_token, self.config.sep_token))
        text_ids = self.word_ids.ids_of([words.tokens for words in words_per_text])
        chunks = self.plan_chunks(words_per_text, text_ids, labels, long_text)
        prompt = self.prompt(labels)
        if batch_tokens is None:
            batches = _by_count(chunks, words_per_text, batch_size)
        else:
            batches = _by_tokens(chunks, text_ids, len(self.word_ids.prefix + self.word_ids.suffix) + sum(self.word_ids.ids_of([prompt])[0].counts()),
                                 batch_size, batch_tokens)
        prepared = [self._batch(indices, chunks, words_per_text, text_ids, labels, prompt) for indices in batches]
        return Prepared(labels, words_per_text, chunks, prepared)

    def _batch(self, indices: list[int], chunks: list[Chunk], words_per_text, text_ids, labels: list[str], prompt) -> PreparedBatch:
        rows = [(text_ids[chunks[i].text_index], chunks[i].window.start, chunks[i].window.end) for i in indices]
        words = None if self.word_ids.reuses_words else [words_per_text[chunks[i].text_index].tokens[chunks[i].window.start : chunks[i].window.end] for i in indices]
        inputs = self.word_ids.encode(rows, prompt, words)
        if not self.config.is_bi_encoder:  # each row's label count, known here, spares the forward a device sync
            inputs["prompt_lengths"] = (inputs["input_ids"].eq(self.config.class_token_index) & inputs["attention_mask"].bool()).sum(1)
        return PreparedBatch(indices, inputs, tuple(labels))

    # ------------------------------------------------------------------------------------------------ windows
    def plan_chunks(self, words_per_text: list[Words], text_ids: list[TextIds], labels: list[str], long_text: str) -> list[Chunk]:
        max_tokens = self.text_token_budget(labels)
        chunks = []
        for text_index, (words, ids) in enumerate(zip(words_per_text, text_ids)):
            if len(words) == 0:
                continue
            for window in self.windows(words, max_tokens, long_text, text_index, ids):
                chunks.append(Chunk(text_index, window))
        return chunks

    def windows(self, words: Words, max_tokens: int | None, long_text: str, text_index: int, ids: TextIds | None = None) -> list[Window]:
        """The windows of one text (`ids`: its TextIds, when already at hand)."""
        max_words = self.config.max_len
        if long_text == "truncate":
            if len(words) > max_words:
                warnings.warn(f"Sentence of length {len(words)} has been truncated to {max_words}", stacklevel=_caller_stacklevel())
            end = min(len(words), max_words)
            return [Window(0, end, 0, end)]
        ids = ids if ids is not None else self.word_ids.ids_of([words.tokens])[0]
        tokens = int(ids.offsets[-1])
        if len(words) <= max_words and (max_tokens is None or tokens <= max_tokens):
            return [Window(0, len(words), 0, len(words))]
        if long_text == "error":
            raise ValueError(
                f"text {text_index} has {len(words)} words and {tokens} subword tokens; the model takes at most "
                f"{max_words} words and {max_tokens} tokens with these labels (use long_text='window' to split it)"
            )
        return plan_windows(ids.counts(), max_words, max_tokens, self.window_overlap)

    def text_token_budget(self, labels: list[str]) -> int | None:
        """Subword tokens left for text once special tokens and the label prompt are in the encoder window."""
        limit = self.tokenizer.model_max_length
        if limit is None or limit > 1_000_000:
            limit = self.position_limit
            if limit is None:
                return None
        prompt_tokens = int(self.word_ids.ids_of([self.prompt(labels)])[0].offsets[-1])
        return limit - self.tokenizer.num_special_tokens_to_add(pair=False) - prompt_tokens

    def prompt(self, labels: list[str]) -> list[str]:
        return [] if self.config.is_bi_encoder else build_prompt(labels, self.config.ent_token, self.config.sep_token)


def _by_count(chunks: list[Chunk], words_per_text: list[Words], batch_size: int) -> list[list[int]]:
    """`batch_size` chunks per batch, the longest (in characters) first, so similar lengths share a batch."""
    lengths = [sum(map(len, words_per_text[c.text_index].tokens[c.window.start : c.window.end])) for c in chunks]
    order = sorted(range(len(chunks)), key=lambda index: -lengths[index])
    return [order[first : first + batch_size] for first in range(0, len(order), batch_size)]


def _by_tokens(chunks: list[Chunk], text_ids: list[TextIds], fixed_tokens: int, batch_size: int, batch_tokens: int) -> list[list[int]]:
    """Chunks longest (in tokens) first; a batch takes chunks while rows x its first row's length fit batch_tokens."""
    lengths = [fixed_tokens + int(text_ids[c.text_index].offsets[c.window.end] - text_ids[c.text_index].offsets[c.window.start]) for c in chunks]
    order = sorted(range(len(chunks)), key=lambda index: -lengths[index])
    batches: list[list[int]] = []
    for index in order:
        if batches and len(batches[-1]) < batch_size and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= batch_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def _caller_stacklevel() -> int:
    """The stacklevel that makes a warning point at the first frame outside this package and torch's wrappers."""
    import inspect

    package_dir = str(Path(__file__).parent)
    frame, level = inspect.currentframe(), 1
    while frame is not None and (frame.f_code.co_filename.startswith(package_dir) or "torch/utils/_contextlib" in frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level - 1


def check_options(thresholds: Sequence[float], batch_size: int, long_text: str) -> None:
    import numbers

    if isinstance(thresholds, str) or not isinstance(thresholds, Sequence) or not thresholds:
        raise ValueError(f"thresholds must be a non-empty list of numbers, got {thresholds!r}")
    for threshold in thresholds:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if long_text not in LONG_TEXT_MODES:
        raise ValueError(f"long_text must be one of {LONG_TEXT_MODES}, got {long_text!r}")

