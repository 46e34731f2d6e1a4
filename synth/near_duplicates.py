"""Duplicate removal: exact duplicates by hashing normalised text, near duplicates by MinHash + LSH banding.

The paper linked passages whose TF-IDF cosine similarity was >= 0.9 (nearest-neighbour search) and kept one per
connected component. That search does not scale to tens of millions of passages; MinHash LSH does, in one pass:

1. Normalise: NFKC, case-folded, words are runs of `\\w` (punctuation and case changes vanish). Identical
   normalised texts are exact duplicates (`exact_key`, a 128-bit BLAKE2b); they are removed first, cheaply.
2. Shingles: the set of word `ngram`-grams (a text with fewer words than `ngram` has one shingle, all its words;
   an empty text has none). Words are hashed to 64 bits once (a polynomial hash over the UTF-8 bytes of a whole
   batch, numpy-vectorised, then a splitmix64 finaliser); an n-gram's hash mixes its words' hashes.
3. MinHash: `num_perm` seeded functions h_k(x) = (a_k * x + b_k) mod (2^61 - 1) on the upper 32 bits x of each
   shingle hash (a_k, b_k uniform below the prime; the 93-bit product is reduced exactly, see `_permute`); the
   signature keeps each function's minimum over the shingles, truncated to uint32. The share of equal signature entries estimates the Jaccard similarity of two shingle sets.
4. LSH: the signature is cut into `bands` bands of `rows` entries; two texts become a candidate pair when any band
   is identical, which happens with probability P(s) = 1 - (1 - s^rows)^bands for Jaccard s (the S-curve).
   Defaults 32 x 4 of 128: P(0.7) = 0.9998, P(0.6) = 0.988, P(0.5) = 0.87, P(0.3) = 0.23, P(0.1) = 0.003; the
   curve's midpoint (1/bands)^(1/rows) = 0.42 sits well below the threshold, because a missed pair is a kept
   duplicate while a false candidate only costs one verification. 16 x 8 would centre the curve at 0.71 and
   miss ~40% of pairs at s = 0.7.
5. Verify each candidate pair by the signatures' estimated Jaccard >= `threshold`; union-find over verified pairs;
   each connected component keeps one representative: the longest text, ties broken by the smaller id. The choice
   depends only on the members, never on input order.

Defaults (3-grams, threshold 0.7): substituting ~3% of a 200-word passage's words changes ~9% of its 3-grams
(Jaccard ~0.84); inserting or deleting a 15-word sentence gives ~0.92; case and punctuation changes give 1.0.
That is roughly the paper's cosine >= 0.9 on TF-IDF vectors, which ~5-10% changed words still pass.

Buckets are capped: a bucket of m > `max_bucket_size` members pairs every member with the first
`max_bucket_size` (by id) instead of with each other, so a template repeated a million times costs O(m) pairs.

Pure numpy/python; the Ray job (`ray_jobs/curate.py`) runs the same pieces per block and per partition.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

MERSENNE_61 = np.uint64((1 << 61) - 1)
EMPTY_SIGNATURE_VALUE = np.uint32(0xFFFFFFFF)
_POLY_BASE = 0x100000001B3  # odd, so invertible mod 2^64
_WORD = re.compile(r"\w+")
_CHUNK_VALUES = 1 << 16  # (shingles x num_perm) uint64 values per block: 512 KiB temporaries stay in cache


@dataclass(frozen=True)
class DedupParams:
    num_perm: int = 128
    bands: int = 32
    rows: int = 4
    ngram: int = 3
    threshold: float = 0.7
    seed: int = 0
    max_bucket_size: int = 64

    def __post_init__(self):
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if min(self.num_perm, self.bands, self.rows, self.ngram, self.max_bucket_size) < 1:
            raise ValueError("num_perm, bands, rows, ngram and max_bucket_size must be positive")


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """P(two texts of Jaccard `similarity` share at least one band) = 1 - (1 - s^rows)^bands."""
    return 1.0 - (1.0 - similarity ** rows) ** bands


# ------------------------------------------------------------------------------------------------ normalising
def normalized_words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def exact_key(text: str) -> bytes:
    """16 bytes identifying the normalised text; equal keys = exact duplicates."""
    return hashlib.blake2b(" ".join(normalized_words(text)).encode("utf-8"), digest_size=16).digest()


# ------------------------------------------------------------------------------------------------ MinHash
def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the output (uint64 arithmetic wraps)."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


class _Powers:
    """P^k and P^-k mod 2^64 for k < n, grown on demand (shared by every hasher in the process)."""

    powers = np.ones(1, dtype=np.uint64)
    inverse_powers = np.ones(1, dtype=np.uint64)

    @classmethod
    def get(cls, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(cls.powers) < n:
            size = max(n, 2 * len(cls.powers))
            cls.powers = np.cumprod(np.r_[np.uint64(1), np.full(size - 1, _POLY_BASE, dtype=np.uint64)], dtype=np.uint64)
            inverse = pow(_POLY_BASE, -1, 1 << 64)
            cls.inverse_powers = np.cumprod(np.r_[np.uint64(1), np.full(size - 1, inverse, dtype=np.uint64)], dtype=np.uint64)
        return cls.powers[:n], cls.inverse_powers[:n]


def hash_words(words: Sequence[str]) -> np.ndarray:
    """A stable 64-bit hash per word (not Python's salted hash()), vectorised over the batch's bytes."""
    if not words:
        return np.zeros(0, dtype=np.uint64)
    data = np.frombuffer(" ".join(words).encode("utf-8"), dtype=np.uint8).astype(np.uint64)
    spaces = np.flatnonzero(data == 32)
    starts = np.r_[0, spaces + 1]
    ends = np.r_[spaces, len(data)]
    powers, inverse_powers = _Powers.get(len(data))
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum(data * powers, out=prefix[1:])
    # sum_{k in word} byte_k * P^(k - start): the word's polynomial hash, independent of where the word sits.
    local = (prefix[ends] - prefix[starts]) * inverse_powers[starts]
    return _mix64(local + (ends - starts).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))


class MinHasher:
    """Shingles and MinHash signatures of many texts at once (seeded; same seed -> same signatures anywhere)."""

    def __init__(self, num_perm: int = 128, ngram: int = 3, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.num_perm, self.ngram = num_perm, ngram
        a = rng.integers(1, int(MERSENNE_61), size=num_perm, dtype=np.uint64)
        self.a_high, self.a_low = a >> np.uint64(32), a & np.uint64(0xFFFFFFFF)
        self.b = rng.integers(0, int(MERSENNE_61), size=num_perm, dtype=np.uint64)
        self.gram_weights = rng.integers(0, 1 << 63, size=ngram, dtype=np.uint64) * np.uint64(2) + np.uint64(1)

    def shingles(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(shingle hashes, owner text index) sorted by owner; a text may own none."""
        words = [normalized_words(text) for text in texts]
        counts = np.array([len(item) for item in words], dtype=np.int64)
        word_hashes = hash_words([word for item in words for word in item])
        owners = np.repeat(np.arange(len(texts)), counts)
        hashes, shingle_owners = self._full_grams(word_hashes, owners)
        short = np.flatnonzero((counts > 0) & (counts < self.ngram))
        if len(short):
            offsets = np.r_[0, np.cumsum(counts)]
            extra = [self._gram_hash(word_hashes[offsets[index]:offsets[index + 1]]) for index in short]
            hashes = np.concatenate([hashes, np.array(extra, dtype=np.uint64)])
            shingle_owners = np.concatenate([shingle_owners, short])
            order = np.argsort(shingle_owners, kind="stable")
            hashes, shingle_owners = hashes[order], shingle_owners[order]
        return hashes, shingle_owners

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), num_perm) uint32; a text without shingles gets all EMPTY_SIGNATURE_VALUE."""
        hashes, owners = self.shingles(texts)
        minimum = np.full((len(texts), self.num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
        values = (hashes >> np.uint64(32))[:, None]
        rows = max(16, _CHUNK_VALUES // self.num_perm)
        for start in range(0, len(hashes), rows):
            chunk_owners = owners[start:start + rows]
            permuted = self._permute(values[start:start + rows])
            segment_starts = np.flatnonzero(np.r_[True, chunk_owners[1:] != chunk_owners[:-1]])
            segment_owners = chunk_owners[segment_starts]
            segment_minima = np.minimum.reduceat(permuted, segment_starts, axis=0)
            minimum[segment_owners] = np.minimum(minimum[segment_owners], segment_minima)
        return minimum.astype(np.uint32)  # an empty text's 2^64-1 becomes EMPTY_SIGNATURE_VALUE

    def _permute(self, values: np.ndarray) -> np.ndarray:
        """(a*x + b) mod p, p = 2^61 - 1, for a column of x < 2^32 against every (a, b) with a, b < p, exactly.

        a*x needs 93 bits, so a = a_high * 2^32 + a_low: a_low*x < 2^64 is folded with (v & p) + (v >> 61), and
        (a_high*x) * 2^32 with 2^61 = 1 (mod p); no division. In place where possible: this is the hot loop."""
        product = values * self.a_high  # < 2^61
        result = product >> np.uint64(29)  # (product * 2^32) mod p = (product >> 29) + ((product mod 2^29) << 32)
        product &= np.uint64((1 << 29) - 1)
        product <<= np.uint64(32)
        result += product
        np.multiply(values, self.a_low, out=product)  # < 2^64
        spare = product >> np.uint64(61)
        product &= MERSENNE_61
        result += product
        result += spare
        result += self.b  # < 2^63 in all
        np.right_shift(result, np.uint64(61), out=spare)
        result &= MERSENNE_61
        result += spare  # < p + 4
        np.subtract(result, MERSENNE_61, out=spare)  # wraps to a huge value where result < p ...
        np.minimum(result, spare, out=result)  # ... so the minimum subtracts p exactly where result >= p
        return result

    def _full_grams(self, word_hashes: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = len(word_hashes) - self.ngram + 1
        if count <= 0:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
        accumulated = np.zeros(count, dtype=np.uint64)
        for position, weight in enumerate(self.gram_weights):
            accumulated += word_hashes[position:position + count] * weight
        inside_one_text = owners[:count] == owners[self.ngram - 1:]
        return _mix64(accumulated[inside_one_text]), owners[:count][inside_one_text]

    def _gram_hash(self, word_hashes: np.ndarray) -> np.uint64:
        return _mix64(np.array([np.sum(word_hashes * self.gram_weights[:len(word_hashes)])], dtype=np.uint64))[0]


def is_empty_signature(signatures: np.ndarray) -> np.ndarray:
    return np.all(signatures == EMPTY_SIGNATURE_VALUE, axis=-1)


def estimated_jaccard(signatures_a: np.ndarray, signatures_b: np.ndarray) -> np.ndarray:
    """Share of equal entries, row by row (a row of two signatures, or rows of many pairs)."""
    return np.mean(signatures_a == signatures_b, axis=-1)


# ------------------------------------------------------------------------------------------------ LSH
def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: one hash per band of `rows` signature entries, the band's index mixed in so that equal
    values in different bands never collide."""
    count = len(signatures)
    grouped = signatures[:, :bands * rows].astype(np.uint64).reshape(count, bands, rows)
    weights = _mix64(np.arange(1, rows + 1, dtype=np.uint64)) | np.uint64(1)
    accumulated = (grouped * weights).sum(axis=2, dtype=np.uint64)
    accumulated += np.arange(bands, dtype=np.uint64) * np.uint64(0xD6E8FEB86659FD93)
    return _mix64(accumulated)


