"""Arrow-table steps of duplicate removal, each run by the curate job on one block or one hash partition of
passages (doc_id, text, length, exact_key, ...). The hashing and MinHash pieces are `synth.near_duplicates`.

Exact duplicates: rows get a `partition` from their exact key; each partition keeps the longest text of every key
(ties: the smaller id) and marks the others with `duplicate_of`, the id kept.
Near duplicates: signatures, one row per (band key, id) partitioned by band key, candidate pairs per bucket, then a
reduce-side join (JOIN_SCHEMA rows, partitioned first by a pair's first id, then by its second) that brings both
signatures to each pair for verification.
"""
from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .near_duplicates import MinHasher, band_keys, bucket_pairs, estimated_jaccard, is_empty_signature


def with_partition(table: pa.Table, key: str, partitions: int) -> pa.Table:
    """Adds `partition` = a stable hash of column `key` mod `partitions` (crc32: the same in every process)."""
    values = [zlib.crc32(value if isinstance(value, bytes) else value.encode("utf-8")) % partitions
              for value in table[key].to_pylist()]
    return table.append_column("partition", pa.array(values, pa.int64()))


def mark_exact_duplicates(table: pa.Table) -> pa.Table:
    """Per partition: `duplicate_of` = the id kept among the rows with the same exact key (null on that row)."""
    table = table.sort_by([("exact_key", "ascending"), ("length", "descending"), ("doc_id", "ascending")])
    keys = table["exact_key"].combine_chunks()
    starts = np.ones(len(table), dtype=bool)
    if len(table) > 1:
        starts[1:] = ~pc.equal(keys[1:], keys[:-1]).to_numpy(zero_copy_only=False)
    keeper = np.maximum.accumulate(np.where(starts, np.arange(len(table)), 0))
    duplicate_of = pc.if_else(pa.array(starts), pa.nulls(len(table), pa.string()), table["doc_id"].take(pa.array(keeper)))
    return table.drop_columns(["partition"]).append_column("duplicate_of", duplicate_of)


def keep_rows_where_null(table: pa.Table, column: str, is_null: bool) -> pa.Table:
    mask = pc.is_null(table[column])
    return table.filter(mask if is_null else pc.invert(mask))


def add_signatures(table: pa.Table, num_perm: int, ngram: int, seed: int) -> pa.Table:
    signatures = MinHasher(num_perm, ngram, seed).signatures(table["text"].to_pylist())
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 * num_perm), len(signatures), [None, pa.py_buffer(signatures.tobytes())])
    return table.append_column("signature", fixed.cast(pa.binary()))


def explode_band_keys(table: pa.Table, bands: int, rows: int, partitions: int) -> pa.Table:
    """(partition, band_key, doc_id) per band of every signature that has shingles."""
    signatures = signatures_of(table["signature"])
    usable = np.flatnonzero(~is_empty_signature(signatures))
    keys = band_keys(signatures[usable], bands, rows).reshape(-1)
    ids = table["doc_id"].take(pa.array(np.repeat(usable, bands), pa.int64()))
    return pa.table({"partition": (keys % np.uint64(partitions)).astype(np.int64), "band_key": keys, "doc_id": ids})


def pairs_in_buckets(table: pa.Table, max_bucket_size: int) -> pa.Table:
    """Per partition of band keys: the unique (a, b) id pairs, a < b, that share a band key."""
    ids = np.array(table["doc_id"].to_pylist(), dtype=str)
    pairs = sorted(set(bucket_pairs(table["band_key"].to_numpy(), ids, max_bucket_size)))
    return pa.table({"a": pa.array([a for a, _ in pairs], pa.string()), "b": pa.array([b for _, b in pairs], pa.string())})


# Rows of the reduce-side join: kind "sig" carries one passage's signature (a = its id), kind "pair" a candidate
# pair, with its first member's signature once attached.
JOIN_SCHEMA = pa.schema([("partition", pa.int64()), ("kind", pa.string()), ("a", pa.string()), ("b", pa.string()),
                         ("sig_a", pa.binary()), ("len_a", pa.int64())])
VERIFIED_SCHEMA = pa.schema([("a", pa.string()), ("b", pa.string()), ("len_a", pa.int64()), ("len_b", pa.int64()),
                             ("similarity", pa.float32())])


def signature_rows(table: pa.Table, partitions: int) -> pa.Table:
    count = len(table)
    rows = pa.table({"kind": pa.array(["sig"] * count, pa.string()), "a": table["doc_id"], "b": pa.nulls(count, pa.string()),
                     "sig_a": table["signature"], "len_a": table["length"]})
    return _join_rows(rows, "a", partitions)


def pair_rows(table: pa.Table, key: str, partitions: int) -> pa.Table:
    """Candidate pairs as join rows partitioned by member `key` ("a" or "b")."""
    count = len(table)
    columns = {name: table[name] if name in table.column_names else pa.nulls(count, JOIN_SCHEMA.field(name).type)
               for name in ("a", "b", "sig_a", "len_a")}
    return _join_rows(pa.table({"kind": pa.array(["pair"] * count, pa.string()), **columns}), key, partitions)


def attach_first_signature(table: pa.Table, partitions: int) -> pa.Table:
    """Per partition keyed by a: each pair gets sig_a and len_a and is re-partitioned by b; a pair found in
    several bands comes out once."""
    signatures, pairs = _split_join(table)
    pairs = pairs.group_by(["a", "b"], use_threads=False).aggregate([])
    found = pc.index_in(pairs["a"], value_set=signatures["a"])
    attached = pa.table({"a": pairs["a"], "b": pairs["b"], "sig_a": signatures["sig_a"].take(found),
                         "len_a": signatures["len_a"].take(found)})
    return pair_rows(attached, "b", partitions)


def verify_pairs(table: pa.Table, threshold: float) -> pa.Table:
    """Per partition keyed by b: compare with b's signature; keep pairs whose estimated Jaccard >= threshold."""
    signatures, pairs = _split_join(table)
    if not len(pairs):
        return VERIFIED_SCHEMA.empty_table()
    found = pc.index_in(pairs["b"], value_set=signatures["a"])
    similarity = estimated_jaccard(signatures_of(pairs["sig_a"]), signatures_of(signatures["sig_a"].take(found)))
    verified = pa.table({"a": pairs["a"], "b": pairs["b"], "len_a": pairs["len_a"], "len_b": signatures["len_a"].take(found),
                         "similarity": pa.array(similarity, pa.float32())}, schema=VERIFIED_SCHEMA)
    return verified.filter(pa.array(similarity >= threshold))


def signatures_of(column) -> np.ndarray:
    """(n, num_perm) uint32 from a binary column without nulls."""
    values = column.to_pylist()
    if not values:
        return np.zeros((0, 0), dtype=np.uint32)
    return np.frombuffer(b"".join(values), dtype=np.uint32).reshape(len(values), -1)


def _split_join(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    is_signature = pc.equal(table["kind"], "sig")
    return table.filter(is_signature), table.filter(pc.invert(is_signature))


def _join_rows(table: pa.Table, key: str, partitions: int) -> pa.Table:
    return with_partition(table, key, partitions).select(JOIN_SCHEMA.names).cast(JOIN_SCHEMA)
