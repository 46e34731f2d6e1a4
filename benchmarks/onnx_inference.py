"""ONNX Runtime against this library's torch forward, on one exported checkpoint and the same texts, in one run.

    .venv/bin/python benchmarks/onnx_inference.py [--model DIR] [--quick]

Model: --model, else the demo's (outputs/demo/model/final_model; `make demo` or `python -m ray_jobs.train --config
configs/train/minilm_demo.yaml` makes it). It is exported once to benchmarks/.work/onnx/ (gliner/onnx_export.py, with
the int8 graph). Texts: the 100 NCBI-disease test abstracts cut into pieces of at most 100 words (under the demo
model's 128-word max_len, so no side windows or truncates), four labels, threshold 0.5 (fast-gliner's fixed one).
Runs, each on 2 threads, the best of `repeats` timed passes after a warm-up pass:
  ours fp32        this library, torch forward (the reference for agreement)
  ours bf16        its best CPU mode (docs/performance.md), measured self-check
  ORT fp32         this library's prepare and decode around model.onnx in ONNX Runtime (GLiNER.use_onnx)
  ORT int8         the same around model_quantized.onnx (dynamic int8 weights)
  fast-gliner      gline-rs's Python package (Rust pre- and post-processing, its own ONNX Runtime) on model.onnx, in
                   .venv-fast-gliner (`make fast-gliner-venv`: it pins huggingface_hub<1, which transformers 5 refuses)
Agreement: each run's entities against ours fp32 (same start, end, label): entity F1, the share of texts with identical
entity lists, and the largest score gap over the entities both find. Writes benchmarks/results/onnx_inference.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from gliner import GLiNER  # noqa: E402
from gliner.inputs import split_words  # noqa: E402
from gliner.onnx_export import ONNX_FILE, QUANTIZED_ONNX_FILE, export_onnx  # noqa: E402
from gliner.evaluation.pubtator import read_pubtator  # noqa: E402

DEMO_MODEL = REPO / "outputs" / "demo" / "model" / "final_model"
WORK = REPO / "benchmarks" / ".work" / "onnx"
RESULTS = REPO / "benchmarks" / "results" / "onnx_inference.json"
FAST_GLINER = REPO / ".venv-fast-gliner" / "bin" / "python"
LABELS = ["chemical", "disease", "gene", "species"]
THRESHOLD = 0.5
THREADS = 2
BATCH_SIZE = 8
PIECE_WORDS = 100

# Runs in .venv-fast-gliner: reads {"model", "texts", "labels", "repeats", "batch_size"} on stdin, writes its
# entities and timings as JSON on stdout.
FAST_GLINER_WORKER = r"""
import json, sys, time
from fast_gliner import FastGLiNER
job = json.load(sys.stdin)
model = FastGLiNER.from_pretrained(job["model"], onnx_path="model.onnx", execution_provider="cpu")
texts, labels, size = job["texts"], job["labels"], job["batch_size"]
def run():
    return [entities for first in range(0, len(texts), size) for entities in model.predict_entities(texts[first:first + size], labels)]
run()
timings = []
for _ in range(job["repeats"]):
    start = time.perf_counter(); entities = run(); timings.append(time.perf_counter() - start)
