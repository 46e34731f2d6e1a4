"""Documents from corpora, one work unit at a time: PubMed XML, PubTator, JSONL, Parquet, text files.

Every reader yields `Document`, `DocumentError` or (PubMed) `Deletion` values in file order and never raises for a
bad record, so a job can route errors to its `errors` output and keep going. A document's text is what entity
offsets refer to. An error's `location` says where its record is: "byte N" (uncompressed, for line and record
formats) or "row N" (Parquet).
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from gliner.pubtator import PubtatorFormatError, iter_pubtator_records

from .byte_ranges import open_binary
from .pubmed_xml import PubmedArticle, PubmedDeletion, iter_pubmed_records
from .unit_records import jsonl_lines, parquet_batches, parquet_columns, pubtator_blocks
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


Record = Document | DocumentError | Deletion


def read_unit(unit: WorkUnit, columns: Columns = Columns()) -> Iterator[Record]:
    """The unit's records; a file that cannot be read on (a truncated .gz, a corrupt Parquet footer) ends the unit
    with one error, after the records read before it."""
    readers = {"pubmed-xml": _pubmed, "pubtator": _pubtator, "jsonl": _jsonl, "parquet": _parquet, "text": _text_file}
    if unit.format not in readers:
        raise ValueError(f"unknown format {unit.format!r}; expected one of {FORMATS}")
    try:
        yield from readers[unit.format](unit, columns)
    except (OSError, EOFError, zlib.error, pa.ArrowInvalid) as error:
        yield DocumentError(unit.path, f"unreadable file: {error}", location=f"byte {unit.start}" if unit.kind == "bytes" else None)


def read_documents(path: str, data_format: str, columns: Columns = Columns()) -> Iterator[Record]:
    """A whole file, as one unit (tests, benchmarks and small inputs)."""
    for unit in plan_file(path, data_format, "file", UnitSizes(documents=1 << 62, bytes=1 << 62)):
        yield from read_unit(unit, columns)


def _pubmed(unit: WorkUnit, columns: Columns) -> Iterator[Record]:
    for record in iter_pubmed_records(unit.path, unit.start, unit.end):
        if isinstance(record, PubmedArticle):
            yield Document(record.pmid, record.text, record.title, dict(record.meta, has_abstract=bool(record.abstract)))
        elif isinstance(record, PubmedDeletion):
            yield Deletion(record.pmids, f"byte {record.offset}")
        else:
            yield DocumentError(unit.path, record.reason, location=f"byte {record.offset}")


def _pubtator(unit: WorkUnit, columns: Columns) -> Iterator[Record]:
    for offset, lines in pubtator_blocks(unit):
        starts, position = [], offset
        for line in lines:
            starts.append(position)
            position += len(line)
        decoded = (line.decode("utf-8", errors="replace") for line in lines)
        for record in iter_pubtator_records(decoded, unit.path):
            if isinstance(record, PubtatorFormatError):
                yield DocumentError(unit.path, record.reason, location=f"byte {starts[record.line_number - 1]}")
            else:
                yield Document(record.pmid, record.text, record.title)


def _jsonl(unit: WorkUnit, columns: Columns) -> Iterator[Record]:
    for offset, raw in jsonl_lines(unit):
        location = f"byte {offset}"
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            yield DocumentError(unit.path, f"undecodable bytes (not UTF-8): {error.reason}", location=location)
            continue
        except json.JSONDecodeError as error:
            yield DocumentError(unit.path, f"invalid JSON: {error.msg}", location=location)
            continue
        yield _from_record(record, unit.path, location, columns)


def _parquet(unit: WorkUnit, columns: Columns) -> Iterator[Record]:
    names = [columns.id, columns.text] + ([columns.title] if columns.title else [])
    present = parquet_columns(unit.path)
    missing = [name for name in names[:2] if name not in present]
    if missing:
        yield DocumentError(unit.path, f"missing column(s) {missing}; has {present}", location=f"rows {unit.start}-{unit.end}")
        return
    for first_row, table in parquet_batches(unit, [name for name in names if name in present]):
        for index, record in enumerate(table.to_pylist()):
            yield _from_record(record, unit.path, f"row {first_row + index}", columns)


def _text_file(unit: WorkUnit, columns: Columns) -> Iterator[Record]:
    import os

    path = unit.path
    with open_binary(path) as stream:
        data = stream.read()
    doc_id = os.path.splitext(os.path.basename(path.removesuffix(".gz")))[0]
    try:
        yield Document(doc_id, data.decode("utf-8"))
    except UnicodeDecodeError as error:
        yield DocumentError(path, f"undecodable bytes (not UTF-8) at byte {error.start}", doc_id=doc_id)


def _from_record(record, path: str, location: str, columns: Columns) -> Document | DocumentError:
    if not isinstance(record, dict):
        return DocumentError(path, f"expected an object, got {type(record).__name__}", location=location)
    doc_id, text = record.get(columns.id), record.get(columns.text)
    if doc_id is None or not str(doc_id).strip():
        return DocumentError(path, f"missing {columns.id!r}", location=location)
    if not isinstance(text, str):
        return DocumentError(path, f"{columns.text!r} is missing or not a string", doc_id=str(doc_id), location=location)
    title = record.get(columns.title) if columns.title else None
    return Document(str(doc_id), text, title if isinstance(title, str) else None)
