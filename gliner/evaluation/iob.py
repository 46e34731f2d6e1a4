"""Reader for IOB2 corpora (`token<TAB>tag` per line, a blank line ends a sentence).

Sentences become GLiNER training examples: `{"tokenized_text": [...], "ner": [[start, end, label], ...]}`
with word indices and an INCLUSIVE end, as GLiNER expects.
"""

import os
from collections.abc import Iterable, Iterator

import fsspec

from .metrics import spans_from_iob, split_iob_tag

DOCSTART_TOKEN = "-DOCSTART-"

PathLike = str | os.PathLike


def read_iob(path: PathLike, label_map: dict[str, str] | None = None) -> list[dict]:
    """Read an IOB2 file (local path or fsspec URL) into GLiNER examples, renaming types with `label_map`."""
    with fsspec.open(path, "rt", encoding="utf-8") as file:
        examples = [
            example_from_tagged_sentence(tokens, tags)
            for tokens, tags in iter_iob_sentences(file, source_name=str(path))
        ]
    if label_map is not None:
        _rename_labels(examples, label_map, source_name=str(path))
    return examples


def iob_entity_types(path: PathLike) -> list[str]:
    return entity_types(read_iob(path))


def entity_types(examples: list[dict]) -> list[str]:
    """The sorted entity types that occur in GLiNER examples."""
    return sorted({label for example in examples for _, _, label in example["ner"]})


def iter_iob_sentences(lines: Iterable[str], source_name: str) -> Iterator[tuple[list[str], list[str]]]:
    """Yield `(tokens, tags)` per sentence; `-DOCSTART-` lines act as sentence breaks and are dropped."""
    tokens: list[str] = []
    tags: list[str] = []
    for line_number, raw_line in enumerate(lines, start=1):
        line = raw_line.rstrip("\r\n")
        if not line.strip() or line.split("\t", 1)[0] == DOCSTART_TOKEN:
            if tokens:
                yield tokens, tags
            tokens, tags = [], []
            continue
        token, tag = _parse_token_line(line, source_name, line_number)
        tokens.append(token)
        tags.append(tag)
    if tokens:
        yield tokens, tags


def example_from_tagged_sentence(tokens: list[str], tags: list[str]) -> dict:
    ner = [[start, end - 1, label] for start, end, label in spans_from_iob(tags)]
    return {"tokenized_text": tokens, "ner": ner}


def _parse_token_line(line: str, source_name: str, line_number: int) -> tuple[str, str]:
    fields = line.split("\t")
    if len(fields) != 2 or not fields[0]:
        raise ValueError(f"{source_name}:{line_number}: expected 'token<TAB>tag', got {line!r}")
    token, tag = fields
    try:
        split_iob_tag(tag)
    except ValueError as error:
        raise ValueError(f"{source_name}:{line_number}: {error}") from None
    return token, tag


def _rename_labels(examples: list[dict], label_map: dict[str, str], source_name: str) -> None:
    found_types = {label for example in examples for _, _, label in example["ner"]}
    missing_types = sorted(found_types - set(label_map))
    if missing_types:
        raise ValueError(f"{source_name}: entity types missing from label_map: {missing_types}")
    for example in examples:
        example["ner"] = [[start, end, label_map[label]] for start, end, label in example["ner"]]
