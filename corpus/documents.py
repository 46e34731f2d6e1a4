"""Documents from corpora, by work unit: PubMed XML, PubTator, JSONL, Parquet, text files.

Every reader yields `Document`, `DocumentError` or (PubMed) `Deletion` values in file order and never raises for a
bad record, so a job can route errors to its `errors` output and keep going; a file whose bytes are bad (a
truncated .gz) ends its unit with one error; a transient fault (storage, network) is raised, never turned into an
error (`corpus.faults`). A document's text is what entity offsets refer to. An error's `location` says where its
record is: "byte N" (uncompressed, for line and record formats) or "row N" (Parquet).
"""
from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from gliner.evaluation.pubtator import PubtatorFormatError, iter_pubtator_records

from .byte_ranges import open_binary
from .faults import is_transient
from .pubmed_xml import PubmedArticle, PubmedDeletion, parse_record
from .unit_records import parquet_batches, parquet_columns, records_by_unit
from .work_units import FORMATS, UnitSizes, WorkUnit, infer_format, plan_file  # noqa: F401 (infer_format: readers' callers)


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    title: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DocumentError:
    source: str
    reason: str
    doc_id: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class Deletion:
    """PubMed's `DeleteCitation`: these PMIDs are withdrawn as of this record."""

    doc_ids: list[str]
    location: str


@dataclass(frozen=True)
class Columns:
    """Where a Parquet or JSONL record keeps its fields."""

    id: str = "doc_id"
    text: str = "text"
    title: str | None = None
    labels: str | None = None  # each document's own labels, kept as they are in `Document.meta["labels"]`


Record = Document | DocumentError | Deletion


def read_units(units: list[WorkUnit], columns: Columns = Columns()) -> Iterator[tuple[WorkUnit, list[Record]]]:
    """Each unit with its records, one unit at a time. Byte-range units of one file (in increasing order, as a read
    group gives them) are read in a single pass; others one by one."""
    if len({unit.file_key for unit in units}) == 1 and all(unit.kind == "bytes" for unit in units):
        for unit, pairs in records_by_unit(units):
            yield unit, [record for offset, raw in pairs for record in _parsed(unit, offset, raw, columns)]
        return
    for unit in units:
        yield unit, list(read_unit(unit, columns))


def read_unit(unit: WorkUnit, columns: Columns = Columns()) -> Iterator[Record]:
    if unit.format not in FORMATS:
        raise ValueError(f"unknown format {unit.format!r}; expected one of {FORMATS}")
    if unit.kind == "bytes":
        for _, records in read_units([unit], columns):
            yield from records
        return
    try:
        yield from (_parquet(unit, columns) if unit.format == "parquet" else _text_file(unit))
    except (OSError, EOFError, zlib.error, pa.ArrowInvalid) as error:
        if is_transient(error):
            raise
        yield DocumentError(unit.path, f"unreadable file: {error}")


def read_documents(path: str, data_format: str, columns: Columns = Columns()) -> Iterator[Record]:
    """A whole file, as one unit (tests, benchmarks and small inputs)."""
    for unit in plan_file(path, data_format, "file", UnitSizes(documents=1 << 62, bytes=1 << 62)):
        yield from read_unit(unit, columns)


def _parsed(unit: WorkUnit, offset: int | None, raw, columns: Columns) -> Iterator[Record]:
    """The records of one raw record of a byte-range format."""
    if offset is None:
        yield DocumentError(unit.path, str(raw), location=f"byte {unit.start}")  # raw: the ReadFailure
    elif unit.format == "pubmed-xml":
        yield _pubmed(unit.path, offset, *raw)
    elif unit.format == "jsonl":
        yield _json_line(unit.path, offset, raw, columns)
    else:
        yield from _pubtator(unit.path, offset, raw)


def _pubmed(path: str, offset: int, tag: str, record: bytes | None) -> Record:
    parsed = parse_record(record, tag, path, offset)
    if isinstance(parsed, PubmedArticle):
        return Document(parsed.pmid, parsed.text, parsed.title, dict(parsed.meta, has_abstract=bool(parsed.abstract)))
    if isinstance(parsed, PubmedDeletion):
        return Deletion(parsed.pmids, f"byte {offset}")
    return DocumentError(path, parsed.reason, location=f"byte {offset}")


def _pubtator(path: str, offset: int, lines: list[bytes]) -> Iterator[Record]:
    starts, position = [], offset
    for line in lines:
        starts.append(position)
        position += len(line)
    decoded = (line.decode("utf-8", errors="replace") for line in lines)
    for record in iter_pubtator_records(decoded, path):
        if isinstance(record, PubtatorFormatError):
            yield DocumentError(path, record.reason, location=f"byte {starts[record.line_number - 1]}")
        else:
            yield Document(record.pmid, record.text, record.title)


def _json_line(path: str, offset: int, raw: bytes, columns: Columns) -> Record:
    location = f"byte {offset}"
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        return DocumentError(path, f"undecodable bytes (not UTF-8): {error.reason}", location=location)
    except json.JSONDecodeError as error:
        return DocumentError(path, f"invalid JSON: {error.msg}", location=location)
    return _from_record(record, path, location, columns)


def _parquet(unit: WorkUnit, columns: Columns) -> Iterator[Record]:
    names = [columns.id, columns.text] + [name for name in (columns.title, columns.labels) if name]
    present = parquet_columns(unit.path)
    missing = [name for name in names[:2] if name not in present]
    if missing:
        yield DocumentError(unit.path, f"missing column(s) {missing}; has {present}", location=f"rows {unit.start}-{unit.end}")
        return
    for first_row, table in parquet_batches(unit, [name for name in names if name in present]):
        for index, record in enumerate(table.to_pylist()):
            yield _from_record(record, unit.path, f"row {first_row + index}", columns)


def _text_file(unit: WorkUnit) -> Iterator[Record]:
    with open_binary(unit.path) as stream:
        data = stream.read()
    doc_id = os.path.splitext(os.path.basename(unit.path.removesuffix(".gz")))[0]
    try:
        yield Document(doc_id, data.decode("utf-8"))
    except UnicodeDecodeError as error:
        yield DocumentError(unit.path, f"undecodable bytes (not UTF-8) at byte {error.start}", doc_id=doc_id)


def _from_record(record, path: str, location: str, columns: Columns) -> Document | DocumentError:
    if not isinstance(record, dict):
        return DocumentError(path, f"expected an object, got {type(record).__name__}", location=location)
    doc_id, text = record.get(columns.id), record.get(columns.text)
    if doc_id is None or not str(doc_id).strip():
        return DocumentError(path, f"missing {columns.id!r}", location=location)
    if not isinstance(text, str):
        return DocumentError(path, f"{columns.text!r} is missing or not a string", doc_id=str(doc_id), location=location)
    title = record.get(columns.title) if columns.title else None
    meta = {"labels": record[columns.labels]} if columns.labels and record.get(columns.labels) is not None else {}
    return Document(str(doc_id), text, title if isinstance(title, str) else None, meta)