def bucket_pairs(keys: np.ndarray, members: np.ndarray, max_bucket_size: int) -> list[tuple]:
    """Candidate pairs (smaller member, larger member) from rows sharing a key; `members` sortable (ints, str)."""
    if len(keys) < 2:
        return []
    order = np.lexsort((members, keys))
    sorted_keys, sorted_members = keys[order], members[order]
    run_starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    run_ends = np.r_[run_starts[1:], len(sorted_keys)]
    pairs = []
    for start, end in zip(run_starts[run_ends - run_starts > 1], run_ends[run_ends - run_starts > 1]):
        pairs += _pairs_in_bucket(list(dict.fromkeys(sorted_members[start:end].tolist())), max_bucket_size)
    return pairs


def _pairs_in_bucket(members: list, max_bucket_size: int) -> list[tuple]:
    head = members[:max_bucket_size]
    pairs = [(head[i], head[j]) for i in range(len(head)) for j in range(i + 1, len(head))]
    pairs += [(first, member) for member in members[max_bucket_size:] for first in head]
    return pairs


# ------------------------------------------------------------------------------------------------ components
class UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, item):
        parent = self.parent
        parent.setdefault(item, item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]  # path halving
            item = parent[item]
        return item

    def union(self, first, second) -> None:
        root_first, root_second = self.find(first), self.find(second)
        if root_first != root_second:
            self.parent[max(root_first, root_second)] = min(root_first, root_second)

    def components(self) -> list[list]:
        groups: dict = {}
        for item in self.parent:
            groups.setdefault(self.find(item), []).append(item)
        return list(groups.values())


