"""Per-source balance: every passage scores a seeded 64-bit hash of its id, and a source with more than the target
keeps its `target` lowest scores. The choice depends only on the ids and the seed, never on the order of the rows."""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa


def balance_scores(table: pa.Table, seed: int) -> pa.Table:
    return pa.table({"source": table["source"], "score": pa.array(_scores(table["doc_id"].to_pylist(), seed), pa.uint64())})


def balance_cutoffs(scores_by_source: dict[str, np.ndarray], cap: int | None) -> tuple[dict[str, int], int]:
    """(per source with more than `target` passages: the largest score it keeps, target). Target: `cap`, else the
    smallest non-empty source's count. Scores are 64-bit hashes of distinct ids, so ties do not happen in practice."""
    counts = [len(scores) for scores in scores_by_source.values() if len(scores)]
    if not counts:
        return {}, 0
    target = cap if cap is not None else min(counts)
    cutoffs = {source: int(np.partition(scores, target - 1)[target - 1])
               for source, scores in scores_by_source.items() if len(scores) > target}
    return cutoffs, target


def within_cutoffs(table: pa.Table, cutoffs: dict[str, int], seed: int) -> np.ndarray:
    """Per row: whether its score is within its source's cut-off (sources without one keep everything)."""
    row_scores = np.array(_scores(table["doc_id"].to_pylist(), seed), dtype=np.uint64)
    unlimited = np.iinfo(np.uint64).max
    limits = np.array([cutoffs.get(source, unlimited) for source in table["source"].to_pylist()], dtype=np.uint64)
    return row_scores <= limits


def _scores(doc_ids: list[str], seed: int) -> list[int]:
    prefix = f"{seed}:".encode("utf-8")
    return [int.from_bytes(hashlib.blake2b(prefix + doc_id.encode("utf-8"), digest_size=8).digest(), "little") for doc_id in doc_ids]
