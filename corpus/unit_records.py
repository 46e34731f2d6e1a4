"""The raw records of work units, before any parsing into documents: Parquet rows, JSON lines, PubTator blocks,
PubMed XML records.

Parquet rows come in Arrow batches read from the row groups the unit's range overlaps (a unit inside a large row
group skips, not loads, the rows before it). Line and record formats come from byte ranges (`corpus.byte_ranges`),
each record with its byte offset; `records_by_unit` reads several units of one file in a single pass, which is how
a compressed file is read: gzip cannot start in the middle, so a unit of its own would decompress everything before
it again, and a file of n units n/2 times over.
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator

import pyarrow as pa

from .byte_ranges import lines_in_range
from .faults import is_transient
from .pubmed_xml import raw_pubmed_records
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


class ReadFailure(str):
    """Where the file could not be read on because its bytes are bad (a truncated or corrupt .gz): the message, in
    place of a record. A transient fault (a lost connection) is raised instead (`corpus.faults`)."""


def raw_records(path: str, data_format: str, start: int, end: int | None) -> Iterator[tuple[int | None, object]]:
    """(byte offset, raw record) for the records that start in [start, end): a JSON line (bytes), a PubTator block
    (list of lines), a PubMed XML record ((tag, bytes), bytes None for a record the file ends inside); then
    (None, ReadFailure) if the file's bytes are bad before the end of the range. Transient faults are raised."""
    readers = {"jsonl": _json_lines, "pubtator": _pubtator_blocks, "pubmed-xml": raw_pubmed_records}
    if data_format not in readers:
        raise ValueError(f"{data_format} is not read by byte ranges")
    try:
        yield from readers[data_format](path, start, end)
    except (OSError, EOFError, zlib.error) as error:
        if is_transient(error):
            raise
        yield None, ReadFailure(f"unreadable file: {error}")


def records_by_unit(units: list[WorkUnit]) -> Iterator[tuple[WorkUnit, list[tuple[int, object]]]]:
    """Each unit with its raw records, for byte-range units of one file in increasing order (not necessarily
    adjacent: records between them are passed over unparsed), reading the file once, one unit in memory at a time."""
    units = sorted(units, key=lambda unit: unit.start)
    pairs = raw_records(units[0].path, units[0].format, units[0].start, units[-1].end)
    yield from _split_by_unit(units, pairs)


def _split_by_unit(units: list[WorkUnit], pairs: Iterable[tuple[int | None, object]]) -> Iterator[tuple[WorkUnit, list]]:
    """A read failure ends the unit it happens in and stands for every unit after it."""
    index, current = 0, []
    for offset, record in pairs:
        if offset is None:
            yield units[index], current + [(None, record)]
            for unit in units[index + 1:]:
                yield unit, [(None, record)]
            return
        while units[index].end is not None and offset >= units[index].end:
            yield units[index], current
            index, current = index + 1, []
        if offset >= units[index].start:
            current.append((offset, record))
    yield units[index], current
    for unit in units[index + 1:]:
        yield unit, []


def _json_lines(path: str, start: int, end: int | None) -> Iterator[tuple[int, bytes]]:
    return ((offset, line) for offset, line in lines_in_range(path, start, end) if line.strip())


def _pubtator_blocks(path: str, start: int, end: int | None) -> Iterator[tuple[int, list[bytes]]]:
    """(byte offset, lines) per record: a record starts at a `PMID|t|` line and runs to the next one. A range that
    starts the file also keeps lines before the first title line (a broken record, which the parser reports)."""
    block: list[bytes] = []
    block_offset = None
    for offset, line in lines_in_range(path, start, None):
        starts = PUBTATOR_TITLE.match(line) is not None
        if starts and block_offset is not None and block:
            yield block_offset, block
            block = []
        if starts:
            if end is not None and offset >= end:
                return
            block_offset = offset
        elif block_offset is None:
            if start > 0:
                continue  # the tail of a record owned by the range before
            block_offset = offset
        block.append(line)
    if block:
        yield block_offset, block
