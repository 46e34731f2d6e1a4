"""Reading a byte range of a (possibly gzipped) file: the lines or records that start inside it.

A range [start, end) owns every record whose first byte lies in it, so consecutive ranges of one file read each
record exactly once, wherever the cuts fall: a reader skips the tail of a record that began before `start` and
reads past `end` to finish the last record it owns. `end=None` reads to the end of the file. Offsets of a `.gz` file
count uncompressed bytes; reaching `start` means decompressing and discarding what comes before it.
"""
from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Iterator

from .faults import is_transient

READ_CHUNK = 1 << 20
GZIP_CHUNK = 1 << 16  # a damaged .gz loses what decompressed into the chunk being filled, so a small one


def open_binary(path: str) -> io.BufferedIOBase:
    """A buffered byte stream for a local path or fsspec URL; `.gz` files are decompressed on the fly."""
    import fsspec

    raw = fsspec.open(str(path), "rb").open()
    if str(path).endswith(".gz"):
        return io.BufferedReader(gzip.GzipFile(fileobj=raw), GZIP_CHUNK)
    return raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, READ_CHUNK)


def open_at(path: str, start: int) -> io.BufferedIOBase:
    stream = open_binary(path)
    if start and str(path).endswith(".gz"):
        _skip(stream, start)  # decompress and discard (gzip's own seek does it 8 KiB at a time, 2-3x slower)
    elif start:
        stream.seek(start)
    return stream


def _skip(stream: io.BufferedIOBase, count: int) -> None:
    while count > 0:
        chunk = stream.read(min(count, READ_CHUNK))
        if not chunk:
            return
        count -= len(chunk)


def lines_in_range(path: str, start: int, end: int | None) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for each line, newline included, whose first byte lies in [start, end)."""
    with open_at(path, max(start - 1, 0)) as stream:
        offset = start
        if start > 0 and stream.read(1) != b"\n":
            offset += len(stream.readline())  # the rest of a line that began before `start`
        while end is None or offset < end:
            line = stream.readline()
            if not line:
                return
            yield offset, line
            offset += len(line)


def uncompressed_size(path: str) -> int:
    """The file's size; for `.gz`, its uncompressed size, found by decompressing it once (`gzip_size`): the size a
    gzip trailer records is modulo 4 GiB and covers only the last member of a multi-member file, so it can be off by
    any factor, and a unit planned from it could hold gigabytes."""
    import fsspec

    if not str(path).endswith(".gz"):
        filesystem, resolved = fsspec.core.url_to_fs(path)
        return filesystem.size(resolved)
    with fsspec.open(str(path), "rb") as raw:
        return gzip_size(raw)


def gzip_size(stream: io.RawIOBase, chunk: int = READ_CHUNK) -> int:
    """The uncompressed size of a gzip stream of one or more members; a damaged stream counts what decompresses
    before the damage (its reader reports the damage)."""
    size, decompressor = 0, zlib.decompressobj(wbits=31)
    try:
        while data := stream.read(chunk):
            while data:
                size += len(decompressor.decompress(data))
                if not decompressor.eof:
                    break
                data = decompressor.unused_data  # the next member starts here
                decompressor = zlib.decompressobj(wbits=31)
    except zlib.error:
        pass
    return size


def head(path: str, size: int) -> bytes:
    """The first `size` bytes (uncompressed), or what a damaged file yields before its damage; for estimating how
    many records a byte holds."""
    chunks, read = [], 0
    try:
        with open_binary(path) as stream:
            while read < size:
                chunk = stream.read(min(1 << 16, size - read))
                if not chunk:
                    break
                chunks.append(chunk)
                read += len(chunk)
    except (OSError, EOFError, zlib.error) as error:
        if is_transient(error):
            raise
    return b"".join(chunks)


class TagScanner:
    """XML records `<Tag ...>...</Tag>` whose opening `<` lies in [start, end), found in large chunks by a regex
    over bytes, never by parsing the file. Records do not nest, and `<` never appears unescaped in XML text, so a
    match of `start_pattern` is always a record's opening tag."""

    def __init__(self, stream: io.BufferedIOBase, start: int, start_pattern: re.Pattern):
        self.stream, self.pattern = stream, start_pattern
        self.buffer, self.buffer_offset, self.eof = b"", start, False

    def records(self, end: int | None) -> Iterator[tuple[int, str, bytes | None]]:
        """(offset, tag, record bytes), or (offset, tag, None) for a record the file ends inside."""
        position = 0  # in the buffer
        while True:
            match = self.pattern.search(self.buffer, position)
            if match is None:
                if self.eof:
                    return
                position = self._refill(max(position, len(self.buffer) - 64))  # keep a tag cut by the chunk edge
                continue
            offset = self.buffer_offset + match.start()
            if end is not None and offset >= end:
                return
            tag = match.group(1).decode("ascii")
            closing = f"</{tag}>".encode("ascii")
            close = self.buffer.find(closing, match.end())
            while close < 0 and not self.eof:
                kept = match.start()
                self._refill(kept)
                match = self.pattern.match(self.buffer, 0)
                close = self.buffer.find(closing, match.end())
            if close < 0:
                yield offset, tag, None
                return
            yield offset, tag, self.buffer[match.start():close + len(closing)]
            position = close + len(closing)

    def _refill(self, keep_from: int) -> int:
        """Drop the buffer before `keep_from`, append a chunk; returns the new position of `keep_from` (0)."""
        chunk = self.stream.read1(READ_CHUNK)  # one read of the stream: a damaged .gz loses at most its last chunk
        self.eof = not chunk
        self.buffer_offset += keep_from
        self.buffer = self.buffer[keep_from:] + chunk
        return 0
