"""PubTator reader and writer.

One document per block, blocks separated by blank lines:

    PMID|t|title
    PMID|a|abstract
    PMID<TAB>start<TAB>end<TAB>text<TAB>type<TAB>concept_id     (offsets into title + " " + abstract)
    PMID<TAB>relation_type<TAB>id1<TAB>id2                      (relation lines: skipped)

`iter_pubtator_records` parses each block on its own and yields a `PubtatorFormatError` for a bad one
instead of raising, so a job can log it and go on with the rest of the file.
"""

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import fsspec

PathLike = str | os.PathLike

# `PMID|t|text` or `PMID|a|text`; the text itself may contain `|`.
_TEXT_LINE = re.compile(r"^([^|\t]+)\|([ta])\|(.*)$")
_MENTION_FIELDS = 6
_RELATION_FIELDS = 4


@dataclass
class PubtatorMention:
    start: int
    end: int
    text: str
    type: str
    concept_id: str


@dataclass
class PubtatorDocument:
    pmid: str
    title: str
    abstract: str
    mentions: list[PubtatorMention]

    @property
    def text(self) -> str:
        return self.title + " " + self.abstract


class PubtatorFormatError(ValueError):
    """A malformed PubTator record; raised by `read_pubtator`, yielded by `iter_pubtator_records`."""

    def __init__(self, source_name: str, line_number: int, reason: str):
        super().__init__(f"{source_name}:{line_number}: {reason}")
        self.source_name = source_name
        self.line_number = line_number
        self.reason = reason


NumberedLine = tuple[int, str]


def read_pubtator(path: PathLike) -> list[PubtatorDocument]:
    """Read a PubTator file (local path or fsspec URL); the first malformed record raises ValueError."""
    with fsspec.open(path, "rt", encoding="utf-8") as file:
        return list(iter_pubtator(file, source_name=str(path)))


def iter_pubtator(lines: Iterable[str], source_name: str) -> Iterator[PubtatorDocument]:
    for record in iter_pubtator_records(lines, source_name):
        if isinstance(record, PubtatorFormatError):
            raise record
        yield record


def iter_pubtator_records(
    lines: Iterable[str], source_name: str
) -> Iterator[PubtatorDocument | PubtatorFormatError]:
    """Yield one document, or one error, per record; an error does not stop the iteration."""
    for block in _iter_blocks(lines):
        try:
            yield _parse_block(block, source_name)
        except PubtatorFormatError as error:
            yield error


def mention_mismatches(doc: PubtatorDocument) -> list[PubtatorMention]:
    """Mentions whose text differs from the document text at their offsets."""
    text = doc.text
    return [mention for mention in doc.mentions if text[mention.start : mention.end] != mention.text]


def write_pubtator(docs: Iterable[PubtatorDocument], path_or_file: PathLike | IO[str]) -> None:
    """Write documents in PubTator format to a path, an fsspec URL or an open text file."""
    if hasattr(path_or_file, "write"):
        _write_documents(docs, path_or_file)
        return
    with fsspec.open(path_or_file, "wt", encoding="utf-8") as file:
        _write_documents(docs, file)


def format_pubtator_document(doc: PubtatorDocument) -> str:
    """The document's lines, each ending in a newline (no blank separator line)."""
    _check_writable(doc)
    lines = [f"{doc.pmid}|t|{doc.title}", f"{doc.pmid}|a|{doc.abstract}"]
    for mention in doc.mentions:
        fields = [doc.pmid, str(mention.start), str(mention.end), mention.text, mention.type, mention.concept_id]
        lines.append("\t".join(fields))
    return "".join(line + "\n" for line in lines)


def _write_documents(docs: Iterable[PubtatorDocument], file: IO[str]) -> None:
    for doc in docs:
        file.write(format_pubtator_document(doc))
        file.write("\n")


