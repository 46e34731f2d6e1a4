"""Where a job writes: a local folder or any fsspec URL (s3://, gs://, ...), with atomic writes.

Every file goes to a temporary name beside its final one and is then moved into place, so a reader (or a rerun)
never sees half a file: locally the move is a rename; on object storage the object appears whole or not at all.
Temporary names start with `.tmp-`; a rerun removes those a killed run left.
"""
from __future__ import annotations

import json
import uuid
from typing import Callable

TEMPORARY_PREFIX = ".tmp-"


class OutputRoot:
    def __init__(self, url: str):
        import fsspec

        self.filesystem, path = fsspec.core.url_to_fs(url)
        self.root = path.rstrip("/") or "/"
        protocol = self.filesystem.protocol if isinstance(self.filesystem.protocol, str) else self.filesystem.protocol[0]
        self.protocol = None if protocol in ("file", "local") else protocol

    def path(self, *parts: str) -> str:
        """A path on this root's file system."""
        return "/".join([self.root, *parts])

    def url(self, *parts: str) -> str:
        """The same place as a URL that another process (a Ray task, Ray Data) can open."""
        path = self.path(*parts)
        return path if self.protocol is None else f"{self.protocol}://{path}"

    def exists(self, *parts: str) -> bool:
        return self.filesystem.exists(self.path(*parts))

    def names(self, folder: str, suffix: str = "") -> list[str]:
        """File names in a folder (without `suffix`), temporaries left out; [] for a missing folder."""
        if not self.exists(folder):
            return []
        names = (entry.rsplit("/", 1)[-1] for entry in self.filesystem.ls(self.path(folder), detail=False))
        return sorted(name.removesuffix(suffix) for name in names if name.endswith(suffix) and not name.startswith(TEMPORARY_PREFIX))

    def write_with(self, relative: str, write: Callable) -> None:
        """write(handle) into a temporary file, then move it to `relative`."""
        directory, name = self.path(relative).rsplit("/", 1)
        self.filesystem.makedirs(directory, exist_ok=True)
        for leftover in self.filesystem.glob(f"{directory}/{TEMPORARY_PREFIX}*-{name}"):
            self.filesystem.rm(leftover)
        temporary = f"{directory}/{TEMPORARY_PREFIX}{uuid.uuid4().hex}-{name}"
        try:
            with self.filesystem.open(temporary, "wb") as handle:
                write(handle)
        except BaseException:
            if self.filesystem.exists(temporary):
                self.filesystem.rm(temporary)
            raise
        self.filesystem.mv(temporary, f"{directory}/{name}")

    def write_bytes(self, relative: str, data: bytes) -> None:
        self.write_with(relative, lambda handle: handle.write(data))

    def write_json(self, relative: str, value) -> None:
        self.write_bytes(relative, (json.dumps(value, indent=2, default=str) + "\n").encode("utf-8"))

    def write_parquet(self, relative: str, table) -> None:
        import pyarrow.parquet as pq

        self.write_with(relative, lambda handle: pq.write_table(table, handle))

    def read_json(self, relative: str):
        """The parsed file, or None when it is missing or not valid JSON (a file cut off by a crash)."""
        if not self.exists(relative):
            return None
        with self.filesystem.open(self.path(relative), "rb") as handle:
            try:
                return json.loads(handle.read())
            except (ValueError, UnicodeDecodeError):
                return None

    def remove(self, *relatives: str) -> None:
        for relative in relatives:
            if self.exists(relative):
                self.filesystem.rm(self.path(relative), recursive=True)

    def remove_temporaries(self) -> int:
        """Delete what killed runs left half-written anywhere under the root; returns how many."""
        leftovers = [path for path in self.filesystem.find(self.root) if path.rsplit("/", 1)[-1].startswith(TEMPORARY_PREFIX)] if self.exists() else []
        for path in leftovers:
            self.filesystem.rm(path)
        return len(leftovers)