def representative_key(doc_id: str, length: int) -> tuple:
    """Sort key of the member a group keeps: the longest text first, then the smallest id."""
    return (-length, doc_id)


def representatives(edges: Iterable[tuple[str, str]], lengths: dict[str, int]) -> dict[str, str]:
    """{removed id: the id kept for its component} over the graph of `edges`."""
    union_find = UnionFind()
    for first, second in edges:
        union_find.union(first, second)
    duplicate_of = {}
    for members in union_find.components():
        keep = min(members, key=lambda member: representative_key(member, lengths[member]))
        duplicate_of.update({member: keep for member in members if member != keep})
    return duplicate_of


# ------------------------------------------------------------------------------------------------ in memory
@dataclass
class DuplicateReport:
    kept: list[str]
    duplicate_of: dict[str, str] = field(default_factory=dict)  # removed id -> kept id
    kind: dict[str, str] = field(default_factory=dict)  # removed id -> "exact" | "near"
    candidate_pairs: int = 0
    verified_pairs: int = 0


def find_duplicates(ids: Sequence[str], texts: Sequence[str], params: DedupParams = DedupParams()) -> DuplicateReport:
    """Exact then near duplicates of a collection held in memory (the Ray job does the same at scale)."""
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique")
    lengths = {doc_id: len(text) for doc_id, text in zip(ids, texts)}
    exact_of = exact_duplicates(ids, [exact_key(text) for text in texts], lengths)
    unique = [index for index, doc_id in enumerate(ids) if doc_id not in exact_of]
    signatures = MinHasher(params.num_perm, params.ngram, params.seed).signatures([texts[index] for index in unique])
    pairs = candidate_pairs(signatures, params)
    verified = [(first, second) for first, second in pairs
                if estimated_jaccard(signatures[first], signatures[second]) >= params.threshold]
    near_of = representatives(((ids[unique[first]], ids[unique[second]]) for first, second in verified), lengths)
    duplicate_of = {doc_id: near_of.get(keep, keep) for doc_id, keep in exact_of.items()} | near_of
    kind = {doc_id: "exact" for doc_id in exact_of} | {doc_id: "near" for doc_id in near_of}
    kept = [doc_id for doc_id in ids if doc_id not in duplicate_of]
    return DuplicateReport(kept, duplicate_of, kind, len(pairs), len(verified))


def exact_duplicates(ids: Sequence[str], keys: Sequence[bytes], lengths: dict[str, int]) -> dict[str, str]:
    """{removed id: kept id} among texts with equal exact keys."""
    groups: dict[bytes, list[str]] = {}
    for doc_id, key in zip(ids, keys):
        groups.setdefault(key, []).append(doc_id)
    duplicate_of = {}
    for members in groups.values():
        if len(members) > 1:
            keep = min(members, key=lambda member: representative_key(member, lengths[member]))
            duplicate_of.update({member: keep for member in members if member != keep})
    return duplicate_of


def candidate_pairs(signatures: np.ndarray, params: DedupParams) -> set[tuple[int, int]]:
    """Index pairs sharing at least one band (texts without shingles never pair)."""
    keys = band_keys(signatures, params.bands, params.rows)
    usable = np.flatnonzero(~is_empty_signature(signatures))
    pairs = set()
    for band in range(params.bands):
        pairs.update(bucket_pairs(keys[usable, band], usable, params.max_bucket_size))
    return pairs
