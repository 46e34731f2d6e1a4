"""PubMed baseline and update files (`.xml`, `.xml.gz`): articles, deletions and per-record errors.

The file is split into records (`<PubmedArticle>`, `<PubmedBookArticle>`, `<DeleteCitation>`) while streaming, and
each record is parsed on its own, so a broken record becomes one error and the rest of the file is still read.
A document's text is its title and abstract joined by a space (PubTator's convention); structured abstracts keep
their section labels as "LABEL: text", sections joined by a space.
"""
from __future__ import annotations

import gzip
import io
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

_RECORD_START = re.compile(r"<(PubmedArticle|PubmedBookArticle|DeleteCitation)[\s>]")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class PubmedArticle:
    pmid: str
    title: str
    abstract: str
    meta: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return f"{self.title} {self.abstract}".strip() if self.abstract else self.title


@dataclass(frozen=True)
class PubmedDeletion:
    pmids: list[str]


@dataclass(frozen=True)
class PubmedRecordError:
    source: str
    line: int
    reason: str


def open_binary(path: str) -> io.BufferedIOBase:
    """A byte stream for a local path or fsspec URL; `.gz` files are decompressed on the fly. Lines are decoded
    one by one by the reader, so undecodable bytes spoil one record, not the file."""
    import fsspec

    raw = fsspec.open(str(path), "rb").open()
    return gzip.GzipFile(fileobj=raw) if str(path).endswith(".gz") else raw


def iter_pubmed_records(lines: Iterable[str | bytes], source: str) -> Iterator[PubmedArticle | PubmedDeletion | PubmedRecordError]:
    """Articles, deletions and errors in file order; `lines` are str, or bytes decoded as UTF-8."""
    buffer: list[str] = []
    tag, start_line, undecodable = None, 0, None
    line_number = 0
    try:
        for line_number, line in enumerate(lines, start=1):
            if isinstance(line, bytes):
                try:
                    line = line.decode("utf-8")
                except UnicodeDecodeError as error:
                    undecodable = undecodable or f"undecodable bytes (not UTF-8) on line {line_number}: {error.reason}"
                    line = line.decode("utf-8", errors="replace")
            if tag is None:
                match = _RECORD_START.search(line)
                if not match:
                    continue
                tag, start_line, line = match.group(1), line_number, line[match.start():]
            buffer.append(line)
            closing = f"</{tag}>"
            if closing in line:
                record, _, _ = "".join(buffer).partition(closing)
                if undecodable:
                    yield PubmedRecordError(source, start_line, undecodable)
                else:
                    yield _parse_record(record + closing, tag, source, start_line)
                buffer, tag, undecodable = [], None, None
            elif tag is None:
                undecodable = None  # bad bytes between records spoil nothing
    except (OSError, EOFError) as error:  # a truncated or corrupt .gz
        yield PubmedRecordError(source, line_number, f"unreadable file: {error}")
        return
    if tag is not None:
        yield PubmedRecordError(source, start_line, f"<{tag}> record is not closed before the end of the file")


def _parse_record(xml: str, tag: str, source: str, line: int) -> PubmedArticle | PubmedDeletion | PubmedRecordError:
    try:
        element = ElementTree.fromstring(xml)
    except ElementTree.ParseError as error:
        return PubmedRecordError(source, line, f"malformed XML in <{tag}>: {error}")
    if tag == "DeleteCitation":
        return PubmedDeletion([pmid.text.strip() for pmid in element.iter("PMID") if pmid.text])
    pmid = element.find(".//PMID")
    if pmid is None or not (pmid.text or "").strip():
        return PubmedRecordError(source, line, f"<{tag}> has no PMID")
    title = _text(element.find(".//ArticleTitle")) or _text(element.find(".//BookTitle"))
    sections = [_section(part) for part in element.findall(".//Abstract/AbstractText")]
    abstract = " ".join(section for section in sections if section)
    meta = {"journal": _text(element.find(".//Journal/Title")), "year": _text(element.find(".//PubDate/Year")),
            "language": _text(element.find(".//Language")), "structured_abstract": any(p.get("Label") for p in element.findall(".//Abstract/AbstractText"))}
    return PubmedArticle(pmid.text.strip(), title, abstract, {key: value for key, value in meta.items() if value})


def _section(part: ElementTree.Element) -> str:
    body = _text(part)
    label = (part.get("Label") or "").strip()
    return f"{label}: {body}" if label and body else body


def _text(element: ElementTree.Element | None) -> str:
    """All text inside an element (inline markup such as <i>, <sup> flattened), whitespace collapsed."""
    if element is None:
        return ""
    return _SPACES.sub(" ", "".join(element.itertext())).strip()
