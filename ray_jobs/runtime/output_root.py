"""Where a job writes: a local folder or any fsspec URL (s3://, gs://, ...), with atomic writes.

A reader (or a rerun) never sees half a file:
- on object storage (s3, gs, az, memory) a file is one PUT of bytes held in memory: the object appears whole or not
  at all, and a commit costs one request per file, whatever the number of files already there;
- on a file system (a local disk, an NFS or EFS mount) a file goes to a temporary name beside its final one, then is
  renamed into place. Temporary names start with `.tmp-`; a rerun removes those a killed run left.
Listings are never cached: a marker written a moment ago is seen (s3fs's directory cache would answer from the first
listing of a folder for the life of the process). Transient storage faults are retried with backoff
(`corpus.faults`); a fault that persists raises `TransientFault`.
"""
from __future__ import annotations

import io
import json
import uuid
from typing import Callable

from corpus.faults import retry_transient

TEMPORARY_PREFIX = ".tmp-"
ATOMIC_PUT_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"}


class OutputRoot:
    def __init__(self, url: str):
        import fsspec

        self.filesystem, path = fsspec.core.url_to_fs(url, use_listings_cache=False)
        self.root = path.rstrip("/") or "/"
        protocol = self.filesystem.protocol if isinstance(self.filesystem.protocol, str) else self.filesystem.protocol[0]
        self.protocol = None if protocol in ("file", "local") else protocol
        self.atomic_puts = self.protocol in ATOMIC_PUT_PROTOCOLS

    def path(self, *parts: str) -> str:
        """A path on this root's file system."""
        return "/".join([self.root, *parts])

    def url(self, *parts: str) -> str:
        """The same place as a URL that another process (a Ray task, Ray Data) can open."""
        path = self.path(*parts)
        return path if self.protocol is None else f"{self.protocol}://{path}"

    def exists(self, *parts: str) -> bool:
        return retry_transient(lambda: self.filesystem.exists(self.path(*parts)), f"checking {self.url(*parts)}")

    def names(self, folder: str, suffix: str = "") -> list[str]:
        """File names in a folder (without `suffix`), temporaries left out; [] for a missing folder."""
        def listing() -> list[str]:
            try:
                return self.filesystem.ls(self.path(folder), detail=False)
            except FileNotFoundError:
                return []

        names = (entry.rstrip("/").rsplit("/", 1)[-1] for entry in retry_transient(listing, f"listing {self.url(folder)}"))
        return sorted(name.removesuffix(suffix) for name in names if name.endswith(suffix) and not name.startswith(TEMPORARY_PREFIX))

    def write_with(self, relative: str, write: Callable) -> None:
        """write(handle) into `relative`, atomically (see the module's docstring); transient faults retried."""
        if self.atomic_puts:
            buffer = io.BytesIO()
            write(buffer)
            data = buffer.getvalue()
            retry_transient(lambda: self.filesystem.pipe_file(self.path(relative), data), f"writing {self.url(relative)}")
        else:
            retry_transient(lambda: self._write_and_rename(relative, write), f"writing {self.url(relative)}")

    def _write_and_rename(self, relative: str, write: Callable) -> None:
        directory, name = self.path(relative).rsplit("/", 1)
        self.filesystem.makedirs(directory, exist_ok=True)
        temporary = f"{directory}/{TEMPORARY_PREFIX}{uuid.uuid4().hex}-{name}"
        try:
            with self.filesystem.open(temporary, "wb") as handle:
                write(handle)
            self.filesystem.mv(temporary, f"{directory}/{name}")
        except BaseException:
            if self.filesystem.exists(temporary):
                self.filesystem.rm(temporary)
            raise

    def write_bytes(self, relative: str, data: bytes) -> None:
        self.write_with(relative, lambda handle: handle.write(data))

    def write_json(self, relative: str, value) -> None:
        self.write_bytes(relative, (json.dumps(value, indent=2, default=str) + "\n").encode("utf-8"))

    def write_parquet(self, relative: str, table) -> None:
        import pyarrow.parquet as pq

        self.write_with(relative, lambda handle: pq.write_table(table, handle))

    def read_bytes(self, relative: str) -> bytes | None:
        """The file's bytes (one GET), or None when it is missing."""
        def read() -> bytes | None:
            try:
                # A ranged read: one GET (a plain one makes s3fs ask for the size first).
                return self.filesystem.cat_file(self.path(relative), start=0)
            except FileNotFoundError:
                return None

        return retry_transient(read, f"reading {self.url(relative)}")

    def read_json(self, relative: str):
        """The parsed file, or None when it is missing or not valid JSON (a file cut off by a crash)."""
        data = self.read_bytes(relative)
        try:
            return None if data is None else json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None

    def remove(self, *relatives: str) -> None:
        for relative in relatives:
            if self.exists(relative):
                retry_transient(lambda: self.filesystem.rm(self.path(relative), recursive=True), f"removing {self.url(relative)}")

    def move_folder(self, source: str, target: str) -> None:
        """Move a folder of this root to another place in it (`target` must not exist): a rename on a file system;
        on object storage a copy of each file, then the source's deletion (object stores have no folders to rename)."""
        if not self.atomic_puts:
            retry_transient(lambda: self.filesystem.mv(self.path(source), self.path(target), recursive=True), f"moving {self.url(source)}")
            return
        prefix = self.path(source) + "/"
        for path in retry_transient(lambda: self.filesystem.find(self.path(source)), f"listing {self.url(source)}"):
            destination = self.path(target, path.removeprefix(prefix))
            retry_transient(lambda: self.filesystem.copy(path, destination), f"copying {path}")
        self.remove(source)

    def remove_temporaries(self) -> int:
        """Delete what killed runs left half-written anywhere under the root; returns how many (object stores have none)."""
        if self.atomic_puts or not self.exists():
            return 0
        leftovers = [path for path in self.filesystem.find(self.root) if path.rsplit("/", 1)[-1].startswith(TEMPORARY_PREFIX)]
        for path in leftovers:
            self.filesystem.rm(path)
        return len(leftovers)
