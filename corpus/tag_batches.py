"""The tag job's prepared batches as Arrow tables, so that the prepare stage (in read tasks) can hand them to the
model actors through Ray's object store, and the actors' spans on to the commit tasks.

    label_sets: a row per label set of the unit's documents: prompts (what the model reads), names (what entities are called)
    windows:    a row per chunk: text_index, start, end, own_start, own_end (gliner.prepare.Chunk)
    batches:    a row per batch: chunks list<int32>; label_set (the row of label_sets its prompts come from); input_ids,
                words_mask as int32 bytes (B x T); token_lengths, text_lengths and (uni-encoders) prompt_lengths list<int32> (B,)
    words:      a row per document: each word's start and end offsets (gliner.inputs.Words, less the words themselves)
    spans:      a row per kept span: chunk, start, end (words, in the window), label (its index in the chunk's prompts), score
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from gliner.decoding import Span
from gliner.inputs import Window, Words
from gliner.label_sets import LabelSet
from gliner.prepare import Chunk, PreparedBatch

WINDOW_FIELDS = ("text_index", "start", "end", "own_start", "own_end")
WINDOWS_SCHEMA = pa.schema([(name, pa.int32()) for name in WINDOW_FIELDS])
LABEL_SETS_SCHEMA = pa.schema([("prompts", pa.list_(pa.string())), ("names", pa.list_(pa.string()))])
BATCHES_SCHEMA = pa.schema([("chunks", pa.list_(pa.int32())), ("label_set", pa.int32()), ("input_ids", pa.binary()), ("words_mask", pa.binary()),
                            ("token_lengths", pa.list_(pa.int32())), ("text_lengths", pa.list_(pa.int32())), ("prompt_lengths", pa.list_(pa.int32()))])
WORDS_SCHEMA = pa.schema([("starts", pa.list_(pa.int32())), ("ends", pa.list_(pa.int32()))])
SPANS_SCHEMA = pa.schema([("chunk", pa.int32()), ("start", pa.int32()), ("end", pa.int32()), ("label", pa.int32()), ("score", pa.float64())])


# ------------------------------------------------------------------------------------------------ prepared
def label_sets_table(label_sets: list[LabelSet]) -> pa.Table:
    return pa.table([[list(item.prompts) for item in label_sets], [list(item.names) for item in label_sets]], schema=LABEL_SETS_SCHEMA)


def label_sets_of(table: pa.Table) -> list[LabelSet]:
    return [LabelSet(tuple(prompts), tuple(names)) for prompts, names in zip(table["prompts"].to_pylist(), table["names"].to_pylist())]


def windows_table(chunks: list[Chunk]) -> pa.Table:
    columns = [[chunk.text_index for chunk in chunks]] + [[getattr(chunk.window, name) for chunk in chunks] for name in WINDOW_FIELDS[1:]]
    return pa.table(columns, schema=WINDOWS_SCHEMA)


def chunks_of(table: pa.Table) -> list[Chunk]:
    columns = [table[name].to_pylist() for name in WINDOW_FIELDS]
    return [Chunk(text_index, Window(*window)) for text_index, *window in zip(*columns)]


def batches_table(batches: list[PreparedBatch], label_sets: list[LabelSet]) -> pa.Table:
    """`label_sets`: the unit's, one of whose prompts each batch was prepared with."""
    set_of_prompts = {item.prompts: index for index, item in reversed(list(enumerate(label_sets)))}
    rows = {name: [] for name in BATCHES_SCHEMA.names}
    for batch in batches:
        rows["chunks"].append(batch.chunk_indices)
        rows["label_set"].append(set_of_prompts[batch.labels])
        rows["input_ids"].append(batch.inputs["input_ids"].numpy().astype(np.int32).tobytes())
        rows["words_mask"].append(batch.inputs["words_mask"].numpy().astype(np.int32).tobytes())
        rows["token_lengths"].append(batch.inputs["attention_mask"].sum(1).tolist())
        rows["text_lengths"].append(batch.inputs["text_lengths"].tolist())
        rows["prompt_lengths"].append(batch.inputs["prompt_lengths"].tolist() if "prompt_lengths" in batch.inputs else None)
    return pa.table(rows, schema=BATCHES_SCHEMA)


def batches_of(table: pa.Table, label_sets: list[LabelSet]) -> list[PreparedBatch]:
    """The batches as the model takes them (int32 tensors: the device feed widens them, on the device)."""
    batches = []
    for chunks, label_set, input_ids, words_mask, token_lengths, text_lengths, prompt_lengths in zip(*(table[name].to_pylist() for name in BATCHES_SCHEMA.names)):
        shape = (len(chunks), len(input_ids) // 4 // max(1, len(chunks)))
        lengths = torch.tensor(token_lengths, dtype=torch.int32)
        inputs = {"input_ids": torch.from_numpy(np.frombuffer(input_ids, dtype=np.int32).reshape(shape).copy()),
                  "attention_mask": (torch.arange(shape[1], dtype=torch.int32) < lengths.unsqueeze(1)).to(torch.int32),
                  "words_mask": torch.from_numpy(np.frombuffer(words_mask, dtype=np.int32).reshape(shape).copy()),
                  "text_lengths": torch.tensor(text_lengths, dtype=torch.long)}
        if prompt_lengths is not None:
            inputs["prompt_lengths"] = torch.tensor(prompt_lengths, dtype=torch.long)
        batches.append(PreparedBatch(chunks, inputs, label_sets[label_set].prompts))
    return batches


def words_table(words_per_text: list[Words]) -> pa.Table:
    return pa.table([[words.starts for words in words_per_text], [words.ends for words in words_per_text]], schema=WORDS_SCHEMA)


def words_of(table: pa.Table) -> list[Words]:
    return [Words([], starts, ends) for starts, ends in zip(table["starts"].to_pylist(), table["ends"].to_pylist())]


# ------------------------------------------------------------------------------------------------ spans
def spans_table(spans_per_chunk: dict[int, list[Span]], prompts_per_chunk: list[tuple[str, ...]]) -> pa.Table:
    """`prompts_per_chunk`: the labels each chunk's spans carry (what the model read for it)."""
    indices: dict[tuple[str, ...], dict[str, int]] = {}
    rows = []
    for chunk, spans in sorted(spans_per_chunk.items()):
        prompts = prompts_per_chunk[chunk]
        index = indices.get(prompts) or indices.setdefault(prompts, {label: number for number, label in enumerate(prompts)})
        rows += [(chunk, span.start, span.end, index[span.label], span.score) for span in spans]
    return pa.table([list(column) for column in zip(*rows)] if rows else [[] for _ in SPANS_SCHEMA.names], schema=SPANS_SCHEMA)


def spans_of(table: pa.Table, prompts_per_chunk: list[tuple[str, ...]], num_chunks: int) -> list[list[Span]]:
    per_chunk: list[list[Span]] = [[] for _ in range(num_chunks)]
    for chunk, start, end, label, score in zip(*(table[name].to_pylist() for name in SPANS_SCHEMA.names)):
        per_chunk[chunk].append(Span(start, end, prompts_per_chunk[chunk][label], score))
    return per_chunk
