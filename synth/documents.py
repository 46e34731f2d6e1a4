"""Reading documents from corpora, one input file at a time: PubMed XML, PubTator, JSONL, Parquet, text files.

Every reader yields `Document` or `DocumentError` values in file order and never raises for a bad record, so a job
can route errors to an `errors` output and keep going. A document's text is what entity offsets refer to.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from gliner.pubtator import PubtatorFormatError, iter_pubtator_records

from .pubmed_xml import PubmedArticle, PubmedDeletion, PubmedRecordError, iter_pubmed_records, open_binary

FORMATS = ("pubmed-xml", "pubtator", "jsonl", "parquet", "text")


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
    line: int | None = None


def infer_format(path: str) -> str:
    name = path.lower()
    if name.endswith((".xml", ".xml.gz")):
        return "pubmed-xml"
    if name.endswith((".pubtator", ".pubtator.gz", ".pubtator.txt")):
        return "pubtator"
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".txt"):
        return "text"
    raise ValueError(f"cannot tell the format of {path}; pass format= one of {FORMATS}")


def read_documents(path: str, data_format: str, id_column: str = "doc_id", text_column: str = "text",
                   title_column: str | None = None) -> Iterator[Document | DocumentError]:
    if data_format == "pubmed-xml":
        yield from _pubmed(path)
    elif data_format == "pubtator":
        yield from _pubtator(path)
    elif data_format == "jsonl":
        yield from _jsonl(path, id_column, text_column, title_column)
    elif data_format == "parquet":
        yield from _parquet(path, id_column, text_column, title_column)
    elif data_format == "text":
        yield from _text_file(path)
    else:
        raise ValueError(f"unknown format {data_format!r}; expected one of {FORMATS}")


def _pubmed(path: str) -> Iterator[Document | DocumentError]:
    with open_binary(path) as stream:
        for record in iter_pubmed_records(stream, path):
            if isinstance(record, PubmedArticle):
                meta = dict(record.meta, has_abstract=bool(record.abstract))
                yield Document(record.pmid, record.text, record.title, meta)
            elif isinstance(record, PubmedDeletion):
                for pmid in record.pmids:
                    yield DocumentError(path, "deleted citation (DeleteCitation)", doc_id=pmid)
            elif isinstance(record, PubmedRecordError):
                yield DocumentError(path, record.reason, line=record.line)


def _pubtator(path: str) -> Iterator[Document | DocumentError]:
    with open_binary(path) as stream:
        lines = (_decode(line) for line in stream)
        for record in iter_pubtator_records(lines, path):
            if isinstance(record, PubtatorFormatError):
                yield DocumentError(path, record.reason, line=record.line_number)
            else:
                yield Document(record.pmid, record.text, record.title)


def _jsonl(path: str, id_column: str, text_column: str, title_column: str | None) -> Iterator[Document | DocumentError]:
    with open_binary(path) as stream:
        for line_number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as error:
                yield DocumentError(path, f"undecodable bytes (not UTF-8): {error.reason}", line=line_number)
                continue
            except json.JSONDecodeError as error:
                yield DocumentError(path, f"invalid JSON: {error.msg}", line=line_number)
                continue
            yield _from_record(record, path, line_number, id_column, text_column, title_column)


def _parquet(path: str, id_column: str, text_column: str, title_column: str | None) -> Iterator[Document | DocumentError]:
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb") as handle:
        table = pq.read_table(handle)
    missing = [column for column in (id_column, text_column) if column not in table.column_names]
    if missing:
        yield DocumentError(path, f"missing column(s) {missing}; has {table.column_names}")
        return
    for row_number, record in enumerate(table.to_pylist(), start=1):
        yield _from_record(record, path, row_number, id_column, text_column, title_column)


def _text_file(path: str) -> Iterator[Document | DocumentError]:
    import os

    with open_binary(path) as stream:
        data = stream.read()
    doc_id = os.path.splitext(os.path.basename(path))[0]
    try:
        yield Document(doc_id, data.decode("utf-8"))
    except UnicodeDecodeError as error:
        yield DocumentError(path, f"undecodable bytes (not UTF-8) at byte {error.start}", doc_id=doc_id)


def _from_record(record, path: str, line: int, id_column: str, text_column: str, title_column: str | None) -> Document | DocumentError:
    if not isinstance(record, dict):
        return DocumentError(path, f"expected an object, got {type(record).__name__}", line=line)
    doc_id, text = record.get(id_column), record.get(text_column)
    if doc_id is None or not str(doc_id).strip():
        return DocumentError(path, f"missing {id_column!r}", line=line)
    if not isinstance(text, str):
        return DocumentError(path, f"{text_column!r} is missing or not a string", doc_id=str(doc_id), line=line)
    title = record.get(title_column) if title_column else None
    return Document(str(doc_id), text, title if isinstance(title, str) else None)


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace")
