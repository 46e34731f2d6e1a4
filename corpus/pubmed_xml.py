"""PubMed baseline and update files (`.xml`, `.xml.gz`): articles, deletions and per-record errors.

Records (`<PubmedArticle>`, `<PubmedBookArticle>`, `<DeleteCitation>`) are found by a scan over bytes and each is
parsed on its own, so a broken record becomes one error and the rest of the file is still read; a byte range of the
file reads the records that start inside it (`corpus.byte_ranges`). Errors carry the byte offset of their record
(uncompressed, for `.gz`).

A document's text is its title and abstract joined by one space (PubTator's convention); structured abstracts keep
their section labels as "LABEL: text", sections joined by one space. Title and section texts are the XML's exactly:
inline markup (`<i>`, `<sup>`, ...) is flattened to its text and whitespace inside a field is kept as is (double spaces,
tabs, newlines), so entity offsets into `PubmedArticle.text` index the text PubMed and PubTator have. Only the
whitespace at the two ends of a field is stripped; the joined text is the one that is tagged, so offsets into it stay
valid. Metadata (journal, year, language) is not tagged and has its whitespace collapsed.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass, field

from .byte_ranges import TagScanner, open_at
from .faults import is_transient

RECORD_START = re.compile(rb"<(PubmedArticle|PubmedBookArticle|DeleteCitation)[\s>]")
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
    offset: int = 0


@dataclass(frozen=True)
class PubmedRecordError:
    source: str
    offset: int
    reason: str


PubmedRecord = PubmedArticle | PubmedDeletion | PubmedRecordError


def iter_pubmed_records(path: str, start: int = 0, end: int | None = None) -> Iterator[PubmedRecord]:
    """Articles, deletions and errors in file order, for the records that start in [start, end)."""
    try:
        for offset, (tag, record) in raw_pubmed_records(path, start, end):
            yield parse_record(record, tag, path, offset)
    except (OSError, EOFError) as error:  # a truncated or corrupt .gz
        if is_transient(error):
            raise
        yield PubmedRecordError(path, start, f"unreadable file: {error}")


def raw_pubmed_records(path: str, start: int, end: int | None) -> Iterator[tuple[int, tuple[str, bytes | None]]]:
    """(offset, (tag, record bytes)) found by the scan, unparsed; bytes None for a record the file ends inside."""
    with open_at(path, start) as stream:
        for offset, tag, record in TagScanner(stream, start, RECORD_START).records(end):
            yield offset, (tag, record)


def parse_record(record: bytes | None, tag: str, source: str, offset: int) -> PubmedRecord:
    if record is None:
        return PubmedRecordError(source, offset, f"<{tag}> record is not closed before the end of the file")
    try:
        xml = record.decode("utf-8")
    except UnicodeDecodeError as error:
        return PubmedRecordError(source, offset, f"undecodable bytes (not UTF-8) at byte {offset + error.start}: {error.reason}")
    try:
        element = ElementTree.fromstring(xml)
    except ElementTree.ParseError as error:
        return PubmedRecordError(source, offset, f"malformed XML in <{tag}>: {error}")
    if tag == "DeleteCitation":
        return PubmedDeletion([pmid.text.strip() for pmid in element.iter("PMID") if pmid.text], offset)
    citation = element.find("MedlineCitation")
    if citation is None:  # a book article: the same fields, elsewhere
        return _article(element, element, source, offset, tag)
    return _article(citation, citation.find("Article"), source, offset, tag)


def _article(citation: ElementTree.Element, article: ElementTree.Element | None, source: str, offset: int, tag: str) -> PubmedRecord:
    pmid = citation.find("PMID")
    pmid = pmid if pmid is not None else citation.find(".//PMID")
    if pmid is None or not (pmid.text or "").strip():
        return PubmedRecordError(source, offset, f"<{tag}> has no PMID")
    scope = article if article is not None else citation
    title = _text(scope.find("ArticleTitle")) or _text(scope.find(".//ArticleTitle")) or _text(scope.find(".//BookTitle"))
    parts = scope.findall("Abstract/AbstractText") or scope.findall(".//Abstract/AbstractText")
    abstract = " ".join(section for section in map(_section, parts) if section)
    meta = {"journal": _collapsed(scope.find("Journal/Title")), "year": _collapsed(scope.find("Journal/JournalIssue/PubDate/Year")),
            "language": _collapsed(scope.find("Language")), "structured_abstract": any(part.get("Label") for part in parts)}
    return PubmedArticle(pmid.text.strip(), title, abstract, {key: value for key, value in meta.items() if value})


def _section(part: ElementTree.Element) -> str:
    body = _text(part)
    label = (part.get("Label") or "").strip()
    return f"{label}: {body}" if label and body else body


def _text(element: ElementTree.Element | None) -> str:
    """All text inside an element (inline markup such as <i>, <sup> flattened), its whitespace kept as is but for the
    two ends, which are stripped."""
    if element is None:
        return ""
    return "".join(element.itertext()).strip()


def _collapsed(element: ElementTree.Element | None) -> str:
    """An element's text with runs of whitespace made one space, for metadata that is not tagged."""
    return _SPACES.sub(" ", _text(element))
