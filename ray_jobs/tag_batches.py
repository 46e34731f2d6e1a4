"""The tag job's prepared batches as Arrow tables, so that the prepare stage (in read tasks) can hand them to the
model actors through Ray's object store, and the actors' spans on to the commit tasks.

    windows: a row per chunk: text_index, start, end, own_start, own_end (gliner.prepare.Chunk)
    batches: a row per batch: chunks list<int32>; input_ids, words_mask as int32 bytes (B x T); token_lengths,
             text_lengths and (uni-encoders) prompt_lengths list<int32> (B,)
    words:   a row per document: each word's start and end offsets (gliner.inputs.Words, less the words themselves)
    spans:   a row per kept span: chunk, start, end (words, in the window), label (index), score
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from gliner.decoding import Span
from gliner.inputs import Window, Words
from gliner.prepare import Chunk, Prepared, PreparedBatch

WINDOW_FIELDS = ("text_index", "start", "end", "own_start", "own_end")
WINDOWS_SCHEMA = pa.schema([(name, pa.int32()) for name in WINDOW_FIELDS])
BATCHES_SCHEMA = pa.schema([("chunks", pa.list_(pa.int32())), ("input_ids", pa.binary()), ("words_mask", pa.binary()),
                            ("token_lengths", pa.list_(pa.int32())), ("text_lengths", pa.list_(pa.int32())), ("prompt_lengths", pa.list_(pa.int32()))])
WORDS_SCHEMA = pa.schema([("starts", pa.list_(pa.int32())), ("ends", pa.list_(pa.int32()))])
SPANS_SCHEMA = pa.schema([("chunk", pa.int32()), ("start", pa.int32()), ("end", pa.int32()), ("label", pa.int32()), ("score", pa.float64())])


# ------------------------------------------------------------------------------------------------ prepared
def windows_table(chunks: list[Chunk]) -> pa.Table:
    columns = [[chunk.text_index for chunk in chunks]] + [[getattr(chunk.window, name) for chunk in chunks] for name in WINDOW_FIELDS[1:]]
    return pa.table(columns, schema=WINDOWS_SCHEMA)


def chunks_of(table: pa.Table) -> list[Chunk]:
    columns = [table[name].to_pylist() for name in WINDOW_FIELDS]
    return [Chunk(text_index, Window(*window)) for text_index, *window in zip(*columns)]


def batches_table(prepared: Prepared) -> pa.Table:
    rows = {name: [] for name in BATCHES_SCHEMA.names}
    for batch in prepared.batches:
        rows["chunks"].append(batch.chunk_indices)
        rows["input_ids"].append(batch.inputs["input_ids"].numpy().astype(np.int32).tobytes())
        rows["words_mask"].append(batch.inputs["words_mask"].numpy().astype(np.int32).tobytes())
        rows["token_lengths"].append(batch.inputs["attention_mask"].sum(1).tolist())
        rows["text_lengths"].append(batch.inputs["text_lengths"].tolist())
        rows["prompt_lengths"].append(batch.inputs["prompt_lengths"].tolist() if "prompt_lengths" in batch.inputs else None)
    return pa.table(rows, schema=BATCHES_SCHEMA)


def batches_of(table: pa.Table) -> list[PreparedBatch]:
    """The batches as the model takes them (int32 tensors: the device feed widens them, on the device)."""
    batches = []
    for chunks, input_ids, words_mask, token_lengths, text_lengths, prompt_lengths in zip(*(table[name].to_pylist() for name in BATCHES_SCHEMA.names)):
        shape = (len(chunks), len(input_ids) // 4 // max(1, len(chunks)))
        lengths = torch.tensor(token_lengths, dtype=torch.int32)
        inputs = {"input_ids": torch.from_numpy(np.frombuffer(input_ids, dtype=np.int32).reshape(shape).copy()),
                  "attention_mask": (torch.arange(shape[1], dtype=torch.int32) < lengths.unsqueeze(1)).to(torch.int32),
                  "words_mask": torch.from_numpy(np.frombuffer(words_mask, dtype=np.int32).reshape(shape).copy()),
                  "text_lengths": torch.tensor(text_lengths, dtype=torch.long)}
        if prompt_lengths is not None:
            inputs["prompt_lengths"] = torch.tensor(prompt_lengths, dtype=torch.long)
        batches.append(PreparedBatch(chunks, inputs))
    return batches


def words_table(words_per_text: list[Words]) -> pa.Table:
    return pa.table([[words.starts for words in words_per_text], [words.ends for words in words_per_text]], schema=WORDS_SCHEMA)


def words_of(table: pa.Table) -> list[Words]:
    return [Words([], starts, ends) for starts, ends in zip(table["starts"].to_pylist(), table["ends"].to_pylist())]


# ------------------------------------------------------------------------------------------------ spans
def spans_table(spans_per_chunk: dict[int, list[Span]], labels: list[str]) -> pa.Table:
    index = {label: number for number, label in enumerate(labels)}
    rows = [(chunk, span.start, span.end, index[span.label], span.score) for chunk, spans in sorted(spans_per_chunk.items()) for span in spans]
    return pa.table([list(column) for column in zip(*rows)] if rows else [[] for _ in SPANS_SCHEMA.names], schema=SPANS_SCHEMA)


def spans_of(table: pa.Table, labels: list[str], num_chunks: int) -> list[list[Span]]:
    per_chunk: list[list[Span]] = [[] for _ in range(num_chunks)]
    for chunk, start, end, label, score in zip(*(table[name].to_pylist() for name in SPANS_SCHEMA.names)):
        per_chunk[chunk].append(Span(start, end, labels[label], score))
    return per_chunk