def _check_writable(doc: PubtatorDocument) -> None:
    """Reject values that would break the line/tab structure of the format."""
    for name, value in [("title", doc.title), ("abstract", doc.abstract)]:
        if "\n" in value or "\r" in value:
            raise ValueError(f"document {doc.pmid}: {name} contains a line break")
    for mention in doc.mentions:
        for value in (mention.text, mention.type, mention.concept_id):
            if any(character in value for character in "\t\r\n"):
                raise ValueError(f"document {doc.pmid}: mention field {value!r} contains a tab or line break")


def _iter_blocks(lines: Iterable[str]) -> Iterator[list[NumberedLine]]:
    """Group non-blank lines into records; a blank line or a new title line starts the next record."""
    block: list[NumberedLine] = []
    for line_number, raw_line in enumerate(lines, start=1):
        line = raw_line.rstrip("\r\n")
        starts_new_record = not line.strip() or _is_title_line(line)
        if starts_new_record and block:
            yield block
            block = []
        if line.strip():
            block.append((line_number, line))
    if block:
        yield block


def _is_title_line(line: str) -> bool:
    match = _TEXT_LINE.match(line)
    return match is not None and match.group(2) == "t"


def _parse_block(block: list[NumberedLine], source_name: str) -> PubtatorDocument:
    title_line_number, title_line = block[0]
    pmid, title = _parse_text_line(title_line, "t", source_name, title_line_number)
    if len(block) < 2:
        raise PubtatorFormatError(source_name, title_line_number, f"document {pmid} has no abstract line")
    abstract_line_number, abstract_line = block[1]
    abstract_pmid, abstract = _parse_text_line(abstract_line, "a", source_name, abstract_line_number)
    _check_pmid(abstract_pmid, pmid, source_name, abstract_line_number)

    mentions = []
    for line_number, line in block[2:]:
        fields = line.split("\t")
        _check_pmid(fields[0], pmid, source_name, line_number)
        if len(fields) == _RELATION_FIELDS:
            continue
        # Mentions have 6 fields; some corpora omit the concept id (5) or add composite-mention parts (7+).
        if len(fields) < _MENTION_FIELDS - 1:
            raise PubtatorFormatError(
                source_name,
                line_number,
                f"expected a mention line with {_MENTION_FIELDS} tab-separated fields "
                f"or a relation line with {_RELATION_FIELDS}, got {len(fields)} fields: {line!r}",
            )
        mentions.append(_parse_mention(fields, source_name, line_number))
    return PubtatorDocument(pmid=pmid, title=title, abstract=abstract, mentions=mentions)


def _parse_text_line(line: str, expected_kind: str, source_name: str, line_number: int) -> tuple[str, str]:
    match = _TEXT_LINE.match(line)
    if match is None or match.group(2) != expected_kind:
        expected = "PMID|t|title" if expected_kind == "t" else "PMID|a|abstract"
        raise PubtatorFormatError(source_name, line_number, f"expected a '{expected}' line, got {line[:80]!r}")
    return match.group(1), match.group(3)


def _parse_mention(fields: list[str], source_name: str, line_number: int) -> PubtatorMention:
    _, start_field, end_field, text, mention_type = fields[:5]
    concept_id = fields[5] if len(fields) > 5 else ""
    try:
        start, end = int(start_field), int(end_field)
    except ValueError:
        raise PubtatorFormatError(
            source_name, line_number, f"mention offsets must be integers, got {start_field!r} and {end_field!r}"
        ) from None
    if not 0 <= start < end:
        raise PubtatorFormatError(source_name, line_number, f"invalid mention offsets {start}..{end}")
    return PubtatorMention(start=start, end=end, text=text, type=mention_type, concept_id=concept_id)


def _check_pmid(found: str, expected: str, source_name: str, line_number: int) -> None:
    if found != expected:
        raise PubtatorFormatError(
            source_name, line_number, f"line belongs to document {found!r} inside document {expected!r}"
        )
