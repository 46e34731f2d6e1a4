"""Tagging throughput: the Ray tag job against the same model in a plain single-process loop, and 1 vs 2 workers.

    .venv/bin/python benchmarks/tag_scaling.py [--model DIR]

Documents: the 793 NCBI-disease abstracts (train + devel + test PubTator files), split into 8 shard files.
Model: outputs/minilm_cpu/final_model (benchmarks/train_minilm.py), labels "disease", "chemical", threshold 0.5.
- loop: one process reads each shard, predicts (same batch size) and writes its Parquet; model load excluded.
- job: `ray_jobs.tag` on an embedded local Ray with 1 actor (2 torch threads) and with 2 actors (1 thread each).
  "tagging" rate = documents / the summed (1 actor) or wall (2 actors) time actors spent on shards, start-up
  excluded like the loop's; "end to end" includes Ray start and model loading.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / ".work" / "tag_scaling"
RESULTS = REPO / "benchmarks" / "results" / "tag_scaling.json"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

LABELS = ["disease", "chemical"]
PUBMED_ABSTRACTS = 36_000_000


def make_shards(count: int = 8) -> tuple[Path, int]:
    corpus = WORK / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir(parents=True)
    blocks = []
    for split in ("train", "devel", "test"):
        text = (REPO / f"data/ncbi-disease-pubtator/{split}.pubtator").read_text(encoding="utf-8")
        blocks += [block for block in text.split("\n\n") if block.strip()]
    for index in range(count):
        (corpus / f"part{index:02d}.pubtator").write_text("\n\n".join(blocks[index::count]) + "\n", encoding="utf-8")
    return corpus, len(blocks)


def plain_loop(model_dir: str, corpus: Path, batch_size: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from gliner import GLiNER
    from ray_jobs.shard_output import ENTITIES_SCHEMA
    from synth.documents import Document, read_documents

    torch.set_num_threads(2)
    model = GLiNER.from_pretrained(model_dir)
    out = WORK / "loop"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started, documents = time.perf_counter(), 0
    for path in sorted(corpus.iterdir()):
        docs = [record for record in read_documents(str(path), "pubtator") if isinstance(record, Document)]
        predictions = model.inference([doc.text for doc in docs], LABELS, threshold=0.5, batch_size=batch_size)
        rows = [{"doc_id": doc.doc_id, "start": e["start"], "end": e["end"], "text": e["text"], "label": e["label"], "score": e["score"], "model": model_dir}
                for doc, entities in zip(docs, predictions) for e in entities]
        pq.write_table(pa.Table.from_pylist(rows, ENTITIES_SCHEMA), out / f"{path.stem}.parquet")
        documents += len(docs)
    seconds = time.perf_counter() - started
    return {"documents": documents, "seconds": seconds, "docs_per_s": documents / seconds}


def ray_job(model_dir: str, corpus: Path, batch_size: int, actors: int, threads: int) -> dict:
    import ray

    from ray_jobs.tag import parse_args, run

    output = WORK / f"job_{actors}"
    shutil.rmtree(output, ignore_errors=True)
    config, _ = parse_args(["--model", model_dir, "--labels", ",".join(LABELS), "--input", str(corpus), "--output", str(output),
                            "--threshold", "0.5", f"num_actors={actors}", f"torch_threads={threads}", f"cpus_per_actor={2 / actors / 2}",
                            f"batch_size={batch_size}"])
    started = time.perf_counter()
    summary = run(config)
    end_to_end = time.perf_counter() - started
    ray.shutdown()
    shard_seconds = [json.loads(path.read_text())["seconds"] for path in (output / "_done").glob("*.json")]
    busy = sum(shard_seconds) / actors  # actors work in parallel on disjoint shards
    return {"documents": summary["documents"], "end_to_end_seconds": end_to_end, "tagging_seconds": busy,
            "docs_per_s": summary["documents"] / busy, "end_to_end_docs_per_s": summary["documents"] / end_to_end}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "outputs/minilm_cpu/final_model"))
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    from inference_vs_upstream import machine

    corpus, documents = make_shards()
    loop = plain_loop(args.model, corpus, args.batch_size)
    one = ray_job(args.model, corpus, args.batch_size, actors=1, threads=2)
    two = ray_job(args.model, corpus, args.batch_size, actors=2, threads=1)
    record = {
        "machine": machine(), "documents": documents, "model": args.model,
        "loop": loop, "job_1_actor": one, "job_2_actors": two,
        "job_vs_loop": one["docs_per_s"] / loop["docs_per_s"], "two_vs_one_actor": two["docs_per_s"] / one["docs_per_s"],
        "pubmed_8_gpu_hours": "not measured: no GPU was lent to this task",
        "pubmed_cpu_core_hours_at_this_rate": PUBMED_ABSTRACTS / one["docs_per_s"] * 2 / 3600,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print("| run | documents | docs/s (tagging) | docs/s (end to end) |")
    print("|---|---|---|---|")
    print(f"| plain loop, 1 process, 2 threads | {documents} | {loop['docs_per_s']:.1f} | - |")
    print(f"| Ray job, 1 actor x 2 threads | {documents} | {one['docs_per_s']:.1f} | {one['end_to_end_docs_per_s']:.1f} |")
    print(f"| Ray job, 2 actors x 1 thread | {documents} | {two['docs_per_s']:.1f} | {two['end_to_end_docs_per_s']:.1f} |")
    print(f"job / loop: {record['job_vs_loop']:.2f}x (target >= 0.85x); 2 vs 1 actor: {record['two_vs_one_actor']:.2f}x")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
