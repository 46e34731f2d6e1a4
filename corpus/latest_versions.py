"""PubMed updates: which version of each document is current once baseline and update files are all read.

Update files carry new versions of citations and `DeleteCitation` records; later files win, in the order of
PubMed's file numbering (pubmedYYnNNNN), and later records win within a file. Each work unit reports the final state
of every doc_id it holds ("document" or deleted: `latest_in_unit`), ranked by `version_order`; across units, the
state of the highest rank is current and every other version is superseded (`superseded_versions`, per partition
of doc_ids).
"""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_PUBMED_FILE = re.compile(r"pubmed(\d+)n(\d+)")
INDEX_SCHEMA = pa.schema([("doc_id", pa.string()), ("deleted", pa.bool_())])
# Versions that are not current: "replaced" (a document version, a later document wins), "deleted" (a document
# version, a later deletion wins) and "withdrawn" (a deletion that wins: the PMID is gone).
SUPERSEDED_SCHEMA = pa.schema([("unit_id", pa.string()), ("doc_id", pa.string()), ("kind", pa.string())])


def version_order(path: str, start: int) -> tuple:
    """Sort key of a unit: PubMed's (year, number) of its file (unnumbered files first, by path), then its offset."""
    name = path.rsplit("/", 1)[-1]
    match = _PUBMED_FILE.search(name)
    year, number = (int(match.group(1)), int(match.group(2))) if match else (-1, -1)
    return (year, number, path, start)


def latest_in_unit(entries: list[tuple[str, object]]) -> tuple[dict[str, object], int]:
    """(doc_id, item) pairs in file order, item None for a deletion, to ({doc_id: its last item}, document versions
    replaced by a later document inside the unit)."""
    last: dict[str, object] = {}
    replaced = 0
    for doc_id, item in entries:
        replaced += last.get(doc_id) is not None and item is not None
        last[doc_id] = item
    return last, replaced


def superseded_versions(table: pa.Table) -> pa.Table:
    """Rows (doc_id, deleted, unit_id, rank) of one partition of doc_ids, one per unit that holds the doc_id, to the
    versions that are not current (SUPERSEDED_SCHEMA)."""
    if table.num_rows == 0:
        return SUPERSEDED_SCHEMA.empty_table()
    table = table.sort_by([("doc_id", "ascending"), ("rank", "descending")])
    doc_ids = table["doc_id"].combine_chunks()
    winning = np.ones(table.num_rows, dtype=bool)
    winning[1:] = ~pc.equal(doc_ids[1:], doc_ids[:-1]).to_numpy(zero_copy_only=False)
    winner = np.maximum.accumulate(np.where(winning, np.arange(table.num_rows), 0))
    deleted = table["deleted"].to_numpy(zero_copy_only=False)
    kind = np.where(winning, "withdrawn", np.where(deleted[winner], "deleted", "replaced"))
    keep = np.where(winning, deleted, ~deleted)  # a winning deletion; a losing document version
    return pa.table({"unit_id": table["unit_id"].filter(keep), "doc_id": doc_ids.filter(keep),
                     "kind": pa.array(kind[keep], pa.string())}, schema=SUPERSEDED_SCHEMA)
