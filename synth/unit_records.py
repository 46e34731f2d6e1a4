"""The raw records of a work unit, before any parsing into documents: Parquet rows, JSON lines, PubTator blocks.

Parquet rows come in Arrow batches of at most `batch_rows` rows, read from the row groups the unit's range
overlaps (a unit inside a large row group skips, not loads, the rows before it); line and block formats come from
the unit's byte range (`synth.byte_ranges`), each record with its byte offset.
"""
from __future__ import annotations

import re
from collections.abc import Iterator

import pyarrow as pa

from .byte_ranges import lines_in_range
from .work_units import WorkUnit

PUBTATOR_TITLE = re.compile(rb"^[^|\t\n]+\|t\|")


def parquet_batches(unit: WorkUnit, columns: list[str] | None = None, batch_rows: int = 8192) -> Iterator[tuple[int, pa.Table]]:
    """(row number of the batch's first row, batch) for the unit's rows; `columns` must exist (see parquet_columns)."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(unit.path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        cursor = 0
        for index in range(parquet.metadata.num_row_groups):
            group_start, cursor = cursor, cursor + parquet.metadata.row_group(index).num_rows
            if cursor <= unit.start or group_start >= unit.end:
                continue
            row = group_start
            for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[index], columns=columns):
                first, last = max(unit.start, row), min(unit.end, row + batch.num_rows)
                if first < last:
                    yield first, pa.Table.from_batches([batch.slice(first - row, last - first)])
                row += batch.num_rows


def parquet_columns(path: str) -> list[str]:
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb") as handle:
        return pq.ParquetFile(handle).schema_arrow.names


def jsonl_lines(unit: WorkUnit) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) for the unit's non-blank lines."""
    for offset, line in lines_in_range(unit.path, unit.start, unit.end):
        if line.strip():
            yield offset, line


def pubtator_blocks(unit: WorkUnit) -> Iterator[tuple[int, list[bytes]]]:
    """(byte offset, lines) per record: a record starts at a `PMID|t|` line and runs to the next one. The first
    unit of a file also keeps lines before the first title line (a broken record, reported by the parser)."""
    block: list[bytes] = []
    block_offset = None
    for offset, line in lines_in_range(unit.path, unit.start, None):
        starts = PUBTATOR_TITLE.match(line) is not None
        if starts and block_offset is not None and block:
            yield block_offset, block
            block = []
        if starts:
            if unit.end is not None and offset >= unit.end:
                return
            block_offset = offset
        elif block_offset is None:
            if unit.start > 0:
                continue  # the tail of a record owned by the unit before
            block_offset = offset
        block.append(line)
    if block:
        yield block_offset, block