print(json.dumps({"entities": entities, "timings": timings}))
"""


def text_pieces(limit: int | None) -> list[str]:
    documents = read_pubtator(REPO / "data" / "ncbi-disease-pubtator" / "test.pubtator")
    pieces = []
    for document in documents:
        words = split_words(document.text)
        for first in range(0, len(words), PIECE_WORDS):
            last = min(first + PIECE_WORDS, len(words)) - 1
            pieces.append(document.text[words.starts[first]:words.ends[last]])
    return pieces[:limit]


def timed(run, repeats: int) -> tuple[list, list[float]]:
    run()  # warm-up
    timings, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        timings.append(time.perf_counter() - start)
    return result, timings


def ours(model: GLiNER, texts: list[str], repeats: int) -> tuple[list, list[float]]:
    return timed(lambda: model.inference(texts, LABELS, threshold=THRESHOLD, batch_size=BATCH_SIZE), repeats)


def fast_gliner(model_dir: Path, texts: list[str], repeats: int) -> tuple[list, list[float]] | str:
    if not FAST_GLINER.exists():
        return "not run: no .venv-fast-gliner (make fast-gliner-venv)"
    job = {"model": str(model_dir), "texts": texts, "labels": LABELS, "repeats": repeats, "batch_size": BATCH_SIZE}
    env = {"OMP_NUM_THREADS": str(THREADS), "ORT_NUM_THREADS": str(THREADS), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([str(FAST_GLINER), "-c", FAST_GLINER_WORKER], input=json.dumps(job), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return "failed: " + done.stderr.strip().splitlines()[-1]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return answer["entities"], answer["timings"]


def agreement(reference: list[list[dict]], found: list[list[dict]]) -> dict:
    keyed = lambda entities: {(e["start"], e["end"], e["label"]): e["score"] for e in entities}  # noqa: E731
    matching, gaps, identical = 0, [0.0], 0
    for expected, got in zip(reference, found):
        expected, got = keyed(expected), keyed(got)
        both = expected.keys() & got.keys()
        matching += len(both)
        identical += expected.keys() == got.keys()
        gaps += [abs(expected[key] - got[key]) for key in both]
    reference_count, found_count = sum(map(len, reference)), sum(map(len, found))
    f1 = 2 * matching / (reference_count + found_count) if reference_count + found_count else None
    return {"entity_f1": f1, "identical_texts": identical / len(reference), "max_score_gap": max(gaps), "entities": found_count}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEMO_MODEL)
    parser.add_argument("--quick", action="store_true", help="40 pieces, one timed pass")
    args = parser.parse_args()
    if not (args.model / "gliner_config.json").is_file():
        sys.exit(f"no model at {args.model}: run `make demo` (or name one with --model)")
    torch.set_num_threads(THREADS)
    texts = text_pieces(40 if args.quick else None)
    repeats = 1 if args.quick else 2
    export_s = time.perf_counter()
    export_onnx(args.model, WORK, quantize=True)
    export_s = time.perf_counter() - export_s
    words = sum(len(split_words(text)) for text in texts)

    runs: dict[str, tuple[list, list[float]] | str] = {}
    runs["ours fp32"] = ours(GLiNER.from_pretrained(WORK), texts, repeats)
    bf16 = GLiNER.from_pretrained(WORK)
    bf16.set_precision("bf16", min_agreement=0)
    runs["ours bf16"] = ours(bf16, texts, repeats)
    runs["ORT fp32"] = ours(GLiNER.from_pretrained(WORK).use_onnx(WORK / ONNX_FILE, threads=THREADS), texts, repeats)
    runs["ORT int8"] = ours(GLiNER.from_pretrained(WORK).use_onnx(WORK / QUANTIZED_ONNX_FILE, threads=THREADS), texts, repeats)
    runs["fast-gliner"] = fast_gliner(WORK, texts, repeats)

    reference, reference_s = runs["ours fp32"][0], min(runs["ours fp32"][1])
    rows = []
    for name, outcome in runs.items():
        if isinstance(outcome, str):
            rows.append({"run": name, "status": outcome})
            continue
        entities, timings = outcome
        seconds = min(timings)
        rows.append({"run": name, "seconds": round(seconds, 3), "texts_per_s": round(len(texts) / seconds, 1),
                     "words_per_s": round(words / seconds), "speed_vs_ours_fp32": round(reference_s / seconds, 2),
                     **agreement(reference, entities)})
    print(f"{len(texts)} texts, {words} words, labels {LABELS}, threshold {THRESHOLD}, {THREADS} threads; export {export_s:.1f} s")
    print("| run | texts/s | words/s | x ours fp32 | entities | entity F1 vs ours fp32 | identical texts | max score gap |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        if "status" in row:
            print(f"| {row['run']} | {row['status']} | | | | | | |")
            continue
        f1 = "n/a" if row["entity_f1"] is None else f"{row['entity_f1']:.4f}"
        print(f"| {row['run']} | {row['texts_per_s']:,} | {row['words_per_s']:,} | {row['speed_vs_ours_fp32']} | {row['entities']} | "
              f"{f1} | {row['identical_texts']:.3f} | {row['max_score_gap']:.2e} |")
    if not args.quick:
        RESULTS.write_text(json.dumps({
            "machine": platform.processor() or platform.machine(), "python": platform.python_version(), "torch": torch.__version__,
            "model": str(args.model), "texts": len(texts), "words": words, "labels": LABELS, "threshold": THRESHOLD,
            "threads": THREADS, "batch_size": BATCH_SIZE, "export_seconds": round(export_s, 1), "runs": rows,
            "bf16_self_check": bf16.precision_check,
        }, indent=2) + "\n")
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
