"""Duplicate-removal throughput on ONE core: exact keys, MinHash signatures, LSH buckets, verification, components.

    .venv/bin/python benchmarks/dedup_throughput.py [--sizes 20000 50000] [--words 200]

Passages: random sentences of Zipf-distributed pseudo-words (~`--words` words each), 10% of them planted copies
with ~3% of words substituted, 2% exact copies. The process is pinned to one CPU and BLAS/OpenMP pools to one
thread (numpy's element-wise kernels are single-threaded anyway). Each stage is timed separately with the same
functions the curate job runs per block / per partition (`synth.near_duplicates`); passages/s = passages / stage
seconds. Default parameters: 128 permutations, 32 bands x 4 rows, word 3-grams, threshold 0.7.
"""
from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "dedup_throughput.json"
sys.path.insert(0, str(REPO))

from synth.near_duplicates import (  # noqa: E402
    DedupParams, MinHasher, band_keys, bucket_pairs, estimated_jaccard, exact_duplicates, exact_key, is_empty_signature,
    representatives,
)

BATCH = 512  # passages per signature batch, as the job's dedup.batch_size


def make_passages(count: int, words: int, seed: int = 0) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocabulary = np.array(sorted({"".join(rng.choice(letters, size=int(rng.integers(2, 10)))) for _ in range(8000)}))
    cumulative = np.cumsum(1.0 / (np.arange(len(vocabulary)) + 10.0))
    cumulative /= cumulative[-1]

    def draw(size: int) -> np.ndarray:
        return vocabulary[np.minimum(np.searchsorted(cumulative, rng.random(size)), len(vocabulary) - 1)]

    originals = int(count * 0.88)
    texts = []
    for _ in range(originals):
        tokens = draw(words)
        ends = set(rng.choice(words, size=words // 15, replace=False).tolist())
        texts.append(" ".join(token + "." if index in ends else token for index, token in enumerate(tokens)))
    planted = []
    for number in range(count - originals):
        source = int(rng.integers(0, originals))
        tokens = texts[source].split()
        if number % 6:  # near copy
            for index in rng.choice(len(tokens), size=max(1, len(tokens) * 3 // 100), replace=False):
                tokens[index] = str(draw(1)[0])
        texts.append(" ".join(tokens))
        planted.append((f"p{source:08d}", f"p{originals + number:08d}"))
    return [f"p{index:08d}" for index in range(count)], texts, planted


def run_stages(ids: list[str], texts: list[str], params: DedupParams) -> dict:
    timings = {}
    started = time.perf_counter()
    lengths = {doc_id: len(text) for doc_id, text in zip(ids, texts)}
    exact_of = exact_duplicates(ids, [exact_key(text) for text in texts], lengths)
    timings["exact keys + groups"] = time.perf_counter() - started

    unique = [index for index, doc_id in enumerate(ids) if doc_id not in exact_of]
    started = time.perf_counter()
    hasher = MinHasher(params.num_perm, params.ngram, params.seed)
    signatures = np.concatenate([hasher.signatures([texts[index] for index in unique[start:start + BATCH]])
                                 for start in range(0, len(unique), BATCH)])
    timings["shingles + signatures"] = time.perf_counter() - started

    started = time.perf_counter()
    keys = band_keys(signatures, params.bands, params.rows)
    usable = np.flatnonzero(~is_empty_signature(signatures))
    members = np.array([ids[unique[index]] for index in usable])
    candidates = set()
    for band in range(params.bands):
        candidates.update(bucket_pairs(keys[usable, band], members, params.max_bucket_size))
    timings["LSH band keys + buckets"] = time.perf_counter() - started

    started = time.perf_counter()
    row_of = {ids[index]: row for row, index in enumerate(unique)}
    pairs = sorted(candidates)
    first = np.array([row_of[a] for a, _ in pairs], dtype=np.int64)
    second = np.array([row_of[b] for _, b in pairs], dtype=np.int64)
    similarity = estimated_jaccard(signatures[first], signatures[second]) if pairs else np.zeros(0)
    verified = [pair for pair, value in zip(pairs, similarity) if value >= params.threshold]
    timings["verification"] = time.perf_counter() - started

    started = time.perf_counter()
    near_of = representatives(verified, lengths)
    timings["union-find + representatives"] = time.perf_counter() - started
    duplicate_of = {doc_id: near_of.get(keep, keep) for doc_id, keep in exact_of.items()} | near_of
    return {"timings": timings, "duplicate_of": duplicate_of, "candidates": len(pairs), "verified": len(verified),
            "exact": len(exact_of), "near": len(near_of)}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cpus_visible": os.cpu_count(), "pinned_to_cpus": sorted(os.sched_getaffinity(0)),
            "load_average_at_start": os.getloadavg(), "python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 50_000])
    parser.add_argument("--words", type=int, default=200)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    params = DedupParams()
    results = {"machine": machine(), "params": params.__dict__, "words_per_passage": args.words, "runs": []}
    for size in args.sizes:
        ids, texts, planted = make_passages(size, args.words)
        outcome = run_stages(ids, texts, params)
        kept = lambda doc_id: outcome["duplicate_of"].get(doc_id, doc_id)  # noqa: E731
        recall = sum(kept(a) == kept(b) for a, b in planted) / len(planted)
        total = sum(outcome["timings"].values())
        results["runs"].append({
            "passages": size, "planted_pairs": len(planted), "planted_recall": round(recall, 4),
            "exact_removed": outcome["exact"], "near_removed": outcome["near"], "candidate_pairs": outcome["candidates"],
            "verified_pairs": outcome["verified"], "seconds": {name: round(value, 3) for name, value in outcome["timings"].items()},
            "total_seconds": round(total, 3), "passages_per_s": round(size / total, 1),
            "passages_per_s_by_stage": {name: round(size / value, 1) for name, value in outcome["timings"].items() if value > 0},
        })
    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS.relative_to(REPO)}")
    return 0


def print_table(results: dict) -> None:
    stages = list(results["runs"][0]["seconds"])
    print(f"one core: {results['machine']['cpu']}; load average at start {results['machine']['load_average_at_start']}")
    print("\n| passages | " + " | ".join(f"{stage} (passages/s)" for stage in stages) + " | total s | passages/s | recall of planted |")
    print("|---:|" + "---:|" * (len(stages) + 3))
    for run in results["runs"]:
        cells = [f"{run['passages_per_s_by_stage'].get(stage, float('inf')):,.0f}" for stage in stages]
        print(f"| {run['passages']:,} | " + " | ".join(cells) + f" | {run['total_seconds']:.1f} | {run['passages_per_s']:,.0f} | {run['planted_recall']:.3f} |")


if __name__ == "__main__":
    sys.exit(main())
