"""Work units: pieces of input files, small enough that many workers share one big file, planned alike on every run.

- Parquet: ranges of rows, cut at row-group boundaries, and inside a row group larger than a unit.
- JSON Lines, PubTator and PubMed XML (plain or `.gz`): ranges of bytes; a unit reads the records that start in its
  range (`corpus.byte_ranges`), and the last unit of a file is open-ended, so a wrong size estimate costs balance,
  never records.
- Text files (one document per file): the whole file.

A unit holds at most about `UnitSizes.documents` documents and `UnitSizes.bytes` bytes of input; for byte ranges
the documents per byte are estimated from the file's first MiB. A unit's id names its file (its name and a hash of its full
path: the file key) and its range, so the same files and sizes plan the same ids, whichever pattern names them.
"""
from __future__ import annotations

import hashlib
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath

from .faults import retry_transient

FORMATS = ("pubmed-xml", "pubtator", "jsonl", "parquet", "text")
SAMPLE_BYTES = 1 << 20
_PUBTATOR_TITLE = re.compile(rb"(?m)^[^|\t\n]+\|t\|")


class InputError(ValueError):
    """An input the readers cannot take (a format that cannot be told or is unknown); jobs report it as bad input."""


@dataclass(frozen=True)
class UnitSizes:
    documents: int = 10_000
    bytes: int = 256 << 20


@dataclass(frozen=True)
class WorkUnit:
    unit_id: str
    file_key: str
    path: str
    format: str
    kind: str  # "rows" (Parquet), "bytes" (line and record formats) or "file" (text)
    start: int
    end: int | None  # exclusive; None: to the end of the file

    def as_row(self) -> dict:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict) -> "WorkUnit":
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


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
    raise InputError(f"cannot tell the format of {path}; pass format= one of {FORMATS}")


def list_input_files(pattern: str) -> list[str]:
    """Files under a directory (names starting with . or _ left out), matching a glob, or the single file named;
    sorted, URLs kept as URLs."""
    import fsspec

    filesystem, _, paths = fsspec.get_fs_token_paths(pattern)
    if len(paths) == 1 and filesystem.isdir(paths[0]):
        paths = [path for path in filesystem.find(paths[0]) if not PurePosixPath(path).name.startswith((".", "_"))]
    elif len(paths) == 1 and not filesystem.exists(paths[0]):
        paths = []
    if not paths:
        raise FileNotFoundError(f"no input files at {pattern}")
    protocol = filesystem.protocol if isinstance(filesystem.protocol, str) else filesystem.protocol[0]
    return sorted(path if protocol in ("file", "local") else f"{protocol}://{path}" for path in paths)


def file_key(path: str) -> str:
    """A stable, file-system-safe name per input file, whatever pattern named it: its file name, plus a short hash
    of its full path (or URL)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", PurePosixPath(path).name)[-80:]
    return f"{readable}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


def plan_inputs(pattern: str, data_format: str, sizes: UnitSizes, key_prefix: str = "", threads: int = 16) -> list[WorkUnit]:
    """The units of every file the pattern names, files in sorted order; footers, trailers and samples are read
    by a pool of threads (planning is I/O: a corpus of a thousand files on object storage plans in seconds)."""
    files = list_input_files(pattern)

    def plan(path: str) -> list[WorkUnit]:
        file_format = infer_format(path) if data_format == "auto" else data_format
        return retry_transient(lambda: plan_file(path, file_format, key_prefix + file_key(path), sizes), f"planning {path}")

    with ThreadPoolExecutor(max(1, min(threads, len(files)))) as pool:
        return [unit for units in pool.map(plan, files) for unit in units]


def plan_file(path: str, data_format: str, key: str, sizes: UnitSizes) -> list[WorkUnit]:
    if data_format not in FORMATS:
        raise InputError(f"unknown format {data_format!r}; expected one of {FORMATS}")
    if data_format == "parquet":
        kind, ranges = "rows", row_ranges(path, sizes)
    elif data_format == "text":
        kind, ranges = "file", [(0, None)]
    else:
        kind, ranges = "bytes", byte_ranges(path, data_format, sizes)
    return [WorkUnit(unit_id(key, kind, start, end), key, path, data_format, kind, start, end) for start, end in ranges]


def unit_id(key: str, kind: str, start: int, end: int | None) -> str:
    return f"{key}.{kind[0]}{start}-{'end' if end is None else end}"


def row_ranges(path: str, sizes: UnitSizes) -> list[tuple[int, int]]:
    """Row ranges from the Parquet footer: whole row groups while they fit a unit, equal cuts of a larger one."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb") as handle:
        metadata = pq.ParquetFile(handle).metadata
    groups = [metadata.row_group(index) for index in range(metadata.num_row_groups)]
    total_rows = sum(group.num_rows for group in groups)
    total_bytes = sum(group.total_byte_size for group in groups)
    limit = max(1, min(sizes.documents, int(sizes.bytes * total_rows / total_bytes) if total_bytes else sizes.documents))
    ranges, start, cursor = [], 0, 0
    for group in groups:
        group_start, cursor = cursor, cursor + group.num_rows
        if cursor - start > limit and group_start > start:
            ranges.append((start, group_start))
            start = group_start
        pieces = math.ceil((cursor - start) / limit)
        for piece in range(1, pieces):
            ranges.append((start, start + (cursor - start) // (pieces - piece + 1)))
            start = ranges[-1][1]
    if cursor > start or not ranges:
        ranges.append((start, cursor))
    return ranges


def byte_ranges(path: str, data_format: str, sizes: UnitSizes) -> list[tuple[int, int | None]]:
    """Equal byte ranges of the (uncompressed) file, the last one open-ended."""
    from .byte_ranges import head, uncompressed_size

    size = uncompressed_size(path)
    sample = head(path, SAMPLE_BYTES)
    if not sample:  # empty, or damaged from the start: one unit, whose reader reports it
        return [(0, None)]
    records = max(1, _record_starts(sample, data_format))
    per_unit = max(1, min(sizes.bytes, -(-sizes.documents * len(sample) // records)))
    count = max(1, math.ceil(size / per_unit))
    return [(index * per_unit, None if index == count - 1 else (index + 1) * per_unit) for index in range(count)]


def _record_starts(sample: bytes, data_format: str) -> int:
    if data_format == "jsonl":
        return sample.count(b"\n") + (not sample.endswith(b"\n"))
    if data_format == "pubtator":
        return len(_PUBTATOR_TITLE.findall(sample))
    from .pubmed_xml import RECORD_START

    return sum(1 for _ in RECORD_START.finditer(sample))
